"""run.secure (DESIGN §6b): CURVE with per-run keys on every ZeroMQ node of a TRPO, zeroth-order and execution
run, on a real local Ray with real sockets. Secure runs give the numbers of plain ones bit for bit (TRPO: and of
inproc; ZO in logical time: and of inproc, one or several links per actor; execution on the logical clock: the
evaluation's powers); a plain client and a client whose key is not in the run, both claiming a member's id, are
refused at the handshake and counted while the run goes on untouched; ``auto`` is off on one machine and on
across two Ray nodes; the run folder gets meta.json ``secure`` and the public keys (never a secret)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from bs_agent.trpo.actor import COORD_NODE
from deploy.config import load_config
from protocol import Envelope, Kind, NodeKeys, RingNode, TransportError, generate_run_keys
from tests import ROOT

pytestmark = pytest.mark.ray

SMALL = ["policy.hidden=16", "policy.layers=2", "trpo.episodes=48", "trpo.cg_iters=4", "trpo.value_epochs=2"]


def _until(cond: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _intrude(endpoint: str, target: int, claim: int, target_public: bytes) -> list[RingNode]:
    """Two intruders claiming to be run member ``claim``, each sending ``target`` a frame at ``endpoint``: a plain
    (non-CURVE) client, and a CURVE client with a fresh key pair not in the run (it knows the target's public
    key: the run folder publishes it). Returns them (still connected: the caller closes them)."""
    own = generate_run_keys([claim])[claim]
    foreign = NodeKeys(claim, own.public, own.secret, {target: target_public, claim: own.public})
    nodes = [RingNode(claim, send_timeout_ms=200), RingNode(claim, curve=foreign, send_timeout_ms=200)]
    for n in nodes:
        n.connect({target: endpoint})
        try:        # queued until the refusal closes the pipe; then a send may time out
            n.send(target, Envelope(Kind.POWER_VECTOR, claim, target, 0, 0, {"p": np.zeros(6, np.float32)}))
        except TransportError:
            pass
    return nodes


def _counts(stats, refused: int) -> tuple[int, int, int, int]:  # noqa: ANN001 - a NodeStats
    """(handshake failures, CURVE keys refused by the authenticator, messages received, frames rejected)."""
    return stats.handshake_failures, refused, stats.received, sum(stats.rejected.values())


def _node_counts(node: RingNode) -> tuple[int, int, int, int]:
    return _counts(node.stats, node.auth_refused)


def _actor_counts(actor, get: Callable) -> tuple[int, int, int, int]:  # noqa: ANN001
    """:func:`_node_counts` of the node ``get(actor)`` inside a Ray actor (the lambda travels by value)."""
    import ray

    return _counts(*ray.get(actor.__ray_call__.remote(lambda self: (get(self).stats, get(self).auth_refused))))


def _knock(endpoint: str, target: int, claim: int, target_public: bytes,
           counts: Callable[[], tuple[int, int, int, int]]) -> None:
    """Two intruders (:func:`_intrude`) at a secure node: wait until both are refused and counted — the foreign key
    by the authenticator (which counts before the handshake failure it causes is reported), the plain client at
    the handshake (one failure more than the authenticator's refusals) — and check that nothing they sent reached
    the node, not even as a rejected frame."""
    before = counts()
    nodes = _intrude(endpoint, target, claim, target_public)
    try:
        def both() -> bool:
            hf, ar = (c - b for c, b in zip(counts()[:2], before[:2], strict=True))
            return ar >= 1 and hf >= ar + 1

        assert _until(both), (before, counts())
        time.sleep(0.3)                                # anything delivered late would show now
        assert counts()[2:] == before[2:]
    finally:
        for n in nodes:
            n.close()


def test_trpo_round_robin_secure_equals_plain_and_inproc_and_refuses_intruders(ray_session):
    from coordinator.trpo.backend import make_backend
    from coordinator.trpo.config import TrainConfig
    from coordinator.trpo.trainer import Trainer

    torch.set_num_threads(1)
    out = {}
    for mode in ("inproc", "off", "on", "auto"):
        backend = "inproc" if mode == "inproc" else "ray"
        cfg = load_config(TrainConfig, None, SMALL + ["run.scheme=partial", f"run.backend={backend}",
                                                      f"run.secure={mode if backend == 'ray' else 'off'}"])
        be = make_backend(cfg)
        try:
            if mode == "auto":                       # one machine, one Ray node: no CURVE unless asked
                assert be.secure is False and be.keys == {}
                continue
            tr = Trainer(cfg, be)
            tr.step()
            if mode == "on":
                assert be.secure is True and set(be.keys) == {0, 1, 2, COORD_NODE}
                assert all(k.secret == b"" and len(k.public) == 40 for k in be.keys.values())   # publics only
                import ray

                ep1 = ray.get(be.actors[1].__ray_call__.remote(lambda self: self.node.endpoint))
                _knock(ep1, 1, 0, be.keys[1].public, partial(_actor_counts, be.actors[1], lambda self: self.node))
                _knock(be.node.endpoint, COORD_NODE, 2, be.keys[COORD_NODE].public, partial(_node_counts, be.node))
            elif mode == "off":
                assert be.secure is False and be.keys == {}
            tr.step()                                # the run goes on as if nobody had knocked
            out[mode] = (tr.theta.clone(), tr.phi.detach().clone())
            if mode != "inproc":
                assert [s["rejected"] for s in be.ring_stats()] == [0, 0, 0]
        finally:
            be.close()
    for mode in ("off", "on"):
        assert torch.equal(out["inproc"][0], out[mode][0]) and torch.equal(out["inproc"][1], out[mode][1])


def _zo_cfg(**run):
    from coordinator.zo.config import ZOConfig

    return ZOConfig().replace(algo={"b1": 10, "b2": 10, "update": "async", "asynchrony": 40.0, "delay_kind": "uniform",
                                    "jitter": 2.0, "drop_prob": 0.2},
                              run={"iterations": 5, "eval_every": 5, "eval_sequences": 2, "eval_slots": 5, **run})


@pytest.mark.parametrize("per_actor", [1, 2])
def test_zo_secure_equals_plain_and_inproc_in_logical_time(ray_session, per_actor):
    """Several links per actor: each its own context when secure, co-hosted links over authenticated TCP."""
    import ray

    from coordinator.zo.links import Exchange
    from coordinator.zo.ray_links import RayLinks
    from coordinator.zo.train import Evaluator, make_trainer, train
    from protocol.log import MessageLog

    out = {}
    for mode in ("inproc", "off", "on"):
        cfg = _zo_cfg(secure=mode)
        log, ex = MessageLog(None), Exchange()
        links = None if mode == "inproc" else RayLinks(cfg, log, ex, links_per_actor=per_actor)
        try:
            if links is not None:
                a = links.actor_of[1]
                secure, inproc, ep1 = ray.get(links.actors[a].__ray_call__.remote(
                    lambda self: ([h.node._keys is not None for h in self.links.values()],
                                  [h.inproc for h in self.links.values()], self.links[1].node.endpoint)))
                assert links.secure is (mode == "on") and secure == [mode == "on"] * len(links.groups[a])
                assert set(links.keys) == (set(range(cfg.scenario.n_links)) if mode == "on" else set())
                assert all(bool(e) is (mode == "off" and per_actor > 1) for e in inproc)   # inproc only in clear
                if mode == "on":
                    _knock(ep1, 1, 0, links.keys[1].public,
                           partial(_actor_counts, links.actors[a], lambda self: self.links[1].node))
            tr = make_trainer(cfg, log, ex, links)
            train(cfg, tr, Evaluator(cfg), cfg.run.iterations)
            out[mode] = ([t.copy() for t in tr.thetas()], (ex.messages, ex.scalars, ex.bytes, ex.dropped),
                         links.stats() if links is not None else None)
        finally:
            if links is not None:
                links.close()
    for mode in ("off", "on"):
        assert all(np.array_equal(x, y) for x, y in zip(out["inproc"][0], out[mode][0], strict=True))
        assert out["inproc"][1] == out[mode][1]
        assert all(s["rejected"] == 0 for s in out[mode][2])


def test_execute_secure_gives_the_evaluations_powers_and_writes_keys(ray_session, tmp_path):
    import ray
    import zmq.auth

    from coordinator.execute.config import ExecuteConfig, check_execute
    from coordinator.execute.report import applied_fractions, ideal_fractions, report
    from coordinator.execute.runner import ExecutionRunner
    from deploy.commands.execute import write_outputs
    from tests.coordinator.execute.test_runner import source

    class KnockedAt(ExecutionRunner):
        """The run, with two intruders at BS 1's and at the coordinator's node once they are up (before any slot)."""

        def _start(self) -> None:
            super()._start()
            ep1 = ray.get(self.actors[1].__ray_call__.remote(lambda s: s.node.endpoint))
            _knock(ep1, 1, 2, self.keys[1].public, partial(_actor_counts, self.actors[1], lambda s: s.node))
            _knock(self.node.endpoint, COORD_NODE, 0, self.keys[COORD_NODE].public, partial(_node_counts, self.node))

    src = source("partial")
    cfg = load_config(ExecuteConfig, None, ["run.slots=25", "run.clock=logical", "run.warmup_slots=0",
                                            "run.secure=on"])
    check_execute(cfg)
    runner = KnockedAt(cfg, src, 3)
    col = runner.run()
    assert col.secure is True and set(col.keys) == {0, 1, 2, COORD_NODE}
    frac, ready = applied_fractions(col, 3, 2, real=False)
    assert ready.all()
    np.testing.assert_allclose(frac, ideal_fractions(src, runner.problem, runner.order), rtol=0, atol=2e-6)
    assert all(r["stats"]["rejected"] == 0 for r in col.nodes.values())
    summary, per_slot, samples = report(cfg, src, runner.problem, runner.order, col)
    summary["seed"], summary["source"] = 3, "test"
    write_outputs(tmp_path, cfg, summary, per_slot, samples, col)
    assert json.loads((tmp_path / "meta.json").read_text())["secure"] is True
    for i, k in col.keys.items():
        public, secret = zmq.auth.load_certificate(tmp_path / "keys" / f"node{i}.key")
        assert public == k.public and secret is None


def bsemu(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_zo_cli_auto_is_off_on_one_machine_and_on_writes_the_public_keys(tmp_path):
    tiny = ["--no-progress", "--set", "run.backend=ray", "--set", "run.iterations=2", "--set", "run.eval_every=2",
            "--set", "algo.b1=5", "--set", "algo.b2=5", "--set", "run.eval_sequences=2", "--set", "run.eval_slots=4"]
    for mode, secure in (("auto", False), ("on", True)):
        run = tmp_path / mode
        r = bsemu("zo", "--run-dir", str(run), *tiny, "--set", f"run.secure={mode}")
        assert r.returncode == 0, r.stderr
        meta = json.loads((run / "meta.json").read_text())
        assert meta["secure"] is secure
        keys = sorted(p.name for p in (run / "keys").glob("*.key")) if (run / "keys").exists() else []
        assert keys == ([f"node{i}.key" for i in range(5)] if secure else [])
        assert all("secret" not in (run / "keys" / k).read_text() for k in keys)


def test_secure_refuses_a_bad_value():
    from coordinator.config import ConfigError
    from coordinator.trpo.config import TrainConfig

    with pytest.raises(ConfigError, match="run.secure: expected one of auto, on, off"):
        load_config(TrainConfig, None, ["run.secure=maybe"])
    assert load_config(TrainConfig, None, ["run.secure=off"]).run.secure is False     # YAML's off




def test_auto_is_on_across_two_nodes_and_equals_inproc(two_nodes):
    from coordinator.zo.links import Exchange
    from coordinator.zo.ray_links import RayLinks
    from coordinator.zo.train import Evaluator, make_trainer, train
    from protocol.log import MessageLog

    cfg = _zo_cfg(placement="spread", secure="auto").replace(scenario={"n_links": 4})
    out = {}
    for backend in ("inproc", "ray"):
        log, ex = MessageLog(None), Exchange()
        links = RayLinks(cfg, log, ex, links_per_actor=2) if backend == "ray" else None
        try:
            if links is not None:
                assert len({v["node"] for v in links.meta()["placement"].values()}) == 2 and links.secure
            tr = make_trainer(cfg, log, ex, links)
            train(cfg, tr, Evaluator(cfg), cfg.run.iterations)
            out[backend] = [t.copy() for t in tr.thetas()]
        finally:
            if links is not None:
                links.close()
    assert all(np.array_equal(a, b) for a, b in zip(out["inproc"], out["ray"], strict=True))


def test_public_keys_never_hold_a_secret(tmp_path: Path):
    from coordinator.trpo.ray_backend import public_only
    from protocol import save_public_keys

    keys = generate_run_keys([0, 1])
    pub = public_only(keys)
    assert all(pub[i].public == keys[i].public and pub[i].secret == b"" for i in keys)
    for f in save_public_keys(pub, tmp_path):
        text = f.read_text()
        assert "secret" not in text and all(k.secret.decode() not in text for k in keys.values())
