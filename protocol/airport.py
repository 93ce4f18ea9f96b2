"""The air port of the zeroth-order ray backend: coordinator <-> link actors over ZeroMQ, raw frames.

The coordinator (which holds the air, :mod:`coordinator.zo.air`) hands each link its measured
rates at the end of its iteration and gets the link's next schedule back. This is the emulator's
stand-in for the physical channel, not a message of Algorithm 1 (see :mod:`coordinator.zo.ray_links`):
it is not in the run's message log; :meth:`Hub.counts` reports its frames and bytes. Both ends
implement :class:`protocol.node.Node`.

Sockets: every actor binds a PULL (:class:`LinkPort`, its air inbox) and connects a PUSH to the
coordinator's PULL (:class:`Hub`); the hub has one PUSH per actor. PUSH queues until the peer is
connected and never drops, so no start barrier is needed. Arrays travel as raw little-endian bytes
(float64 stays float64: the logical clock is bit-identical to the in-process backend), no pickle,
no msgpack. Multipart frames:

  hub -> actor    [op uint8, t int64] [link ids int64 [m]] [payload float64: rates [m, B] | k [N]]
  actor -> hub    STEP reply, one message for all m links of the command:
                              [REPLY, m int32, 0] then per link [link int32, n_scalars int32]
                              [schedule float64 [2, n]] [log rows int64 [rows, 11]]
                              [diagnostics float64 [len(STAT_KEYS)]]
                  SETTLE reply: [ROWS, -1, 0] [log rows]       failure: [ERROR, -1, 0] [utf-8 text]

Stray frames. Either inbox is a bound PULL that any local process can reach (the air port binds
127.0.0.1 and has no CURVE), so a frame that does not parse as the message expected is counted in
``rejected`` (by reason; :meth:`Hub.counts` reports the total as ``air_frames_rejected``) and
dropped, and the receiver keeps waiting: a malformed frame is never fatal. The hub also drops a
well-formed reply it did not ask for (its links are not those of a command still unanswered, or
rows when no SETTLE is pending), so a stray or replayed reply cannot hand the coordinator a
schedule. An ERROR reply (``[ERROR, -1, 0]`` and one UTF-8 frame: the actor's traceback) is a real
failure and still raises. Each inbox sets MAXMSGSIZE = ``max_frame_bytes`` (a larger frame part
cuts its sender's connection, unseen). What stays open without authentication: a local process
that knows this format can forge a well-formed command, an ERROR, or a reply for links that are
outstanding; and ZeroMQ counts a multipart message as one message at the high-water mark, however
many parts it has.
"""

from __future__ import annotations

import struct
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from time import monotonic_ns
from typing import Any

import numpy as np
import zmq

from .contexts import make_context
from .envelope import COORDINATOR
from .errors import ConfigError, MalformedMessage
from .log import ROW_FIELDS

STEP, STEP_REAL, SETTLE, STOP = 1, 2, 3, 4          # hub -> actor (zeroth-order links)
SLOT, SLOT_ACKED = 5, 6                              # hub -> actor (execution phase: a slot's trigger; ACKED:
                                                     # answered by an empty ROWS reply once the slot is done)
REPLY, ROWS, ERROR = 11, 12, 13                     # actor -> hub

POLL_MS = 200                                        # the hub checks its actors' health this often while waiting
_CMD = struct.Struct("<Bq")
_REP = struct.Struct("<Bii")
_LINK = struct.Struct("<ii")
_PER_LINK = 4                                        # frames per link in a STEP reply
_F8, _I8 = np.dtype("<f8"), np.dtype("<i8")
_EMPTY = np.empty(0)
_COMMANDS = frozenset({STEP, STEP_REAL, SETTLE, STOP, SLOT, SLOT_ACKED})
_ERROR_TEXT_MAX = 4 * 16_000                         # reply_error sends the last 16 000 characters, UTF-8
DEFAULT_MAX_FRAME: int = 64 * 1024 * 1024
"""Largest frame (each part of a multipart message) an air-port inbox accepts: its MAXMSGSIZE."""


