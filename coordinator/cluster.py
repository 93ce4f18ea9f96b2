"""What `bsemu cluster-check` measures on a Ray cluster: its nodes, ZeroMQ between them, their clocks.

One probe actor is pinned to every alive node (``NodeAffinitySchedulingStrategy``, no CPU reserved) and
reports what runs there: Ray and Python versions, host name, address. Each probe then binds a
:class:`protocol.RingNode` on its node's address (``ray.util.get_node_ip_address()`` there; 127.0.0.1 when
the driver and every node share one host, DESIGN §6b: loopback binds on one machine), and so does the
driver (with CURVE and keys made for the check when the nodes span hosts, as bsemu's runs do across
nodes; ``curve=True`` forces it). Over those real sockets:

* every ordered pair of nodes (X, Y): X sends Y HEARTBEAT clock pings and Y's transport answers them
  (:func:`protocol.estimate_clock_offset`); a pong back proves both directions connect, and the
  smallest round trip δ of ``1 + rounds`` pings is reported;
* every node against the driver: the driver pings the node's probe and gets the node's clock offset
  θ (``t_node ≈ t_driver + θ``, true within ±δ/2). On one host ``CLOCK_MONOTONIC`` is shared, so
  |θ| ≤ δ/2 must hold; a larger θ is reported as a problem.

A node whose probe does not start, a pair or a node that does not answer within ``reach_timeout_s`` is
named in :attr:`ClusterReport.problems`. The caller holds the Ray session (:mod:`coordinator.session`).
"""

from __future__ import annotations

import platform
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from protocol import (
    Envelope,
    Kind,
    NodeKeys,
    RingNode,
    TransportError,
    estimate_clock_offset,
    generate_run_keys,
    offset_from_samples,
)

DRIVER = 0
"""Ring node id of the driver; the probe of alive node k (in :attr:`ClusterReport.nodes` order) is k + 1."""
_DONE = "cluster_check_done"  # HEARTBEAT payload key: "I have finished pinging", sent to every peer


@dataclass(frozen=True)
class PairResult:
    """ZeroMQ from node ``src`` to node ``dst`` (Ray node ids): ``ok`` if ``dst`` answered; ``rtt_ns`` the
    smallest round trip δ (the peer's turnaround removed), ``offset_ns`` dst's clock − src's."""

    src: str
    dst: str
    ok: bool
    rtt_ns: int | None = None
    offset_ns: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class NodeReport:
    """One Ray node: what Ray's GCS says of it, what a task on it reported, its clock against the driver.

    ``cpus`` and ``memory_bytes`` are the node's Ray resources; ``ray_version``, ``python_version``,
    ``hostname`` and ``ip`` come from the probe on the node (None: nothing ran there). ``offset_ns`` is
    the node's monotonic clock − the driver's, true within ± ``offset_rtt_ns`` / 2."""

    node_id: str
    ip: str
    alive: bool
    cpus: float
    memory_bytes: int
    ray_version: str | None = None
    python_version: str | None = None
    hostname: str | None = None
    offset_ns: int | None = None
    offset_rtt_ns: int | None = None
    error: str | None = None

    @property
    def short(self) -> str:
        return self.node_id[:8]


