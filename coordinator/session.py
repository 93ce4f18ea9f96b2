"""The one Ray session policy of bsemu: the only place that calls ``ray.init``.

A run joins the cluster named by its ``--address`` (or ``RAY_ADDRESS``), or starts an embedded local
Ray for itself. An embedded Ray gets this process's settings (no dashboard, no log forwarding, objects
up to 4 MiB inline with the calls); a cluster keeps its own, and Ray 2.60 refuses resource arguments
when it joins one (``num_cpus``), so none are passed. Whoever started the session shuts it down.

Addresses (:func:`parse_address`): ``HOST:PORT`` (an IPv4 address, a host name or ``[IPv6]``; the GCS
address ``ray start --head`` prints, default port 6379), ``auto`` (the cluster ``ray start`` last started
on this machine, as Ray finds it), and none or ``local`` (an embedded Ray). ``ray://`` (Ray Client) is
refused: the driver binds ZeroMQ sockets that the cluster's actors connect to, so it runs on a machine
of the cluster's network and joins the GCS directly.

Joining fails fast, with a :class:`SessionError` (one line; the command line exits 2) instead of
``ray.init``'s minute of retries and GCS warnings: before Ray is called, :func:`check_address` connects
to the address over TCP and checks that it speaks gRPC (an HTTP/2 server preface; skipped under
``RAY_USE_TLS``); then ``ray.init`` gets a bounded connection budget (``join_timeout_s``, through Ray's
``RAY_gcs_server_port_wait_time_s`` unless the environment sets it) and a refused token or a gRPC port
that is not a GCS is named in the error.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from coordinator.config import ConfigError

RAY_SYSTEM_CONFIG: dict[str, Any] = {"max_direct_call_object_size": 4 << 20}
"""For a Ray this process starts: objects up to 4 MiB travel inline with the call instead of through
the object store. A TRPO vector (gradient/FVP share, parameters: ~0.55 MB for 3x256 nets) then costs
about half the round trip (measured on 2 loaded cores: ~5 ms instead of ~10 ms per call with a
0.55 MB argument and result). A cluster started elsewhere keeps its own setting."""

PROBE_TIMEOUT_S: float = 3.0
"""How long :func:`check_address` waits for the TCP connection and for the gRPC handshake, each."""

JOIN_TIMEOUT_S: float = 5.0
"""Connection budget of ``ray.init`` when it joins a cluster (Ray retries about once a second; its own
default is ~20 s of retries, and far longer for a port that never answers)."""

SUPPORTED = "HOST:PORT (the address `ray start --head` prints, default port 6379), [IPv6]:PORT or auto"
_GCS_WAIT_VAR = "RAY_gcs_server_port_wait_time_s"  # Ray's connection attempts (~1 s each) when joining
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes((0, 0, 0, 4, 0, 0, 0, 0, 0))  # + an empty SETTINGS
_H2_SETTINGS = 4  # frame type of the server's first frame (RFC 9113 §3.4)


class SessionError(ConfigError):
    """A Ray address that cannot be joined: malformed, unsupported (``ray://``), nothing listening, not a
    Ray GCS, or a refused token. One line naming the address, what is wrong and what to do; a
    :class:`coordinator.config.ConfigError`, so the command line answers it with exit code 2."""


@dataclass
class RaySession:
    """A Ray this process uses: ``started`` if it started it (and so must shut it down), ``address`` of
    the cluster it joined (None: embedded)."""

    started: bool
    address: str | None

    @property
    def on_cluster(self) -> bool:
        """Joined an existing cluster by address (nodes may be other hosts: bind reachable addresses)."""
        return self.address is not None

    def close(self) -> None:
        """Shut Ray down if this session started it."""
        if self.started:
            import ray

            ray.shutdown()
            self.started = False


def ray_session(address: str | None = None, num_cpus: int | None = None, *,
                join_timeout_s: float = JOIN_TIMEOUT_S) -> RaySession:
    """Use the Ray already initialised in this process, else join ``address`` (default ``RAY_ADDRESS``),
    else start an embedded local Ray with ``num_cpus`` logical CPUs (default: the machine's, at least 2).

    Raises:
        SessionError: the address is malformed or unsupported, or its cluster cannot be joined within
            about ``PROBE_TIMEOUT_S + join_timeout_s`` seconds (the message says why).
    """
    source = "" if address else " (from RAY_ADDRESS)"
    address = (address or os.environ.get("RAY_ADDRESS") or "").strip() or None
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():  # not imported: not initialised either
        return RaySession(False, address)
    if address == "local":
        address = None
    if address:  # checked before Ray is even imported (about a second): a bad address fails at once
        target = _resolve_auto(source) if address == "auto" else address
        host, port = parse_address(target, source)
        check_address(host, port, source=source)
        _join(target, join_timeout_s, source)
    else:
        import ray

        # address="local": a new embedded instance even when `ray start` left a cluster running on this
        # machine (plain ray.init() would join that one, and refuse num_cpus there)
        ray.init(address="local", num_cpus=num_cpus or max(2, os.cpu_count() or 2), include_dashboard=False,
                 log_to_driver=False, configure_logging=False, _system_config=RAY_SYSTEM_CONFIG)
    return RaySession(True, address)


def parse_address(address: str, source: str = "") -> tuple[str, int]:
    """``"HOST:PORT"`` / ``"[IPv6]:PORT"`` -> ``(host, port)``; anything else raises :class:`SessionError`."""
    a = address.strip()
    where = f"Ray address {address!r}{source}"
    if "://" in a:
        scheme = a.split("://", 1)[0]
        if scheme == "ray":
            raise SessionError(f"{where}: ray:// (Ray Client) is not supported: bsemu's driver binds ZeroMQ "
                               f"sockets the cluster's actors connect to, so run it on a machine of the cluster's "
                               f"network and give the GCS address HOST:PORT that `ray start --head` printed")
        raise SessionError(f"{where}: unknown scheme {scheme}://; allowed: {SUPPORTED}")
    if a.startswith("["):
        host, sep, rest = a[1:].partition("]")
        port_s = rest[1:] if sep and rest.startswith(":") else ""
    else:
        host, _, port_s = a.rpartition(":")
        if ":" in host:
            host = ""  # a bare IPv6 address: needs brackets
    if not host or not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        raise SessionError(f"{where}: expected HOST:PORT with a port in 1-65535; allowed: {SUPPORTED}")
    return host, int(port_s)


def check_address(host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S, source: str = "") -> None:
    """Fail fast on an address where no Ray GCS listens: connect over TCP (at most ``timeout_s``) and
    check that the server answers an HTTP/2 preface with its SETTINGS frame, as every gRPC server does
    (skipped when ``RAY_USE_TLS`` is set: the handshake is TLS then).

    Raises:
        SessionError: the host does not resolve, the connection is refused or times out, or the server
            is not a gRPC server (a web server, SSH, ...).
    """
    where = f"Ray address {host}:{port}{source}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except socket.gaierror as exc:
        raise SessionError(f"{where}: cannot resolve host {host!r} ({exc.strerror})") from None
    except ConnectionRefusedError:
        raise SessionError(f"{where}: connection refused, nothing listens there (start the head with "
                           f"deploy/cluster/head.sh or `ray start --head`; it prints the address to join)") from None
    except TimeoutError:
        raise SessionError(f"{where}: no answer within {timeout_s:g} s (host down, or the port "
                           f"filtered by a firewall?)") from None
    except OSError as exc:
        raise SessionError(f"{where}: cannot connect ({exc.strerror or exc})") from None
    with sock:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return
        head = b""
        try:
            sock.settimeout(timeout_s)
            sock.sendall(_H2_PREFACE)
            while len(head) < 4:
                chunk = sock.recv(64)
                if not chunk:
                    break
                head += chunk
        except OSError:
            pass
        if len(head) < 4 or head[3] != _H2_SETTINGS:
            raise SessionError(f"{where}: something listens there but it is not a Ray GCS (no gRPC "
                               f"handshake); give the address `ray start --head` printed (default port 6379)")


def _resolve_auto(source: str) -> str:
    """``auto``: the GCS address of the cluster ``ray start`` last started on this machine."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        found = canonicalize_bootstrap_address("auto")
    except Exception as exc:  # Ray's own lookup: any failure means no cluster found
        raise SessionError(f"Ray address 'auto'{source}: no running cluster found on this machine "
                           f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not found:
        raise SessionError(f"Ray address 'auto'{source}: no running cluster found on this machine "
                           f"(`ray start` records its address; give {SUPPORTED})")
    return str(found)


@contextmanager
def _held_stderr() -> Iterator[list[str]]:
    """File descriptor 2 into a temporary file for the duration (Ray's C++ core writes its connection
    retries there); the list yielded receives what was written."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to hold
        yield []
        return
    held: list[str] = []
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield held
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            held.append(tmp.read().decode(errors="replace"))


def _join(address: str, join_timeout_s: float, source: str) -> None:
    """``ray.init(address)`` within a bounded budget; Ray's stderr is held and given back on success,
    summarised into one :class:`SessionError` line on failure."""
    import ray
    from ray.exceptions import AuthenticationError

    preset = os.environ.get(_GCS_WAIT_VAR)
    if preset is None:
        os.environ[_GCS_WAIT_VAR] = str(max(1, math.ceil(join_timeout_s)))
    failure: Exception | None = None
    try:
        with _held_stderr() as held:
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, AuthenticationError) as exc:
                failure = exc
    finally:
        if preset is None:
            os.environ.pop(_GCS_WAIT_VAR, None)
    text = "".join(held)
    if failure is None:
        if text:
            sys.stderr.write(text)  # what Ray said while joining, given back
        return
    raise SessionError(_join_failure(address, source, failure, text, join_timeout_s)) from None


def _join_failure(address: str, source: str, exc: Exception, text: str, budget_s: float) -> str:
    """One line: why ``ray.init`` could not join (from the exception chain and Ray's held stderr)."""
    where = f"cannot join the Ray cluster at {address}{source}"
    chain = " ".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None) + " " + text
    mode = os.environ.get("RAY_AUTH_MODE", "unset")
    token = os.environ.get("RAY_AUTH_TOKEN_PATH", "unset")
    auth_hint = (f"export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=<the cluster's token file> "
                 f"(now RAY_AUTH_MODE={mode}, RAY_AUTH_TOKEN_PATH={token}; see deploy/cluster/README.md)")
    if type(exc).__name__ == "AuthenticationError":  # raised before any connection: no usable token here
        first = str(getattr(exc, "message", exc)).splitlines()[0].rstrip(".")
        return f"{where}: {first}; {auth_hint}"
    if "InvalidAuthToken" in chain or "Unauthenticated" in chain:
        return f"{where}: the cluster refused this process's authentication token; {auth_hint}"
    if "rpc_code: 12" in chain:  # UNIMPLEMENTED: a gRPC server without the GCS service (a raylet, ...)
        return (f"{where}: it answers gRPC but is not a Ray GCS (a raylet's port?); give the address "
                f"`ray start --head` printed (default port 6379)")
    last = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = last[-1].split(": ", 1)[-1] if last else (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return f"{where} within ~{budget_s:g} s: {detail}"