def _socket(ctx: zmq.Context, kind: int) -> zmq.Socket:
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    return s


def _array(frame: bytes, dtype: np.dtype, what: str, width: int = 1) -> np.ndarray:
    """``frame`` as a ``dtype`` array of a whole number of rows of ``width`` elements."""
    if len(frame) % (dtype.itemsize * width):
        raise MalformedMessage(f"air port: {what} of {len(frame)} bytes is not a whole number of "
                               f"{width} x {dtype}")  # fmt: skip
    return np.frombuffer(frame, dtype=dtype)


class _Port:
    """Either end: its own context and a bound PULL inbox (``endpoint``); ``_outs`` are its PUSH sockets.
    ``io_priority`` 1..99: the context's I/O threads run SCHED_FIFO at that priority (``make_context``).

    Attributes:
        rejected: frames dropped, by reason (see the module doc).
        last_error: the reason of the last one.
    """

    def __init__(self, host: str, max_frame_bytes: int = DEFAULT_MAX_FRAME, io_priority: int = 0) -> None:
        if not isinstance(max_frame_bytes, int) or max_frame_bytes < 64:
            raise ConfigError(f"max_frame_bytes={max_frame_bytes!r} must be an int ≥ 64")
        self.ctx = make_context(io_priority)
        self.inbox = _socket(self.ctx, zmq.PULL)
        self.inbox.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
        port = self.inbox.bind_to_random_port(f"tcp://{host}")
        self.endpoint = f"tcp://{host}:{port}"
        self.rejected: Counter[str] = Counter()
        self.last_error = ""

    def _reject(self, reason: str, detail: str = "") -> None:
        self.rejected[reason] += 1
        self.last_error = f"{reason}: {detail}" if detail else reason

    def _outs(self) -> list[zmq.Socket]:
        raise NotImplementedError

    def close(self) -> None:
        for s in (self.inbox, *self._outs()):
            s.close(linger=0)
        self.ctx.term()


