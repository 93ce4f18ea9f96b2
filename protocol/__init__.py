"""What travels between base stations: envelopes, codec, transports, link emulation, message log.

``protocol`` knows nothing of torch or Ray (numpy, pyzmq and msgpack only).

Messages
    ``Envelope(kind, sender, receiver, iteration, seq, payload, run_id="", t_send_ns=0, version=1)``
    is an immutable named tuple; ``payload`` maps str → numpy array | int | float | str | bytes |
    bool | flat list of scalars. ``Kind`` is the fixed enumeration of message kinds; ``BROADCAST``
    (−1) and ``COORDINATOR`` (−2) are reserved node ids. ``now_ns()`` is the clock of every
    timestamp (``time.monotonic_ns``).

Codec
    ``encode(env) -> bytes`` / ``decode(frame, known_senders=None, limits=DEFAULT_LIMITS) -> Envelope``
    (msgpack; float arrays as float32 bytes + shape). ``decode`` raises only the ``ProtocolError``
    family: ``MalformedMessage``, ``UnsupportedVersion``, ``UnknownKind``, ``UnknownSender``,
    ``MessageTooLarge`` (plus ``ReplayedMessage``, ``SpoofedSender`` — the transports' names for
    frames they drop — and ``ConfigError``, ``TransportError``, ``BarrierTimeout`` elsewhere).
    ``frame_size(env)`` = ``len(encode(env))``. A compiled fast path (``protocol._ccodec``, built by
    ``pip install``) gives the pure-Python codec's bytes and errors; ``codec.CODEC_IMPL`` says which runs.

Transports (pyzmq; build them inside the process — the Ray actor — that uses them)
    ``RingNode(node_id, bind_host="127.0.0.1", *, log=None, emulator=None, curve=None,
    recv_budget_bytes=None, ...)``: ``.endpoint``, ``.connect(peers: dict[int, str])``,
    ``.send(to, env) -> nbytes``, ``.recv(timeout_ms=None) -> Envelope | None``, ``.stats``, ``.close()``.
    ``BroadcastNode(node_id, neighbours=None, bind_host="127.0.0.1", ...)``: same, with
    ``.publish(env) -> nbytes`` instead of ``send`` (its SUB inbox is bound, its PUB connects to
    the neighbours' inboxes). A node never raises on what it receives: a malformed, oversize,
    unknown, spoofed (CURVE: sender ≠ the connection's key) or replayed (seq going backwards)
    frame is counted in ``stats.rejected`` by class and dropped; receive queues are bounded in
    bytes (``recv_budget_bytes`` per connection → RCVHWM, ``max_message_bytes`` → MAXMSGSIZE;
    connections cut for a larger frame count in ``stats.disconnects``). Barriers: ``broadcast_barrier(node)``
    (hello → ready → start; required before publishing), ``ring_barrier(node)``. Discovery: bind
    to ``bind_host(cluster)`` (127.0.0.1, or ``node_address()`` in cluster mode) on a random port,
    report ``node.endpoint`` to the coordinator, get back ``{id: endpoint}``, ``connect`` to it.
    Logical clock: ``node.set_tick(t)``, ``node.drain()``.

Delay and loss
    ``LinkModel(kind="fixed"|"uniform"|"exponential", delay=0, jitter=0, drop_prob=0, reorder=False)``;
    ``LinkEmulator(models, root_seed, clock="logical"|"real")`` with ``.decide(sender, receiver,
    now) -> LinkDecision(delay, dropped, due)``, ``.submit(item, sender, receiver, now)``,
    ``.pop_due(now)``; ``link_rng(root_seed, sender, receiver, purpose)``. Pass an emulator to a
    node to apply it to what the node receives.

Message log
    ``MessageLog(path=None, run_id="", node=None)``: ``.record_sent(env, nbytes, receiver=None)``,
    ``.record_received(env, nbytes, ...)``, ``.record_dropped(env, nbytes, ...)``, ``.summary()``,
    ``.close()`` (writes ``<stem>_summary.json`` and ``.md``). ``merge_summaries(list)`` adds up
    per-node summaries; ``summarize_csv(path)`` rebuilds one from a CSV. In-process and Ray-carried
    messages are logged with ``log.record_sent(env, frame_size(env))`` exactly as sockets log them.

Clock offsets (DESIGN §4: across nodes, offsets are estimated by ping-pong and recorded)
    ``estimate_clock_offset(node, peer, rounds=16, timeout_s=1.0) -> ClockOffset(peer, offset_ns,
    rtt_ns, samples, lost)``: NTP-style rounds of HEARTBEAT ``{"clock_ping"}`` → ``{"clock_pong", t0,
    t1}`` over a RingNode (the peer's transport answers inside its ``recv``/``drain``, no application
    code); θ = ((t1 − t0) + (t2 − t3)) / 2 of the minimum-δ sample, δ = (t3 − t0) − (t2 − t1), so
    ``t_peer ≈ t_local + offset_ns`` within ± ``rtt_ns``/2. ``offset_from_samples(samples)`` is the
    math alone on ``ClockSample(t0_ns, t1_ns, t2_ns, t3_ns)``. Record the result in the run folder.

CURVE
    ``generate_run_keys(node_ids) -> dict[int, NodeKeys]`` (once per run, by the coordinator);
    give node i ``curve=keys[i]``; ``save_public_keys(keys, dir)`` for the run folder. Each key is
    bound to its node id (ZAP User-Id): a node drops an envelope whose ``sender`` is not the id of
    the key that delivered it. Without CURVE there is no per-connection identity: only the roster
    check (``UnknownSender``) applies.
"""

