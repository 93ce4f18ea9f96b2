"""What ZeroMQ reports about a bound socket's connections (accepted, disconnected, failed handshakes),
counted into a node's stats by a monitor thread (:class:`ConnectionWatch`)."""

from __future__ import annotations

import struct
import threading
from typing import Any

import zmq

_EVENT = struct.Struct("<HI")  # a v1 monitor event's first frame: event id, value
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH)  # fmt: skip
_WATCHED = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | _HANDSHAKE_FAILED | zmq.EVENT_MONITOR_STOPPED


class ConnectionWatch:
    """Counts what ZeroMQ reports about the connections of a bound socket: a monitor socket read by a
    daemon thread (libzmq's I/O thread blocks on a full monitor pipe, so events are consumed as they
    come, not when the application happens to look)."""

    def __init__(self, sock: zmq.Socket, stats: Any, name: str) -> None:
        self._sock = sock
        self._stats = stats
        self._mon = sock.get_monitor_socket(_WATCHED)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        mon, st = self._mon, self._stats
        try:
            while True:
                event = _EVENT.unpack_from(mon.recv_multipart()[0])[0]
                if event == zmq.EVENT_ACCEPTED:
                    st.connections += 1
                elif event == zmq.EVENT_DISCONNECTED:
                    st.disconnects += 1
                elif event & _HANDSHAKE_FAILED:
                    st.handshake_failures += 1
                elif event == zmq.EVENT_MONITOR_STOPPED:
                    return
        except (zmq.ZMQError, struct.error):
            return
        finally:
            mon.close(linger=0)

    def stop(self) -> None:
        """Stop monitoring (libzmq sends MONITOR_STOPPED, which ends the thread) and wait for it."""
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._thread.join(timeout=5.0)


__all__ = ["ConnectionWatch"]
