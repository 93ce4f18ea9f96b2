"""Algorithm 1 on the wall clock (run.clock=real) over real Ray actors and ZeroMQ sockets.

Not deterministic, so the tests check what must hold whatever the timing: it learns, the message
log adds up, the injected delays are the configured ones, late messages are counted."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from coordinator.config import ConfigError
from coordinator.zo import config as zc
from coordinator.zo.config import ZOConfig
from coordinator.zo.links import Exchange
from coordinator.zo.train import Evaluator, make_trainer, train
from protocol.log import MessageLog

DELAY_S, JITTER_S, DROP = 0.0005, 0.002, 0.05


def _cfg(**algo) -> ZOConfig:
    return ZOConfig().replace(
        algo={"update": "async", "b1": 25, "b2": 25, "delay_kind": "uniform", "delay": DELAY_S, "jitter": JITTER_S,
              "drop_prob": DROP, **algo},
        run={"clock": "real", "backend": "ray", "slot_s": 5e-4, "guard_slots": 60, "iterations": 80, "eval_every": 80,
             "eval_sequences": 16, "eval_slots": 20})


@pytest.mark.ray
@pytest.mark.parametrize("per_actor", [1, 2])
def test_real_clock_learns_and_its_log_adds_up(ray_session, tmp_path, per_actor):
    from coordinator.zo.ray_links import RayLinks

    cfg = _cfg()
    log, ex = MessageLog(tmp_path / "messages.csv"), Exchange()
    links = RayLinks(cfg, log, ex, links_per_actor=per_actor)
    try:
        tr = make_trainer(cfg, log, ex, links)
        ev = Evaluator(cfg)
        initial = ev(tr.thetas())
        row = train(cfg, tr, ev, cfg.run.iterations)
        diag = tr.diagnostics()
    finally:
        links.close()
    log.close()
    # learns: clearly above the initial policies (logical time gains ~30 % with this budget)
    assert row["sum_rate"] > 1.1 * initial, (row["sum_rate"], initial)
    # every d sent was received or dropped, and the exchange counts what the links really sent
    nb = zc.neighbours(cfg)
    sent_expected = sum(tr.k[i] * len(nb[i]) for i in range(cfg.scenario.n_links))
    rows = [r for r in csv.DictReader((tmp_path / "messages.csv").open()) if r["kind"] == "SCALAR_D"]
    by_event = {e: [r for r in rows if r["event"] == e] for e in ("sent", "received", "dropped")}
    n_sent, n_recv, n_drop = (len(by_event[e]) for e in ("sent", "received", "dropped"))
    assert tr.unreceived == 0
    assert n_sent == ex.messages == sent_expected and n_sent == n_recv + n_drop
    assert n_drop == ex.dropped and 0.02 < n_drop / n_sent < 0.09        # drop_prob 0.05, n = 1600: sd 0.005
    # injected delays are the configured law (uniform [delay, delay + jitter] s, FIFO keeps it inside)
    d_ns = np.array([int(r["delay_ns"]) for r in by_event["received"]])
    assert d_ns.min() >= DELAY_S * 1e9 - 1 and d_ns.max() <= (DELAY_S + JITTER_S) * 1e9 + 1
    assert d_ns.std() > 0.1 * JITTER_S * 1e9
    lat = np.array([int(r["t_recv_ns"]) - int(r["t_send_ns"]) for r in by_event["received"]])
    assert np.all(lat >= d_ns)                                             # held at least the injected delay
    # wall-clock asynchrony really happened and was counted, not ignored
    assert diag["late_d"] > 0 and diag["update_slots"] > 0
    assert all(np.isfinite(v) for v in diag.values())


def test_real_clock_config_is_validated():
    with pytest.raises(ConfigError, match="run.backend=ray"):
        zc.validate(_cfg().replace(run={"backend": "inproc"}))
    with pytest.raises(ConfigError, match="algo.update=async or graph"):
        zc.validate(_cfg(update="sync"))
    with pytest.raises(ConfigError, match="backend=ray"):
        make_trainer(_cfg().replace(run={"backend": "inproc"}), MessageLog(None), Exchange())
    zc.validate(_cfg(update="graph", graph="random"))
    zc.validate(_cfg(asynchrony=25.0, delay=0.3))                          # no slot bound on the real clock


