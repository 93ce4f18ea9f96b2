"""CURVE encryption and authentication (pyzmq ``zmq.auth``), with keys generated per run.

The coordinator calls :func:`generate_run_keys` once per run and hands each node its own
:class:`NodeKeys` (its key pair plus every peer's public key). A node's bound socket is a CURVE
server that admits only clients whose public key belongs to the run (checked by a ZAP handler
thread in the node's own ZeroMQ context); its connecting sockets are CURVE clients that
authenticate the peer's server key. A peer without an allowed key never completes the handshake:
nothing it sends is delivered, and the refusal is counted.

Sender ids are bound to connections: the ZAP handler answers every admitted handshake with the
User-Id ``str(node id)`` of the client key (:func:`user_id`), which ZeroMQ attaches to every frame
that connection delivers; the receiving node reads it (``frame.get("User-Id")``) and drops an
envelope whose ``sender`` is another id (``stats.rejected["SpoofedSender"]``). Without CURVE a
bound socket has no per-connection identity (a PULL or SUB frame does not say which connection
brought it), so a process that can reach the port can claim any known sender id: CURVE is the
defence as soon as anything untrusted can connect (DESIGN §6b).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from .errors import ConfigError


@dataclass(frozen=True)
class NodeKeys:
    """What one node needs for CURVE.

    Attributes:
        node_id: the node these keys belong to.
        public: its public key (Z85, 40 bytes).
        secret: its secret key (Z85, 40 bytes); never leaves the node after hand-over.
        peers: node id → public key of every node of the run (itself included); the set of
            keys admitted by this node's server socket.
    """

    node_id: int
    public: bytes
    secret: bytes = field(repr=False)
    peers: Mapping[int, bytes]

    def server_key(self, peer: int) -> bytes:
        """Public key of ``peer`` (the server key to use when connecting to it)."""
        try:
            return self.peers[peer]
        except KeyError:
            raise ConfigError(f"no CURVE public key for peer {peer}") from None

    @property
    def allowed(self) -> frozenset[bytes]:
        """Public keys admitted by this node's server socket."""
        return frozenset(self.peers.values())


def generate_run_keys(node_ids: Iterable[int]) -> dict[int, NodeKeys]:
    """Fresh CURVE key pairs for every node of a run (``zmq.curve_keypair``).

    Raises:
        ConfigError: libzmq was built without CURVE.
    """
    if not zmq.has("curve"):
        raise ConfigError("libzmq has no CURVE support")
    pairs = {int(i): zmq.curve_keypair() for i in node_ids}
    publics = {i: pub for i, (pub, _) in pairs.items()}
    return {i: NodeKeys(i, pub, sec, publics) for i, (pub, sec) in pairs.items()}


def save_public_keys(keys: Mapping[int, NodeKeys], directory: str | Path) -> list[Path]:
    """Write every node's public key as a ZeroMQ certificate ``node<i>.key`` (for the run folder;
    readable with ``zmq.auth.load_certificate``). Secret keys are never written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i, k in keys.items():
        path = directory / f"node{i}.key"
        path.write_text(
            f"#   ****  bsemu CURVE public key of node {i}  ****\n"
            f'metadata\n    node = "{i}"\ncurve\n    public-key = "{k.public.decode()}"\n'
        )
        out.append(path)
    return out


class _AllowedKeys:
    """ZAP credentials provider: admit a client iff its public key is in ``allowed``; count refusals."""

    def __init__(self, allowed: frozenset[bytes]) -> None:
        self.allowed = allowed
        self.refused = 0

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.allowed
        if not ok:
            self.refused += 1
        return ok


def user_id(node_id: int) -> str:
    """The ZAP User-Id of ``node_id``'s key: what every frame from that node's connections carries."""
    return str(node_id)


class _RunAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, answering each admitted CURVE key with its node's User-Id (pyzmq's
    default is the key itself)."""

    def __init__(self, context: zmq.Context, ids: Mapping[bytes, str]) -> None:
        super().__init__(context)
        self._ids = ids  # raw 32-byte public key -> User-Id

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self._ids.get(bytes(client_public_key), "")


class CurveServer:
    """A ZAP authenticator thread for one ZeroMQ context, admitting the run's keys only and binding
    each key to its node id (the User-Id of every frame its connections deliver)."""

    def __init__(self, context: zmq.Context, keys: NodeKeys) -> None:
        self.keys = keys
        self._provider = _AllowedKeys(keys.allowed)
        ids = {z85.decode(pub): user_id(i) for i, pub in keys.peers.items()}
        self._auth = _RunAuthenticator(context, ids)
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=self._provider)

    @property
    def refused(self) -> int:
        """Number of handshakes refused because the client key is not allowed."""
        return self._provider.refused

    def make_server(self, sock: zmq.Socket) -> None:
        """Turn a socket into a CURVE server (call before ``bind``)."""
        sock.curve_secretkey = self.keys.secret
        sock.curve_publickey = self.keys.public
        sock.curve_server = True

    def stop(self) -> None:
        self._auth.stop()


def make_client(sock: zmq.Socket, keys: NodeKeys, peer: int) -> None:
    """Turn a socket into a CURVE client of ``peer`` (call before ``connect``)."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server_key(peer)


__all__ = ["NodeKeys", "generate_run_keys", "save_public_keys", "CurveServer", "make_client", "user_id"]
