"""run.bs_per_actor: several BSs hosted by one Ray actor. inproc == ray bit for bit in logical time for every
scheme and bs_per_actor in {1, 2, B} (1: test_ray_backend.py's cases); the token moves in memory between BSs of
one actor (logged with via memory) and over the ZeroMQ ring between actors (via socket, what the nodes counted);
every BS maps to its host actor's node in meta.json; placement pins whole actors; bad values are one line."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from coordinator.config import ConfigError
from coordinator.messages import RunMessages
from coordinator.trpo.backend import make_backend
from coordinator.trpo.config import TrainConfig, agent_spec, check_feasible
from coordinator.trpo.trainer import Trainer
from deploy.config import load_config
from protocol import COORDINATOR, Kind
from protocol.log import MEMORY, SOCKET, read_rows

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "deploy" / "configs" / "3cell_partial.yaml"
SMALL = ["policy.hidden=16", "policy.layers=2", "trpo.episodes=48", "trpo.cg_iters=4", "trpo.value_epochs=2"]
B = 3
_INPROC: dict[tuple, tuple] = {}


def run(scheme: str, backend: str, k: int, extra: tuple[str, ...] = (), path: Path | None = None, iters: int = 2,
        inspect=None):  # noqa: ANN001 - inspect(backend) runs after the iterations, before close
    """(theta, phi, per-iteration msgs_/bytes_ metrics, per-kind and per-link (count, bytes) of the log)."""
    cfg = load_config(TrainConfig, None, SMALL + [f"run.scheme={scheme}", f"run.backend={backend}",
                                                  f"run.bs_per_actor={k}", *extra])
    check_feasible(cfg)
    be = make_backend(cfg)
    try:
        tr = Trainer(cfg, be, RunMessages(path, run_id="bpa"))
        ms = [tr.step() for _ in range(iters)]
        seen = inspect(be) if inspect else None
        summary = tr.log.close()
    finally:
        be.close()
    metrics = [{key: v for key, v in m.items() if key.startswith(("msgs_", "bytes_")) or key == "lost_vectors"}
               for m in ms]
    kinds = {kind: counts(v) for kind, v in summary["per_kind"].items()}
    links = {link: {kind: counts(v) for kind, v in by_kind.items()} for link, by_kind in summary["per_link"].items()}
    return tr.theta.clone(), tr.phi.detach().clone(), metrics, kinds, links, seen


def counts(v: dict) -> tuple[tuple[int, int], ...]:
    """(count, bytes) sent, received, dropped of one summary entry."""
    return tuple((v.get(e, {}).get("count", 0), v.get(e, {}).get("bytes", 0)) for e in ("sent", "received", "dropped"))


def inproc(scheme: str, extra: tuple[str, ...] = ()) -> tuple:
    if (scheme, extra) not in _INPROC:
        _INPROC[(scheme, extra)] = run(scheme, "inproc", 1, extra)
    return _INPROC[(scheme, extra)]


@pytest.mark.parametrize("scheme,k,extra", [("partial", 2, ()), ("partial", B, ()), ("full", 2, ()), ("full", B, ()),
                                            ("centralized", 2, ()), ("centralized", B, ()),
                                            # lost round-robin vectors, and critic rounds riding over the nodes
                                            ("partial", 2, ("links.loss=0.3", "trpo.value_epochs=4",
                                                            "trpo.value_batches=3"))])
def test_inproc_equals_ray_with_bs_per_actor(ray_session, scheme, k, extra):
    torch.set_num_threads(1)

    def actors(be) -> int:  # noqa: ANN001
        return len(be.actors)

    ref, got = inproc(scheme, extra), run(scheme, "ray", k, extra, inspect=actors)
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])     # theta, phi bit for bit
    assert ref[2] == got[2]                                                # msgs_ / bytes_ per iteration
    assert ref[3] == got[3] and ref[4] == got[4]                           # the log per kind and per link
    assert got[5] == (1 if scheme == "centralized" else -(-B // k))        # actors: ceil(B / k)


def test_hops_in_memory_inside_an_actor_and_over_sockets_between_actors(ray_session, tmp_path):
    """B = 3, two BSs per actor: 0 -> 1 moves in memory, 1 -> 2 and 2 -> 0 cross the ZeroMQ ring; the log's via
    says which, the socket rows are what the nodes counted, and the rows (but via and times) equal inproc's."""
    torch.set_num_threads(1)
    iters = 2

    def stats(be):  # noqa: ANN001, ANN202
        return be.ring_stats(), sorted(be.memory_links), be.groups

    run("partial", "inproc", 1, path=tmp_path / "inproc.csv", iters=iters)
    *_, (ring, memory, groups) = run("partial", "ray", 2, path=tmp_path / "ray.csv", iters=iters, inspect=stats)
    assert groups == [[0, 1], [2]] and memory == [(0, 1)]
    rows = {b: [r for r in read_rows(tmp_path / f"{b}.csv")
                if r[1] == int(Kind.POWER_VECTOR) and r[3] != COORDINATOR] for b in ("inproc", "ray")}
    hops = iters * (B * B - 1)
    assert len(rows["ray"]) == 2 * hops                                     # each hop sent and received
    for r in rows["ray"]:
        assert r[-1] == (MEMORY if (r[2], r[3]) == (0, 1) else SOCKET)
    assert {r[-1] for r in rows["inproc"]} == {MEMORY}
    sent_socket = sum(1 for r in rows["ray"] if r[0] == 0 and r[-1] == SOCKET)
    assert sum(s["sent"] for s in ring) == sent_socket == iters * B * 2 - iters   # 1->2 every pass, 2->0 but last
    assert sum(s["received"] for s in ring) == sent_socket and all(s["rejected"] == 0 for s in ring)
    same = lambda rs: Counter((r[0], r[2], r[3], r[4], r[5], r[6]) for r in rs)  # noqa: E731 - event, link, it, seq, bytes
    assert same(rows["inproc"]) == same(rows["ray"])


