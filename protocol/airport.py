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
"""

from __future__ import annotations

import struct
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import zmq

from .envelope import COORDINATOR
from .errors import MalformedMessage
from .log import ROW_FIELDS

STEP, STEP_REAL, SETTLE, STOP = 1, 2, 3, 4          # hub -> actor
REPLY, ROWS, ERROR = 11, 12, 13                     # actor -> hub

POLL_MS = 200                                        # the hub checks its actors' health this often while waiting
_CMD = struct.Struct("<Bq")
_REP = struct.Struct("<Bii")
_LINK = struct.Struct("<ii")
_PER_LINK = 4                                        # frames per link in a STEP reply
_F8, _I8 = np.dtype("<f8"), np.dtype("<i8")
_EMPTY = np.empty(0)


def _socket(ctx: zmq.Context, kind: int) -> zmq.Socket:
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    return s


def _array(frame: bytes, dtype: np.dtype, what: str) -> np.ndarray:
    if len(frame) % dtype.itemsize:
        raise MalformedMessage(f"air port: {what} of {len(frame)} bytes is not a whole number of {dtype}")
    return np.frombuffer(frame, dtype=dtype)


class _Port:
    """Either end: its own context and a bound PULL inbox (``endpoint``); ``_outs`` are its PUSH sockets."""

    def __init__(self, host: str) -> None:
        self.ctx = zmq.Context(io_threads=1)
        self.inbox = _socket(self.ctx, zmq.PULL)
        port = self.inbox.bind_to_random_port(f"tcp://{host}")
        self.endpoint = f"tcp://{host}:{port}"

    def _outs(self) -> list[zmq.Socket]:
        raise NotImplementedError

    def close(self) -> None:
        for s in (self.inbox, *self._outs()):
            s.close(linger=0)
        self.ctx.term()


class LinkPort(_Port):
    """An actor's end: PULL bound (commands), PUSH to the coordinator (replies). Used by one thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.out = _socket(self.ctx, zmq.PUSH)

    def _outs(self) -> list[zmq.Socket]:
        return [self.out]

    def connect(self, peers: Mapping[int, str]) -> None:
        """Connect the replies to the coordinator's endpoint (``{COORDINATOR: endpoint}``)."""
        self.out.connect(peers[COORDINATOR])

    def recv(self) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(op, t, link ids, payload) of the next command (blocks)."""
        frames = self.inbox.recv_multipart()
        if len(frames) != 3 or len(frames[0]) != _CMD.size:
            raise MalformedMessage(f"air port: command of {len(frames)} frames")
        op, t = _CMD.unpack(frames[0])
        return op, t, _array(frames[1], _I8, "link ids"), _array(frames[2], _F8, "payload")

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

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.out: list[zmq.Socket] = []
        self.poller = zmq.Poller()
        self.poller.register(self.inbox, zmq.POLLIN)
        self.frames = [0, 0]       # sent, received
        self.bytes = [0, 0]

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

    def recv(self, timeout_ms: int) -> list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] | None:
        """One actor's STEP reply: per link (link, n_scalars, schedule [2, n], rows [r, 11],
        diagnostics); None after ``timeout_ms``. Raises the actor's error text on an ERROR frame."""
        frames = self._recv(timeout_ms)
        if frames is None:
            return None
        op, m, _ = _REP.unpack(frames[0])
        if op != REPLY or len(frames) != 1 + _PER_LINK * m:
            raise MalformedMessage(f"air port: expected a step reply, got op {op} with {len(frames)} frames")
        out = []
        for a in range(1, len(frames), _PER_LINK):
            if len(frames[a]) != _LINK.size:
                raise MalformedMessage("air port: step reply with a bad link header")
            link, n_scalars = _LINK.unpack(frames[a])
            out.append((link, n_scalars, _array(frames[a + 1], _F8, "schedule").reshape(2, -1),
                        _array(frames[a + 2], _I8, "rows").reshape(-1, ROW_FIELDS),
                        _array(frames[a + 3], _F8, "diagnostics")))
        return out

    def gather_rows(self, n: int, check: Callable[[], None]) -> list[np.ndarray]:
        """The ROWS replies of ``n`` actors (SETTLE), calling ``check`` while waiting."""
        out = []
        while len(out) < n:
            frames = self._recv(POLL_MS)
            if frames is None:
                check()
                continue
            op = _REP.unpack(frames[0])[0]
            if op != ROWS or len(frames) != 2:
                raise MalformedMessage(f"air port: expected log rows, got op {op} with {len(frames)} frames")
            out.append(_array(frames[1], _I8, "rows").reshape(-1, ROW_FIELDS))
        return out

    def _recv(self, timeout_ms: int) -> list[Any] | None:
        if not self.poller.poll(timeout_ms):
            return None
        frames = self.inbox.recv_multipart()
        if not frames or len(frames[0]) != _REP.size:
            raise MalformedMessage("air port: reply without a header")
        self.frames[1] += 1
        self.bytes[1] += sum(len(f) for f in frames)
        if _REP.unpack(frames[0])[0] == ERROR:
            raise RuntimeError("link actor failed:\n" + bytes(frames[1]).decode(errors="replace"))
        return frames

    def counts(self) -> dict[str, int]:
        return {"air_frames_to_links": self.frames[0], "air_frames_from_links": self.frames[1],
                "air_bytes_to_links": self.bytes[0], "air_bytes_from_links": self.bytes[1]}

    def _outs(self) -> list[zmq.Socket]:
        return self.out


__all__ = ["Hub", "LinkPort", "STEP", "STEP_REAL", "SETTLE", "STOP", "POLL_MS"]