from .barrier import broadcast_barrier, ring_barrier
from .broadcast import BroadcastNode
from .clock import ClockOffset, ClockSample, estimate_clock_offset, offset_from_samples
from .codec import DEFAULT_LIMITS, Limits, decode, encode, encode_fields, frame_size
from .contexts import check_fifo, io_thread_ids, make_context
from .envelope import (
    BROADCAST,
    CONTROL_KINDS,
    COORDINATOR,
    SCHEMA_VERSION,
    Envelope,
    Kind,
    Payload,
    PayloadValue,
    now_ns,
)
from .errors import (
    BarrierTimeout,
    ConfigError,
    MalformedMessage,
    MessageTooLarge,
    ProtocolError,
    ReplayedMessage,
    SpoofedSender,
    TransportError,
    UnknownKind,
    UnknownSender,
    UnsupportedVersion,
)
from .links import NO_DELAY, Clock, LinkDecision, LinkEmulator, LinkModel, link_rng
from .log import (
    DROPPED,
    RECEIVED,
    SENT,
    MessageLog,
    merge_summaries,
    summarize_csv,
    summary_markdown,
    write_summary_files,
)
from .node import (
    DEFAULT_HWM,
    DEFAULT_RECV_BUDGET,
    Node,
    NodeStats,
    bind_host,
    node_address,
    recv_hwm,
)
from .ring import RingNode
from .security import NodeKeys, generate_run_keys, save_public_keys

__all__ = [
    "BROADCAST", "COORDINATOR", "CONTROL_KINDS", "SCHEMA_VERSION", "Envelope", "Kind", "Payload",
    "PayloadValue", "now_ns",
    "encode", "decode", "encode_fields", "frame_size", "Limits", "DEFAULT_LIMITS",
    "ProtocolError", "MalformedMessage", "UnsupportedVersion", "UnknownKind", "UnknownSender",
    "MessageTooLarge", "ReplayedMessage", "SpoofedSender", "ConfigError", "TransportError", "BarrierTimeout",
    "LinkModel", "LinkDecision", "LinkEmulator", "link_rng", "Clock", "NO_DELAY",
    "MessageLog", "merge_summaries", "summarize_csv", "summary_markdown", "write_summary_files",
    "SENT", "RECEIVED", "DROPPED",
    "Node", "RingNode", "BroadcastNode", "NodeStats", "DEFAULT_HWM", "DEFAULT_RECV_BUDGET", "recv_hwm", "bind_host",
    "node_address", "make_context", "io_thread_ids", "check_fifo",
    "broadcast_barrier", "ring_barrier",
    "ClockSample", "ClockOffset", "estimate_clock_offset", "offset_from_samples",
    "NodeKeys", "generate_run_keys", "save_public_keys",
]  # fmt: skip