def test_each_bs_maps_to_its_actor_in_meta_and_pins_move_whole_actors(ray_session):
    from coordinator.placement import plan
    from coordinator.trpo.ray_backend import actor_groups, plan_groups

    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, None, SMALL + ["run.scheme=full", "run.backend=ray", "run.bs_per_actor=2"])
    be = make_backend(cfg)
    try:
        meta = be.meta()
        pids = [a.__ray_call__.remote(lambda self: __import__("os").getpid()) for a in be.actors]
        import ray

        pids = ray.get(pids)
    finally:
        be.close()
    where = meta["placement"]
    assert set(where) == {"bs0", "bs1", "bs2"} == set(meta["clock_offsets_ns"])
    assert [where[f"bs{b}"]["actor"] for b in range(B)] == [0, 0, 1]
    assert [where[f"bs{b}"]["pid"] for b in range(B)] == [pids[0], pids[0], pids[1]]
    assert meta["clock_offsets_ns"]["bs0"] == meta["clock_offsets_ns"]["bs1"]
    # one node here: the map resolves, every BS of an actor on its actor's node
    spec = agent_spec(cfg)
    groups = actor_groups(2, spec)
    node = plan("pack", ["0"])["0"]
    assert plan_groups("1:#0", ["0", "1", "2"], groups) == {"0": node, "1": node, "2": node}
    with pytest.raises(ConfigError, match="names no actor"):
        plan_groups("7:#0", ["0", "1", "2"], groups)


@pytest.mark.slow
def test_two_nodes_spread_actors_and_refuse_split_pins(two_nodes, tmp_path):
    """A real 2-node cluster: with two BSs per actor, spread puts actor 0 (BSs 0, 1) and actor 1 (BS 2) on
    different nodes, meta.json maps each BS to its actor's node, inproc == ray holds across them; pinning two BSs
    of one actor to different nodes is one ConfigError before any actor starts."""
    from coordinator.placement import alive_nodes
    from coordinator.trpo.ray_backend import RayBackend, actor_groups, plan_groups

    torch.set_num_threads(1)
    spec = agent_spec(load_config(TrainConfig, None, SMALL))
    with pytest.raises(ConfigError, match="share one actor"):
        RayBackend(spec, [0, 1, 2], placement="0:#0,1:#1", bs_per_actor=2)
    nodes = alive_nodes()
    at = plan_groups("1:#1", ["0", "1", "2"], actor_groups(2, spec))   # BS 1 pins actor 0; actor 1 spreads
    assert at == {"0": nodes[1], "1": nodes[1], "2": nodes[0]}
    metas = {}

    def meta(be):  # noqa: ANN001, ANN202
        metas["ray"] = be.meta()

    ref = run("partial", "inproc", 1)
    got = run("partial", "ray", 2, ("run.placement=spread",), inspect=meta)
    where = metas["ray"]["placement"]
    assert where["bs0"]["node"] == where["bs1"]["node"] != where["bs2"]["node"]
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1]) and ref[3] == got[3]


def test_bad_bs_per_actor_is_one_line_and_writes_nothing(tmp_path):
    from coordinator.trpo.ray_backend import actor_groups

    cfg = load_config(TrainConfig, None, ["run.bs_per_actor=4"])           # in range, above B = 3
    with pytest.raises(ConfigError, match=r"run.bs_per_actor: expected 1 to the number of BSs \(3"):
        check_feasible(cfg)
    with pytest.raises(ConfigError, match="run.bs_per_actor"):
        load_config(TrainConfig, None, ["run.bs_per_actor=0"])
    with pytest.raises(ConfigError, match="run.bs_per_actor"):
        actor_groups(4, agent_spec(cfg))                                   # the backend checks it itself too
    assert actor_groups(19, agent_spec(load_config(TrainConfig, None, ["scenario.kind=19cell",
                                                                       "run.bs_per_actor=19"]))) == [list(range(19))]
    assert [len(g) for g in actor_groups(4, agent_spec(load_config(TrainConfig, None, ["scenario.kind=19cell"])))] \
        == [4, 4, 4, 4, 3]
    for value in ("4", "0", "two"):
        r = subprocess.run([sys.executable, "-m", "deploy.cli", "train", "--config", str(CONFIG),
                            "--set", f"run.bs_per_actor={value}", "--run-dir", str(tmp_path / "run"), "--no-progress"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "run.bs_per_actor" in r.stderr
        assert not (tmp_path / "run").exists()
