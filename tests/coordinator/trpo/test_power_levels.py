"""policy.power_levels=on_off: a BS transmits Pmax where its fraction is at least 0.5 and nothing elsewhere, in
training's reward, in the evaluation and in the execution phase alike; 'continuous' (paper 1) is unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bs_agent.trpo.base_station import BaseStation
from coordinator.execute.config import ExecuteConfig, check_execute
from coordinator.execute.report import report
from coordinator.execute.runner import ExecutionRunner, Source
from coordinator.trpo.backend import make_backend
from coordinator.trpo.config import TrainConfig, agent_spec, scenario_of
from coordinator.trpo.evaluate import evaluate_policy
from coordinator.trpo.trainer import Trainer, powers_w
from deploy.config import load_config
from radio.problem import Problem
from radio.rates import sum_rate

SMALL = ["policy.hidden=16", "policy.layers=2", "trpo.episodes=48", "trpo.cg_iters=4", "trpo.value_epochs=2",
         "run.backend=inproc", "policy.init_log_std=-0.5"]


def _problem(n: int = 1, sum_w: float | None = None) -> Problem:
    return Problem(np.ones((n, 4, 4)), 1.0, np.full(4, 2.0), 1.0, 2, 2, sum_w)


def test_on_off_by_hand():
    frac = np.array([[0.49, 0.5, 1.7, -0.3]])
    np.testing.assert_array_equal(powers_w(frac, _problem(), "on_off"), [[0.0, 2.0, 2.0, 0.0]])
    np.testing.assert_array_equal(powers_w(frac, _problem()), [[0.98, 1.0, 2.0, 0.0]])      # paper 1: clipped
    # a per-BS sum limit of 3 W scales BS 0's (0, 2) and BS 1's (2, 0) only where they exceed it: they do not
    np.testing.assert_array_equal(powers_w(frac, _problem(sum_w=3.0), "on_off"), [[0.0, 2.0, 2.0, 0.0]])
    both_on = np.array([[0.9, 0.8, 0.1, 0.0]])
    np.testing.assert_allclose(powers_w(both_on, _problem(sum_w=3.0), "on_off"), [[1.5, 1.5, 0.0, 0.0]])


def _policy(cfg: TrainConfig) -> torch.Tensor:
    theta = BaseStation(0, agent_spec(cfg), 1).get_policy_params()
    return theta + 0.3 * torch.randn(theta.numel(), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("scheme", ["partial", "full", "centralized"])
def test_evaluation_transmits_pmax_where_the_continuous_fraction_is_at_least_half(scheme):
    cont = load_config(TrainConfig, None, SMALL + [f"run.scheme={scheme}"])
    on_off = dataclasses.replace(cont, policy=dataclasses.replace(cont.policy, power_levels="on_off"))
    theta = _policy(cont)
    problem = scenario_of(cont).sample(64, np.random.default_rng(3))
    p_cont = evaluate_policy(cont, theta, problem)
    p_bin = evaluate_policy(on_off, theta, problem)
    pmax = problem.p_max_w
    np.testing.assert_array_equal(p_bin, np.where(p_cont >= 0.5 * pmax, pmax, 0.0))
    assert 0 < np.count_nonzero(p_bin) < p_bin.size


def test_training_reward_is_the_on_off_sum_rate(monkeypatch):
    """The reward of an on_off run is radio's sum-rate of Pmax where the sampled fraction is >= 0.5, else 0 (the
    fractions and channels caught on their way into the trainer's powers_w)."""
    import coordinator.trpo.trainer as trainer_mod

    seen = []
    real = trainer_mod.powers_w
    monkeypatch.setattr(trainer_mod, "powers_w",
                        lambda f, pr, lv="continuous": seen.append((f, pr, lv)) or real(f, pr, lv))
    cfg = load_config(TrainConfig, None, SMALL + ["run.scheme=full", "policy.power_levels=on_off"])
    tr = Trainer(cfg, make_backend(cfg))
    R = tr._sample(0)[0]
    tr.backend.close()
    (frac, problem, levels), = seen
    assert levels == "on_off" and 0 < np.mean(frac >= 0.5) < 1
    want = sum_rate(problem.G, np.where(frac >= 0.5, problem.p_max_w, 0.0), problem.noise_w)
    np.testing.assert_allclose(R, want, rtol=1e-12)


@pytest.mark.ray
def test_execution_applies_the_runs_levels(ray_session):
    """The execution phase on the logical clock: the powers applied are the on_off evaluation's, and the
    sum-rate is that of the binarised powers."""
    cfg_t = load_config(TrainConfig, None, SMALL + ["run.scheme=partial", "policy.power_levels=on_off"])
    src = Source(scenario_of(cfg_t), "partial", spec=agent_spec(cfg_t), theta=_policy(cfg_t).numpy(),
                 power_levels="on_off")
    cfg = load_config(ExecuteConfig, None, ["run.slots=20", "run.clock=logical", "run.warmup_slots=0"])
    check_execute(cfg)
    runner = ExecutionRunner(cfg, src, 3)
    summary, per_slot, _ = report(cfg, src, runner.problem, runner.order, runner.run())
    pmax = runner.problem.p_max_w
    assert set(np.unique(per_slot["p_w"])) <= {0.0, float(pmax[0])}
    np.testing.assert_array_equal(per_slot["p_w"], per_slot["p_ideal_w"])
    assert summary["sum_rate_mbps"] == pytest.approx(summary["sum_rate_mbps_ideal"])
    assert summary["power_levels"] == "on_off"
