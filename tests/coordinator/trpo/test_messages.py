"""The message log of TRPO runs: what the ring really carried, the same log in both backends, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bs_agent.trpo.ops import token_payload
from coordinator.messages import RunMessages
from coordinator.trpo.backend import make_backend
from coordinator.trpo.config import TrainConfig
from coordinator.trpo.trainer import Trainer
from deploy.config import load_config
from protocol import COORDINATOR, Envelope, Kind, frame_size, summarize_csv

SMALL = ["policy.hidden=16", "policy.layers=2", "trpo.episodes=40", "trpo.cg_iters=4", "trpo.value_epochs=2"]
B, ITERS = 3, 3


def run(scheme: str, backend: str, path=None, iters: int = ITERS):
    cfg = load_config(TrainConfig, None, SMALL + [f"run.scheme={scheme}", f"run.backend={backend}"])
    be = make_backend(cfg)
    try:
        tr = Trainer(cfg, be, RunMessages(path, run_id="test-run"))
        ms = [tr.step() for _ in range(iters)]
        stats = be.ring_stats() if backend == "ray" and scheme == "partial" else None
        return tr, ms, stats
    finally:
        be.close()


def counts_bytes(summary: dict) -> dict:
    """Per kind: (sent count, sent bytes, received count, received bytes)."""
    return {k: (v["sent"]["count"], v["sent"]["bytes"], v["received"]["count"], v["received"]["bytes"])
            for k, v in summary["per_kind"].items()}


def hop_rows(path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r["kind"] == "POWER_VECTOR"]


@pytest.mark.ray
def test_ring_log_is_what_the_ring_carried(ray_session, tmp_path):
    tr, ms, stats = run("partial", "ray", tmp_path / "messages.csv")
    tr.log.close()
    rows = hop_rows(tmp_path / "messages.csv")
    ring = [r for r in rows if int(r["receiver"]) != COORDINATOR]
    sent = [r for r in ring if r["event"] == "sent"]
    received = [r for r in ring if r["event"] == "received"]
    # the nodes' own counters, independent of the log: B*B - 1 hops per iteration, none rejected
    assert sum(s["sent"] for s in stats) == len(sent) == ITERS * (B * B - 1)
    assert sum(s["received"] for s in stats) == len(received) == len(sent)
    assert all(s["rejected"] == 0 for s in stats)
    # every hop b -> b+1, received as sent (same link, seq, bytes, send time), after it was sent
    key = lambda r: (r["sender"], r["receiver"], r["seq"])  # noqa: E731
    by_key = {key(r): r for r in received}
    for r in sent:
        assert int(r["receiver"]) == (int(r["sender"]) + 1) % B
        got = by_key[key(r)]
        assert (got["nbytes"], got["t_send_ns"], got["iteration"]) == (r["nbytes"], r["t_send_ns"], r["iteration"])
        assert int(got["t_recv_ns"]) >= int(r["t_send_ns"]) > 0
        # bytes on the wire = the size of the token envelope the ring sends (values do not change it)
        M, L = tr.cfg.trpo.episodes, tr.L
        env = Envelope(Kind.POWER_VECTOR, int(r["sender"]), int(r["receiver"]), int(r["iteration"]), int(r["seq"]),
                       token_payload(np.zeros((M, L)), np.zeros((M, B), bool)), "test-run", int(r["t_send_ns"]))
        assert int(r["nbytes"]) == frame_size(env)
    # seq numbers count per link from 0
    for link in {(r["sender"], r["receiver"]) for r in sent}:
        seqs = sorted(int(r["seq"]) for r in sent if (r["sender"], r["receiver"]) == link)
        assert seqs == list(range(len(seqs)))
    # plus one final token per iteration from the last BS to the coordinator; metrics count both
    final = [r for r in rows if int(r["receiver"]) == COORDINATOR and r["event"] == "sent"]
    assert [int(r["iteration"]) for r in final] == list(range(ITERS)) and {r["sender"] for r in final} == {"2"}
    assert [m["msgs_POWER_VECTOR"] for m in ms] == [B * B] * ITERS
    assert counts_bytes(summarize_csv(tmp_path / "messages.csv")) == counts_bytes(tr.log.summary())


@pytest.mark.ray
@pytest.mark.parametrize("scheme", ["partial", "centralized", "full"])
def test_inproc_and_ray_logs_are_identical(ray_session, scheme):
    torch.set_num_threads(1)
    logs, metrics = {}, {}
    for backend in ("inproc", "ray"):
        tr, ms, _ = run(scheme, backend, iters=2)
        logs[backend] = counts_bytes(tr.log.summary())
        metrics[backend] = [{k: v for k, v in m.items() if k.startswith(("msgs_", "bytes_"))} for m in ms]
    assert logs["inproc"] == logs["ray"]
    assert metrics["inproc"] == metrics["ray"]
    expected = {"centralized": {"CSI_UPLOAD", "POWER_ASSIGNMENT"}, "partial": {"POWER_VECTOR"}, "full": set()}
    trpo = {"GRADIENT", "FVP_REQUEST", "FVP", "PARAMETERS", "METRICS"}
    assert set(logs["inproc"]) == trpo | expected[scheme]


def test_iteration_metrics_equal_the_log():
    """msgs_/bytes_ per iteration are the log's own per-iteration sums of what was sent."""
    tr, ms, _ = run("centralized", "inproc")
    per_it = tr.log.summary()["per_iteration"]
    for it, m in enumerate(ms):
        from_log = {}
        for kind, ev in per_it[str(it)].items():
            from_log[f"msgs_{kind}"] = ev["sent"]["count"]
            from_log[f"bytes_{kind}"] = ev["sent"]["bytes"]
        assert {k: v for k, v in m.items() if k.startswith(("msgs_", "bytes_"))} == from_log
    # one gradient share per agent, one critic share per epoch, one FVP per CG product
    assert ms[0]["msgs_GRADIENT"] == 1 + tr.cfg.trpo.value_epochs
    assert ms[0]["msgs_FVP"] == ms[0]["msgs_FVP_REQUEST"] >= 1
    # a policy share is n_theta float32 values, a critic share n_phi (plus "loss"), each with a small header
    n_theta, n_phi = tr.theta.numel(), tr.phi.numel()
    payload = 4 * (n_theta + tr.cfg.trpo.value_epochs * n_phi)
    assert payload < ms[0]["bytes_GRADIENT"] < payload + 100 * ms[0]["msgs_GRADIENT"]
