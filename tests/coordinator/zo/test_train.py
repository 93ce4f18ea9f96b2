"""Drivers of paper 2: determinism, resume, message accounting, baselines, the CLI, and learning."""

from __future__ import annotations

import numpy as np
import pytest

from coordinator.config import ConfigError
from coordinator.zo import config as zc
from coordinator.zo.config import ZOConfig
from coordinator.zo.graphs import messages_per_iteration
from coordinator.zo.links import Exchange
from coordinator.zo.train import Evaluator, make_trainer, train
from protocol.log import MessageLog
from tests import ROOT


def small(**sections) -> ZOConfig:
    base = ZOConfig().replace(algo={"b1": 10, "b2": 10}, run={"iterations": 6, "eval_every": 3,
                                                               "eval_sequences": 4, "eval_slots": 10})
    return base.replace(**sections) if sections else base


def run_cfg(cfg: ZOConfig, iterations: int | None = None):
    log, ex = MessageLog(None), Exchange()
    tr = make_trainer(cfg, log, ex)
    rows = []
    train(cfg, tr, Evaluator(cfg), iterations or cfg.run.iterations, rows.append)
    return tr, rows, log


def test_same_seed_same_trajectory_different_seed_different():
    a, _, _ = run_cfg(small())
    b, _, _ = run_cfg(small())
    c, _, _ = run_cfg(small(run={"seed": 1, "iterations": 6, "eval_every": 3, "eval_sequences": 4,
                                 "eval_slots": 10}))
    for x, y in zip(a.thetas(), b.thetas(), strict=True):
        assert np.array_equal(x, y)
    assert not np.allclose(a.thetas()[0], c.thetas()[0])


@pytest.mark.parametrize("update,graph,asyn", [("sync", "full", 0.0), ("async", "full", 25.0),
                                               ("graph", "random", 0.0), ("graph", "full", 10.0)])
def test_message_counts_per_iteration_match_the_graph(update, graph, asyn):
    cfg = small(algo={"b1": 10, "b2": 10, "update": update, "graph": graph, "asynchrony": asyn},
                scenario={"n_links": 6})
    tr, _, log = run_cfg(cfg)
    per_it = messages_per_iteration(zc.neighbours(cfg))
    assert tr.exchange.messages == per_it * cfg.run.iterations
    sent = log.summary()["totals"]
    assert sent["sent"]["count"] == per_it * cfg.run.iterations


def test_eq8_with_zero_asynchrony_and_eq9_on_full_graph_reproduce_eq7_runs():
    ref, _, _ = run_cfg(small())
    for algo in ({"update": "async"}, {"update": "graph", "graph": "full"}):
        other, _, _ = run_cfg(small(algo={"b1": 10, "b2": 10, **algo}))
        for x, y in zip(ref.thetas(), other.thetas(), strict=True):
            assert np.array_equal(x, y)


def test_resume_from_checkpoint_state_continues_identically():
    cfg = small(algo={"b1": 10, "b2": 10, "update": "async", "asynchrony": 30.0, "delay_kind": "uniform",
                      "jitter": 3.0, "drop_prob": 0.1})
    full, _, _ = run_cfg(cfg, 8)
    part, _, _ = run_cfg(cfg, 4)
    st = part.state()
    import copy

    resumed = make_trainer(cfg, MessageLog(None), Exchange())
    resumed.load_state(copy.deepcopy(st))
    train(cfg, resumed, Evaluator(cfg), 8)
    for x, y in zip(full.thetas(), resumed.thetas(), strict=True):
        assert np.array_equal(x, y)
    assert full.exchange.dropped == resumed.exchange.dropped > 0


@pytest.mark.parametrize("method", ["adam", "fl"])
def test_first_order_baselines_run_and_log_their_traffic(method):
    cfg = small(run={"method": method, "iterations": 4, "eval_every": 2, "eval_sequences": 4, "eval_slots": 10},
                baseline={"fl_interval": 2})
    tr, rows, log = run_cfg(cfg)
    N, n = cfg.scenario.n_links, zc.specs(cfg)[0].n_params
    kinds = log.summary()["per_kind"]
    if method == "adam":
        assert tr.exchange.scalars == 4 * N * (20 * N + n)
        assert "CSI_UPLOAD" in kinds and "PARAMETERS" in kinds
    else:
        assert tr.exchange.scalars == 2 * 2 * N * n
        th = tr.thetas()
        assert all(np.array_equal(th[0], t) for t in th)       # consensus after an averaging round
    assert np.isfinite(rows[-1]["sum_rate"])


def test_bad_config_combinations_raise_typed_errors():
    with pytest.raises(ConfigError, match="algo.asynchrony"):
        zc.validate(small(algo={"update": "sync", "asynchrony": 10.0}))
    with pytest.raises(ConfigError, match="per_link_hidden"):
        zc.validate(small(policy={"per_link_hidden": "3;4"}))
    with pytest.raises(ConfigError, match="fl"):
        zc.validate(small(run={"method": "fl"}, policy={"per_link_hidden": "3;4;3;3;3"}))