class LinkPort(_Port):
    """An actor's end: PULL bound (commands), PUSH to the coordinator (replies). Used by one thread."""

    def __init__(self, host: str = "127.0.0.1", *, max_frame_bytes: int = DEFAULT_MAX_FRAME,
                 io_priority: int = 0) -> None:
        super().__init__(host, max_frame_bytes, io_priority)
        self.out = _socket(self.ctx, zmq.PUSH)

    def _outs(self) -> list[zmq.Socket]:
        return [self.out]

    def connect(self, peers: Mapping[int, str]) -> None:
        """Connect the replies to the coordinator's endpoint (``{COORDINATOR: endpoint}``)."""
        self.out.connect(peers[COORDINATOR])

    def recv(self) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(op, t, link ids, payload) of the next well-formed command (blocks). A frame that is not
        one is counted in ``rejected`` and skipped."""
        while True:
            frames = self.inbox.recv_multipart()
            try:
                return self._command(frames)
            except MalformedMessage as exc:
                self._reject("command", str(exc))

    @staticmethod
    def _command(frames: list[bytes]) -> tuple[int, int, np.ndarray, np.ndarray]:
        if len(frames) != 3 or len(frames[0]) != _CMD.size:
            raise MalformedMessage(f"command of {len(frames)} frames, header of {len(frames[0])} bytes")
        op, t = _CMD.unpack(frames[0])
        if op not in _COMMANDS or t < 0:
            raise MalformedMessage(f"op {op}, t {t}")
        ids, payload = _array(frames[1], _I8, "link ids"), _array(frames[2], _F8, "payload")
        if op in (STEP, STEP_REAL) and (not len(ids) or len(payload) % len(ids) or int(ids.min()) < 0):
            raise MalformedMessage(f"step for links {ids[:8].tolist()} with {len(payload)} rates")
        return op, t, ids, payload

    def reply_step(self, replies: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """One message for the links of a command: (link, n_scalars, schedule, rows, diagnostics) each.
        One send, not one per link: every send wakes ZeroMQ's I/O thread (and, on few cores, the
        hub), which measured as much as the links' 20 d sends together (N = 5 in one actor)."""
        frames: list[Any] = [_REP.pack(REPLY, len(replies), 0)]
        for link, n_scalars, sched, rows, stats in replies:
            frames += [_LINK.pack(link, n_scalars), np.ascontiguousarray(sched, _F8),
                       np.ascontiguousarray(rows, _I8), np.ascontiguousarray(stats, _F8)]
        self.out.send_multipart(frames)

    def reply_rows(self, rows: np.ndarray) -> None:
        self.out.send_multipart([_REP.pack(ROWS, -1, 0), np.ascontiguousarray(rows, _I8)])

    def reply_error(self, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(exc))[-16_000:]
        try:
            self.out.send_multipart([_REP.pack(ERROR, -1, 0), text.encode()], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass


class Hub(_Port):
    """The coordinator's end: one PULL bound (replies of every actor), one PUSH per actor."""

    def __init__(self, host: str = "127.0.0.1", *, max_frame_bytes: int = DEFAULT_MAX_FRAME,
                 io_priority: int = 0) -> None:
        super().__init__(host, max_frame_bytes, io_priority)
        self.out: list[zmq.Socket] = []
        self.poller = zmq.Poller()
        self.poller.register(self.inbox, zmq.POLLIN)
        self.frames = [0, 0]       # sent, received (accepted replies)
        self.bytes = [0, 0]
        self._steps: Counter[tuple[int, ...]] = Counter()   # sorted link ids of STEP commands not yet answered
        self._settles = 0                                   # SETTLE commands not yet answered

    def connect(self, peers: Mapping[int, str]) -> None:
        """One PUSH per actor's port, ``{actor index: endpoint}`` for actors 0, 1, ... in order."""
        for _, ep in sorted(peers.items()):
            s = _socket(self.ctx, zmq.PUSH)
            s.connect(ep)
            self.out.append(s)

    def send(self, actor: int, op: int, t: int = 0, links: list[int] | None = None,
             payload: np.ndarray = _EMPTY) -> None:
        ids = np.asarray(links if links is not None else [], dtype=_I8)
        data = np.ascontiguousarray(payload, dtype=_F8)
        self.out[actor].send_multipart([_CMD.pack(op, t), ids, data])
        self.frames[0] += 1
        self.bytes[0] += _CMD.size + ids.nbytes + data.nbytes
        if op in (STEP, STEP_REAL):
            self._steps[tuple(sorted(ids.tolist()))] += 1
        elif op in (SETTLE, SLOT_ACKED):
            self._settles += 1          # each is answered by one ROWS reply

    def recv(self, timeout_ms: int) -> list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] | None:
        """One actor's STEP reply: per link (link, n_scalars, schedule [2, n], rows [r, 11],
        diagnostics); None after ``timeout_ms``. Raises the actor's error text on an ERROR frame;
        counts and skips anything else that is not the reply to a command still unanswered."""
        deadline = monotonic_ns() + max(0, timeout_ms) * 1_000_000
        while True:
            frames = self._recv(max(0, -(-(deadline - monotonic_ns()) // 1_000_000)))
            if frames is None:
                return None
            try:
                out = self._step_reply(frames)
            except MalformedMessage as exc:
                self._reject("step reply", str(exc))
                continue
            key = tuple(sorted(rep[0] for rep in out))
            if self._steps.get(key, 0) <= 0:
                self._reject("unexpected reply", f"links {list(key)[:8]} have no command outstanding")
                continue
            self._steps[key] -= 1
            if not self._steps[key]:
                del self._steps[key]
            self._count(frames)
            return out

    @staticmethod
    def _step_reply(frames: list[bytes]) -> list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
        op, m, pad = _REP.unpack(frames[0])
        if op != REPLY or m < 1 or pad != 0 or len(frames) != 1 + _PER_LINK * m:
            raise MalformedMessage(f"expected a step reply, got op {op} with {len(frames)} frames")
        out = []
        for a in range(1, len(frames), _PER_LINK):
            if len(frames[a]) != _LINK.size:
                raise MalformedMessage("step reply with a bad link header")
            link, n_scalars = _LINK.unpack(frames[a])
            if link < 0 or n_scalars < 0:
                raise MalformedMessage(f"step reply for link {link} with {n_scalars} scalars")
            out.append((link, n_scalars, _array(frames[a + 1], _F8, "schedule", 2).reshape(2, -1),
                        _array(frames[a + 2], _I8, "rows", ROW_FIELDS).reshape(-1, ROW_FIELDS),
                        _array(frames[a + 3], _F8, "diagnostics")))
        return out

    def gather_rows(self, n: int, check: Callable[[], None]) -> list[np.ndarray]:
        """The ROWS replies of ``n`` actors (SETTLE, SLOT_ACKED), calling ``check`` while waiting; anything
        else (a malformed frame, rows no command asked for) is counted and skipped."""
        out = []
        while len(out) < n:
            frames = self._recv(POLL_MS)
            if frames is None:
                check()
                continue
            op, m, pad = _REP.unpack(frames[0])
            if op != ROWS or m != -1 or pad != 0 or len(frames) != 2:
                self._reject("rows reply", f"expected log rows, got op {op} with {len(frames)} frames")
                continue
            try:
                rows = _array(frames[1], _I8, "rows", ROW_FIELDS).reshape(-1, ROW_FIELDS)
            except MalformedMessage as exc:
                self._reject("rows reply", str(exc))
                continue
            if self._settles <= 0:
                self._reject("unexpected reply", "log rows with no SETTLE outstanding")
                continue
            self._settles -= 1
            self._count(frames)
            out.append(rows)
        return out

    def _recv(self, timeout_ms: int) -> list[bytes] | None:
        """The next frame with a reply header (others are counted and skipped) within ``timeout_ms``,
        or None. An actor's ERROR reply raises RuntimeError with its text."""
        deadline = monotonic_ns() + max(0, timeout_ms) * 1_000_000
        while True:
            if not self.poller.poll(max(0, -(-(deadline - monotonic_ns()) // 1_000_000))):
                return None
            frames = self.inbox.recv_multipart()
            if len(frames[0]) != _REP.size:
                self._reject("header", f"reply without a header ({len(frames[0])} bytes, {len(frames)} frames)")
                continue
            op, m, pad = _REP.unpack(frames[0])
            if op == ERROR:
                if len(frames) != 2 or m != -1 or pad != 0 or len(frames[1]) > _ERROR_TEXT_MAX:
                    self._reject("error reply", f"ERROR op with {len(frames)} frames")
                    continue
                try:
                    text = frames[1].decode()
                except UnicodeDecodeError:
                    self._reject("error reply", "ERROR text is not UTF-8")
                    continue
                self._count(frames)
                raise RuntimeError("link actor failed:\n" + text)
            return frames

    def _count(self, frames: list[bytes]) -> None:
        self.frames[1] += 1
        self.bytes[1] += sum(len(f) for f in frames)

    def counts(self) -> dict[str, int]:
        """Frames and bytes each way (accepted replies only), and frames dropped (``rejected``)."""
        return {"air_frames_to_links": self.frames[0], "air_frames_from_links": self.frames[1],
                "air_bytes_to_links": self.bytes[0], "air_bytes_from_links": self.bytes[1],
                "air_frames_rejected": sum(self.rejected.values())}

    def _outs(self) -> list[zmq.Socket]:
        return self.out


__all__ = ["Hub", "LinkPort", "STEP", "STEP_REAL", "SETTLE", "STOP", "SLOT", "SLOT_ACKED", "POLL_MS",
           "DEFAULT_MAX_FRAME"]