@dataclass(frozen=True)
class ClusterReport:
    """Result of :func:`check_cluster`; ``problems`` is empty when every alive node ran a probe, every
    pair answered and every clock offset is consistent."""

    address: str | None
    driver_ip: str
    driver_ray: str
    driver_python: str
    one_host: bool
    zmq_host: str
    curve: bool
    nodes: tuple[NodeReport, ...]
    pairs: tuple[PairResult, ...]
    seconds: float
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def pair(self, src: str, dst: str) -> PairResult | None:
        return next((p for p in self.pairs if p.src == src and p.dst == dst), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (for ``--json``)."""
        d = asdict(self)
        d["ok"] = self.ok
        return d


class NodeProbe:
    """The probe that runs on one node (as a Ray actor pinned there, no CPU reserved)."""

    def __init__(self) -> None:
        self.node: RingNode | None = None

    def info(self) -> dict[str, Any]:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
                "ray": ray.__version__, "python": platform.python_version(), "hostname": socket.gethostname()}

    def open(self, node_id: int, loopback: bool, curve: NodeKeys | None = None) -> str:
        """Bind this node's RingNode (127.0.0.1 or the node's address; CURVE with ``curve``); return its
        endpoint."""
        host = "127.0.0.1"
        if not loopback:
            import ray

            host = ray.util.get_node_ip_address()
        self.node = RingNode(node_id, host, curve=curve)
        return self.node.endpoint

    def probe(self, endpoints: dict[int, str], targets: list[int], rounds: int, reach_timeout_s: float,
              serve_s: float) -> dict[str, Any]:
        """Ping every target, then answer the others' pings until each peer said it is done (or ``serve_s``).
        Returns ``{"pairs": {target: result}, "unfinished": [peers never heard done]}``."""
        node = self.node
        if node is None:
            raise TransportError("probe() before open()")
        node.connect(endpoints)
        results = {t: _ping(node, t, rounds, reach_timeout_s) for t in targets}
        peers = [p for p in endpoints if p != node.node_id]
        for p in peers:
            if p != DRIVER:
                node.send(p, Envelope(Kind.HEARTBEAT, node.node_id, p, 0, 0, {_DONE: 1}))
        waiting = set(peers)
        deadline = time.monotonic() + serve_s
        while waiting and (left := deadline - time.monotonic()) > 0:
            env = node.recv(timeout_ms=max(1, int(left * 1000)))  # answers pings meanwhile
            if env is not None and env.kind == Kind.HEARTBEAT and _DONE in env.payload:
                waiting.discard(env.sender)
        return {"pairs": results, "unfinished": sorted(waiting)}

    def close(self) -> None:
        if self.node is not None:
            self.node.close()
            self.node = None


def _ping(node: RingNode, peer: int, rounds: int, reach_timeout_s: float) -> dict[str, Any]:
    """One ping with a generous timeout (does the peer answer at all?), then ``rounds`` quick ones;
    the offset and round trip of the smallest-δ sample of all."""
    try:
        first = estimate_clock_offset(node, peer, rounds=1, timeout_s=reach_timeout_s)
    except TransportError:
        return {"ok": False, "error": f"no answer within {reach_timeout_s:g} s"}
    samples = list(first.samples)
    lost = 0
    if rounds > 0:
        try:
            more = estimate_clock_offset(node, peer, rounds=rounds, timeout_s=min(0.5, reach_timeout_s))
            samples += more.samples
            lost = more.lost
        except TransportError:
            lost = rounds
    est = offset_from_samples(samples, peer, lost)
    return {"ok": True, "offset_ns": est.offset_ns, "rtt_ns": est.rtt_ns, "lost": lost}


def check_cluster(address: str | None = None, rounds: int = 8, reach_timeout_s: float = 3.0,
                  start_timeout_s: float = 10.0, curve: bool | None = None) -> ClusterReport:
    """Probe every alive node of the Ray this process has joined (see the module docstring).

    Args:
        address: the cluster's address, for the report only.
        rounds: clock pings per pair after the first (≥ 0).
        reach_timeout_s: how long a first ping waits for its answer before the pair is unreachable.
        start_timeout_s: how long the probes may take to start on their nodes.
        curve: CURVE on every socket, with keys made for this check (None: when the nodes are not all on
            the driver's host, as bsemu's runs do across nodes, DESIGN §6b).
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    t0 = time.perf_counter()
    driver_ip = ray.util.get_node_ip_address()
    listed = sorted(ray.nodes(), key=lambda n: (not n.get("Alive"), n["NodeID"]))
    problems: list[str] = []
    notes: list[str] = []
    alive = [n for n in listed if n.get("Alive")]
    probe_cls = ray.remote(num_cpus=0, max_restarts=0)(NodeProbe)
    actors = [probe_cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
              for n in alive]
    try:
        infos = _gather([a.info.remote() for a in actors], start_timeout_s)
        ran = [i for i, info in enumerate(infos) if isinstance(info, dict)]
        for i, info in enumerate(infos):
            if not isinstance(info, dict):
                problems.append(f"node {alive[i]['NodeID'][:8]} ({alive[i]['NodeManagerAddress']}): no task ran "
                                f"there ({info})")
            elif info["node_id"] != alive[i]["NodeID"]:  # node affinity is hard: never expected
                problems.append(f"node {alive[i]['NodeID'][:8]}: its probe ran on {info['node_id'][:8]}")
        ips = {infos[i]["ip"] for i in ran}
        one_host = ips <= {driver_ip}
        zmq_host = "127.0.0.1" if one_host else "node addresses"
        curve = not one_host if curve is None else curve
        keys: dict[int, NodeKeys] = generate_run_keys([DRIVER, *(i + 1 for i in ran)]) if curve else {}
        endpoints = dict(zip([i + 1 for i in ran],
                             _gather([actors[i].open.remote(i + 1, one_host, keys.get(i + 1)) for i in ran],
                                     start_timeout_s),
                             strict=True))
        bad = {k: v for k, v in endpoints.items() if not isinstance(v, str)}
        for k, v in bad.items():
            problems.append(f"node {alive[k - 1]['NodeID'][:8]}: cannot bind a ZeroMQ socket ({v})")
        endpoints = {k: v for k, v in endpoints.items() if isinstance(v, str)}
        pairs, offsets = _measure(actors, endpoints, driver_ip, one_host, rounds, reach_timeout_s, keys.get(DRIVER))
    finally:
        for a in actors:
            ray.kill(a)
    nodes = []
    by_id = {n["NodeID"]: i + 1 for i, n in enumerate(alive)}
    for n in listed:
        k = by_id.get(n["NodeID"])
        info = infos[k - 1] if k is not None and isinstance(infos[k - 1], dict) else {}
        off = offsets.get(k, {}) if k is not None else {}
        res = n.get("Resources", {})
        nodes.append(NodeReport(
            node_id=n["NodeID"], ip=info.get("ip", n.get("NodeManagerAddress", "?")), alive=bool(n.get("Alive")),
            cpus=float(res.get("CPU", 0.0)), memory_bytes=int(res.get("memory", 0)),
            ray_version=info.get("ray"), python_version=info.get("python"), hostname=info.get("hostname"),
            offset_ns=off.get("offset_ns"), offset_rtt_ns=off.get("rtt_ns"), error=off.get("error")))
        if not n.get("Alive"):
            notes.append(f"node {n['NodeID'][:8]} ({n.get('NodeManagerAddress', '?')}) is listed dead by the GCS")
    names = {k: alive[k - 1]["NodeID"] for k in endpoints}
    pair_results = tuple(PairResult(names[s], names[d], r["ok"], r.get("rtt_ns"), r.get("offset_ns"), r.get("error"))
                         for (s, d), r in sorted(pairs.items()))
    for p in pair_results:
        if not p.ok:
            problems.append(f"ZeroMQ from node {p.src[:8]} to node {p.dst[:8]}: {p.error}")
    for nr in nodes:
        if nr.alive and nr.error is not None:
            problems.append(f"node {nr.short} ({nr.ip}): clock ping from the driver: {nr.error}")
        elif one_host and nr.offset_ns is not None and nr.offset_rtt_ns is not None \
                and abs(nr.offset_ns) > nr.offset_rtt_ns // 2 + 1:
            problems.append(f"node {nr.short}: clock offset {nr.offset_ns} ns outside ±rtt/2 = "
                            f"±{nr.offset_rtt_ns / 2:.0f} ns on one host (shared CLOCK_MONOTONIC)")
    pythons = {nr.python_version for nr in nodes if nr.python_version} | {platform.python_version()}
    if len(pythons) > 1:
        notes.append(f"Python versions differ across the driver and nodes ({', '.join(sorted(pythons))}): "
                     f"Ray needs the same minor version everywhere")
    return ClusterReport(address, driver_ip, ray.__version__, platform.python_version(), one_host, zmq_host, curve,
                         tuple(nodes), pair_results, time.perf_counter() - t0, tuple(problems), tuple(notes))