def test_per_link_architectures_train():
    cfg = small(policy={"per_link_hidden": "4;6,3;4;2;5"})
    tr, rows, _ = run_cfg(cfg)
    assert [t.size for t in tr.thetas()] == [sp.n_params for sp in zc.specs(cfg)]
    assert np.isfinite(rows[-1]["sum_rate"])






@pytest.mark.slow
def test_learning_n5_sync_beats_max_power_clearly():
    cfg = ZOConfig().replace(run={"iterations": 1500, "eval_every": 500})
    tr, rows, _ = run_cfg(cfg)
    assert rows[-1]["sum_rate"] > 1.6 * rows[-1]["max_power"]


@pytest.mark.parametrize("path", sorted((ROOT / "deploy" / "configs").glob("zo_*.yaml")), ids=lambda p: p.name)
def test_shipped_zo_configs_load_and_validate(path):
    from deploy.config import load_config

    zc.validate(load_config(ZOConfig, path))


def test_direct_gain_threshold_reference_by_hand():
    from coordinator.zo.air import best_direct_threshold, threshold_sum_rate

    # 2 links, sigma^2 = 1, p_max = 1. Slot 0: G_11 = 3, G_22 = 1, cross gains 1.
    G = np.array([[[3.0, 1.0], [1.0, 1.0]]])
    # tau = 2: only link 1 on -> log2(1 + 3) = 2
    assert np.isclose(threshold_sum_rate(G, 1.0, 1.0, 2.0), 2.0)
    # tau = 0.5: both on -> log2(1 + 3/2) + log2(1 + 1/2)
    assert np.isclose(threshold_sum_rate(G, 1.0, 1.0, 0.5), np.log2(2.5) + np.log2(1.5))
    # tau = 5: nobody on
    assert threshold_sum_rate(G, 1.0, 1.0, 5.0) == 0.0
    assert best_direct_threshold(G, 1.0, 1.0, np.array([0.5, 2.0, 5.0])) == 2.0
    # the layer scale must match the layers of every link's policy
    with pytest.raises(ConfigError):
        zc.validate(ZOConfig().replace(algo={"layer_scale": (1.0, 2.0, 3.0)}))


def test_adam_learning_rate_decay_is_geometric_and_off_by_default():
    from coordinator.zo.first_order import adam_lr

    cfg = ZOConfig().replace(baseline={"adam_lr": 0.02, "adam_lr_end": 0.0005}, run={"iterations": 100})
    assert adam_lr(cfg, 0) == pytest.approx(0.02)
    assert adam_lr(cfg, 50) == pytest.approx(0.02 * (0.0005 / 0.02) ** 0.5)     # = 0.02 / sqrt(40)
    assert adam_lr(cfg, 100) == pytest.approx(0.0005)
    assert adam_lr(ZOConfig(), 7) == ZOConfig().baseline.adam_lr
    small = cfg.replace(run={"iterations": 4, "eval_every": 4, "eval_sequences": 2, "eval_slots": 2, "method": "adam"},
                        scenario={"n_links": 3})
    tr = make_trainer(small, MessageLog(None), Exchange())
    for k in range(4):
        tr.run_iteration()
        assert tr.opt.param_groups[0]["lr"] == pytest.approx(adam_lr(small, k))


def test_policy_caused_option_is_validated_and_defaults_to_each():
    from deploy.config import ConfigError, load_config

    assert ZOConfig().policy.caused == "each" and zc.specs(ZOConfig())[0].caused == "each"
    with pytest.raises(ConfigError, match="policy.caused"):
        load_config(ZOConfig, None, ["policy.caused=max"])
    cfg = small(policy={"caused": "sum", "inputs": "memoryless", "features": ("direct", "caused"),
                        "input_norm": True, "hidden": ()})
    for method in ("proposed", "adam"):
        tr, rows, _ = run_cfg(cfg.replace(run={"method": method}))
        assert np.isfinite(rows[-1]["sum_rate"]) and rows[-1]["sum_rate"] > 0


def test_scenario_channel_option_reaches_the_air_and_is_validated():
    from deploy.config import ConfigError, load_config

    assert zc.scenario(ZOConfig()).link_channel == "real"
    assert zc.scenario(ZOConfig().replace(scenario={"channel": "complex"})).link_channel == "complex"
    with pytest.raises(ConfigError, match="scenario.channel"):
        load_config(ZOConfig, None, ["scenario.channel=rayleigh"])


def test_policy_param_bound_is_validated_off_by_default_and_reaches_the_specs():
    from deploy.config import ConfigError, load_config

    assert ZOConfig().policy.param_bound == 0.0 and zc.specs(ZOConfig())[0].param_bound == 0.0
    with pytest.raises(ConfigError, match="policy.param_bound"):
        load_config(ZOConfig, None, ["policy.param_bound=-1"])
    cfg = small(policy={"param_bound": 3.0})
    assert all(sp.param_bound == 3.0 for sp in zc.specs(cfg))
    for method in ("proposed", "adam"):
        _tr, rows, _ = run_cfg(cfg.replace(run={"method": method}))
        assert np.isfinite(rows[-1]["sum_rate"]) and rows[-1]["sum_rate"] > 0
