"""Benchmark of the protocol package (issue 3): codec, bytes per message, one-way latency.

Prints: encode / decode time per message kind and bytes per message; one-way latency p50/p99 of a
ring hop (2 processes, ping-pong) and of a broadcast (1 publisher, S subscriber processes), each
beside raw pyzmq send/recv of a frame of the same size measured in the same run, interleaved in
blocks. Goals: protocol / raw latency <= 1.5; encode + decode of a power vector <= 10 us.

    python benchmarks/protocol.py [--bs 7] [--params 10000] [--hop-msgs 4000] [--bcast-msgs 2000]
                                  [--subscribers 2] [--blocks 4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import struct
import sys
import tempfile
import time
import timeit
from typing import Any

# this script is named like the package it measures: take its folder off sys.path, put the repo root on
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import msgpack  # noqa: E402
import numpy as np  # noqa: E402
import zmq  # noqa: E402

from protocol import (  # noqa: E402
    BroadcastNode,
    Envelope,
    Kind,
    MessageLog,
    RingNode,
    broadcast_barrier,
    decode,
    encode,
    now_ns,
    ring_barrier,
)

_TS = struct.Struct("<q")


def payloads(bs: int, params: int) -> dict[Kind, dict[str, Any]]:
    """A representative payload per kind (B base stations, one user each; a policy of ``params``)."""
    rng = np.random.default_rng(0)
    vec = rng.standard_normal(params)
    return {
        Kind.POWER_VECTOR: {"p": rng.random(bs)},
        Kind.SCALAR_D: {"d": 0.123, "slot": 12345},
        Kind.RELAY_D: {"origin": [1, 2, 3], "k": [10, 11, 12], "d": rng.random(3)},
        Kind.CSI_UPLOAD: {"gains": rng.random((bs, bs))},
        Kind.POWER_ASSIGNMENT: {"p": rng.random(1)},
        Kind.GRADIENT: {"g": vec},
        Kind.FVP_REQUEST: {"v": vec},
        Kind.FVP: {"fv": vec},
        Kind.PARAMETERS: {"theta": vec},
        Kind.FL_UPLOAD: {"theta": vec},
        Kind.FL_AVERAGE: {"theta": vec},
        Kind.METRICS: {"reward": 1.5, "kl": 0.01, "surrogate": 0.2},
        Kind.HELLO: {},
        Kind.READY: {},
        Kind.START: {},
        Kind.HEARTBEAT: {},
        Kind.ERROR: {"reason": "actor 3 died: out of memory"},
    }


def _best_us(fn: Any, number: int) -> float:
    """Best of 60 short repeats, microseconds per call (the machine is shared: the minimum over many
    short windows is the cost without the neighbours' interference)."""
    return min(timeit.repeat(fn, number=number, repeat=60)) / number * 1e6


def codec_table(bs: int, params: int) -> list[tuple[str, int, float, float]]:
    rows = []
    for kind, payload in payloads(bs, params).items():
        env = Envelope(kind, 1, 2, 100, 1000, payload, "run-0001", now_ns())
        frame = encode(env)
        number = 20 if len(frame) > 10_000 else 200
        enc = _best_us(lambda env=env: encode(env), number)
        dec = _best_us(lambda frame=frame: decode(frame), number)
        rows.append((kind.name, len(frame), enc, dec))
    return rows


# -- ring hop: two processes, ping-pong ----------------------------------------------------------
def hop_worker(role: int, n: int, blocks: int, bs: int, batch: int, up: Any, down: Any) -> None:
    """role 0 starts every exchange; both sides record the one-way latency of what they receive."""
    ctx = zmq.Context()
    raw_in = ctx.socket(zmq.PULL)
    raw_in.setsockopt(zmq.LINGER, 0)
    raw_port = raw_in.bind_to_random_port("tcp://127.0.0.1")
    tmp = tempfile.mkdtemp()
    node = RingNode(role, log=MessageLog(os.path.join(tmp, f"hop{role}.csv"), node=role))
    up.put((role, f"tcp://127.0.0.1:{raw_port}", node.endpoint))
    peer_raw, peers = down.get(timeout=60)
    raw_out = ctx.socket(zmq.PUSH)
    raw_out.setsockopt(zmq.LINGER, 0)
    raw_out.connect(peer_raw)
    node.connect(peers)
    ring_barrier(node, timeout_s=30)
    other = 1 - role
    p = np.random.default_rng(role).random((batch, bs)) if batch > 1 else np.random.default_rng(role).random(bs)
    size = len(encode(Envelope(Kind.POWER_VECTOR, role, other, 0, 0, {"p": p}, "", now_ns())))
    pad = bytes(size - _TS.size)
    p32 = p.astype(np.float32).tobytes()
    lat: dict[str, list[int]] = {"raw": [], "msgpack": [], "codec": [], "proto": []}
    for block in range(blocks):
        for phase in ("raw", "msgpack", "codec", "proto"):
            got = lat[phase]
            for i in range(n + 50):  # 50 warm-up exchanges per block, not recorded
                for turn in (0, 1):
                    if turn == role:  # my turn to send
                        if phase == "raw":
                            raw_out.send(_TS.pack(now_ns()) + pad)
                        elif phase == "msgpack":  # the floor of any msgpack codec: bare packb, no numpy
                            raw_out.send(msgpack.packb([1, 1, "", role, other, i, i, now_ns(), {"p": p32}]))
                        elif phase == "codec":  # raw sockets carrying encode(env) / decode(frame)
                            raw_out.send(encode(Envelope(Kind.POWER_VECTOR, role, other, i, i, {"p": p}, "", now_ns())))
                        else:
                            node.send(other, Envelope(Kind.POWER_VECTOR, role, other, block * n + i, 0, {"p": p}))
                    else:
                        if phase == "raw":
                            t_send = _TS.unpack_from(raw_in.recv())[0]
                        elif phase == "msgpack":
                            t_send = msgpack.unpackb(raw_in.recv())[7]
                        elif phase == "codec":
                            t_send = decode(raw_in.recv()).t_send_ns
                        else:
                            t_send = node.recv().t_send_ns  # type: ignore[union-attr]
                        if i >= 50:
                            got.append(now_ns() - t_send)
    up.put((role, lat, node.stats.gaps))
    node.close()
    node.log.close()  # type: ignore[union-attr]
    raw_in.close()
    raw_out.close()
    ctx.term()


def ring_hop(n: int, blocks: int, bs: int, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    ctx = mp.get_context("spawn")
    up = ctx.Queue()
    downs = [ctx.Queue(), ctx.Queue()]
    procs = [ctx.Process(target=hop_worker, args=(r, n // blocks, blocks, bs, batch, up, downs[r])) for r in (0, 1)]
    for pr in procs:
        pr.start()
    eps = {}
    for _ in range(2):
        role, raw_ep, node_ep = up.get(timeout=120)
        eps[role] = (raw_ep, node_ep)
    for r in (0, 1):
        downs[r].put((eps[1 - r][0], {0: eps[0][1], 1: eps[1][1]}))
    lat: dict[str, list[int]] = {"raw": [], "msgpack": [], "codec": [], "proto": []}
    for _ in range(2):
        _, got, gaps = up.get(timeout=300)
        assert gaps == 0
        for k in lat:
            lat[k] += got[k]
    for pr in procs:
        pr.join(timeout=30)
    shape = (batch, bs) if batch > 1 else (bs,)
    size = len(encode(Envelope(Kind.POWER_VECTOR, 0, 1, 0, 0, {"p": np.zeros(shape)})))
    return np.array(lat["raw"]), np.array(lat["msgpack"]), np.array(lat["codec"]), np.array(lat["proto"]), size


# -- broadcast: one publisher (this process), S subscriber processes --------------------------------
def sub_worker(node_id: int, n: int, blocks: int, up: Any, down: Any) -> None:
    ctx = zmq.Context()
    raw_sub = ctx.socket(zmq.SUB)
    raw_sub.setsockopt(zmq.LINGER, 0)
    raw_sub.setsockopt(zmq.SUBSCRIBE, b"")
    tmp = tempfile.mkdtemp()
    node = BroadcastNode(node_id, neighbours={0}, log=MessageLog(os.path.join(tmp, f"sub{node_id}.csv")))
    up.put(("ep", node_id, node.endpoint))
    raw_ep, peers = down.get(timeout=60)
    raw_sub.connect(raw_ep)
    node.connect(peers)
    broadcast_barrier(node, timeout_s=30)
    while raw_sub.recv()[:1] != b"\x01":  # raw slow-joiner barrier: wait for a warm-up frame
        pass
    up.put(("raw-ready", node_id, None))
    raw_lat: list[int] = []
    proto_lat: list[int] = []
    for _ in range(blocks):
        got = 0
        while got < n:
            frame = raw_sub.recv()
            if frame[:1] == b"\x02":
                raw_lat.append(now_ns() - _TS.unpack_from(frame, 1)[0])
                got += 1
        for _ in range(n):
            env = node.recv()
            proto_lat.append(now_ns() - env.t_send_ns)
    up.put(("done", node_id, (raw_lat, proto_lat, node.stats.gaps)))
    node.close()
    raw_sub.close()
    ctx.term()


def broadcast(n: int, blocks: int, subs: int, interval_s: float) -> tuple[np.ndarray, np.ndarray, int]:
    mpc = mp.get_context("spawn")
    up = mpc.Queue()
    ids = list(range(1, subs + 1))
    downs = {i: mpc.Queue() for i in ids}
    procs = [mpc.Process(target=sub_worker, args=(i, n // blocks, blocks, up, downs[i])) for i in ids]
    for pr in procs:
        pr.start()
    ctx = zmq.Context()
    raw_pub = ctx.socket(zmq.PUB)
    raw_pub.setsockopt(zmq.LINGER, 0)
    raw_ep = f"tcp://127.0.0.1:{raw_pub.bind_to_random_port('tcp://127.0.0.1')}"
    node = BroadcastNode(0, neighbours=ids, log=MessageLog(os.path.join(tempfile.mkdtemp(), "pub.csv")))
    peers = {0: node.endpoint}
    for _ in ids:
        _, i, ep = up.get(timeout=120)
        peers[i] = ep
    for q in downs.values():
        q.put((raw_ep, peers))
    node.connect(peers)
    broadcast_barrier(node, timeout_s=60)
    ready = 0
    while ready < subs:  # raw: publish warm-up frames until every subscriber heard one
        raw_pub.send(b"\x01")
        time.sleep(0.01)
        while not up.empty():
            tag, _, _ = up.get()
            ready += tag == "raw-ready"
    d = {"d": 0.123, "slot": 4096}  # zeroth-order: the scalar d_i and its slot
    size = len(encode(Envelope(Kind.SCALAR_D, 0, -1, 0, 0, d, "", now_ns())))
    pad = bytes(size - 1 - _TS.size)
    per = n // blocks
    for b in range(blocks):
        time.sleep(0.02)
        for _ in range(per):
            raw_pub.send(b"\x02" + _TS.pack(now_ns()) + pad)
            time.sleep(interval_s)
        time.sleep(0.02)
        for i in range(per):
            node.publish(Envelope(Kind.SCALAR_D, 0, -1, b * per + i, 0, d))
            time.sleep(interval_s)
    raw, proto = [], []
    for _ in ids:
        tag, _, (r_lat, p_lat, gaps) = up.get(timeout=300)
        assert tag == "done" and gaps == 0
        raw += r_lat
        proto += p_lat
    for pr in procs:
        pr.join(timeout=30)
    node.close()
    raw_pub.close()
    ctx.term()
    return np.array(raw), np.array([]), np.array([]), np.array(proto), size


def _pct(x: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(x, 50)) / 1e3, float(np.percentile(x, 99)) / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bs", type=int, default=7, help="base stations (power vector length, CSI B x B)")
    ap.add_argument("--params", type=int, default=10_000, help="policy parameters (gradient, FVP, theta)")
    ap.add_argument("--hop-msgs", type=int, default=4000, help="ring-hop round trips (each gives 2 one-way)")
    ap.add_argument("--bcast-msgs", type=int, default=2000, help="broadcast messages per variant")
    ap.add_argument("--subscribers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256, help="slots per ring-hop message in the batched row")
    ap.add_argument("--interval-us", type=float, default=300.0, help="pause between broadcasts")
    ap.add_argument("--blocks", type=int, default=4, help="raw/protocol alternations")
    args = ap.parse_args()
    t0 = time.monotonic()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()}; B = {args.bs}, {args.params} params\n")  # fmt: skip

    print("| kind | bytes/msg | encode µs | decode µs | encode+decode µs |")
    print("|---|---:|---:|---:|---:|")
    pv_total = 0.0
    for name, nbytes, enc, dec in codec_table(args.bs, args.params):
        print(f"| {name} | {nbytes} | {enc:.2f} | {dec:.2f} | {enc + dec:.2f} |")
        if name == "POWER_VECTOR":
            pv_total = enc + dec
    log = MessageLog(os.path.join(tempfile.mkdtemp(), "bench.csv"))
    env = Envelope(Kind.POWER_VECTOR, 1, 2, 3, 4, {}, "", now_ns())
    rec = _best_us(lambda: log.record_sent(env, 60), 4096)  # one buffer: fold + CSV write included
    log.close()
    print(f"\nMessageLog.record_sent (CSV row + aggregates): {rec:.2f} µs per message")
    print(f"power vector encode+decode: {pv_total:.2f} µs (goal <= 10 µs: {'met' if pv_total <= 10 else 'MISSED'})\n")

    rows = []
    for batch in (1, args.batch):
        raw, bare, codec, proto, size = ring_hop(args.hop_msgs, args.blocks, args.bs, batch)
        rows.append((f"ring hop, POWER_VECTOR {batch} slot(s) x {args.bs}", size, raw, bare, codec, proto))
    raw, bare, codec, proto, size = broadcast(args.bcast_msgs, args.blocks, args.subscribers, args.interval_us / 1e6)
    rows.append((f"broadcast 1 -> {args.subscribers}, SCALAR_D", size, raw, bare, codec, proto))
    print("| one-way latency (µs) | bytes | raw p50 | raw p99 | raw+msgpack p50 | raw+codec p50 | protocol p50 "
          "| protocol p99 | ratio p50 | ratio p99 | n |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, size, raw, bare, codec, proto in rows:
        (r50, r99), (p50, p99) = _pct(raw), _pct(proto)
        b50, c50 = (f"{_pct(x)[0]:.1f}" if len(x) else "—" for x in (bare, codec))
        print(f"| {name} | {size} | {r50:.1f} | {r99:.1f} | {b50} | {c50} | {p50:.1f} | {p99:.1f} | "
              f"{p50 / r50:.2f} | {p99 / r99:.2f} | {len(proto)} |")  # fmt: skip
    print(
        "\nlatency goal: protocol / raw <= 1.5 (p50). raw = pyzmq send/recv of a frame of the same size; "
        "raw+msgpack = the same sockets carrying a bare msgpack.packb/unpackb of the same fields (the floor of "
        "a msgpack codec); raw+codec = the same sockets carrying encode(env) / decode(frame); "
        "protocol = RingNode/BroadcastNode "
        "(encode, send, recv, decode + validation, sequence tracking, CSV log on both sides)."
    )
    print(f"total {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()