def _gather(refs: list, timeout_s: float) -> list:
    """``ray.get`` of each ref within one shared deadline; an error text in place of each that failed."""
    import ray

    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    done = set(ready)
    out: list = []
    for r in refs:
        if r not in done:
            out.append(f"not started within {timeout_s:g} s")
            continue
        try:
            out.append(ray.get(r))
        except Exception as exc:  # a probe that died: its error, in one line
            out.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return out


def _measure(actors: list, endpoints: dict[int, str], driver_ip: str, one_host: bool, rounds: int,
             reach_timeout_s: float, curve: NodeKeys | None) -> tuple[dict[tuple[int, int], dict], dict[int, dict]]:
    """Every ordered pair of probes and the driver against every probe, at once, over real sockets."""
    if not endpoints:
        return {}, {}
    driver = RingNode(DRIVER, "127.0.0.1" if one_host else driver_ip, curve=curve)
    try:
        everyone = {DRIVER: driver.endpoint, **endpoints}
        driver.connect(endpoints)
        ids = sorted(endpoints)
        # a probe serves until every peer is done; one that never hears from a peer stops after this
        serve_s = (len(ids) + 1) * (reach_timeout_s + rounds * 0.5) + reach_timeout_s
        refs = {k: actors[k - 1].probe.remote(everyone, [j for j in ids if j != k], rounds, reach_timeout_s, serve_s)
                for k in ids}
        offsets = {k: _ping(driver, k, rounds, reach_timeout_s) for k in ids}
        for k in ids:
            driver.send(k, Envelope(Kind.HEARTBEAT, DRIVER, k, 0, 0, {_DONE: 1}))
        got = _gather(list(refs.values()), serve_s + reach_timeout_s + 5.0)
    finally:
        driver.close()
    pairs: dict[tuple[int, int], dict] = {}
    for k, res in zip(refs, got, strict=True):
        for j in ids:
            if j == k:
                continue
            if isinstance(res, dict):
                pairs[(k, j)] = res["pairs"].get(j, {"ok": False, "error": "not measured"})
            else:
                pairs[(k, j)] = {"ok": False, "error": f"probe failed: {res}"}
    for k, off in offsets.items():
        if not off["ok"]:
            off["error"] = off.get("error", "no answer")
    return pairs, offsets


__all__ = ["ClusterReport", "NodeReport", "PairResult", "NodeProbe", "check_cluster", "DRIVER"]
