"""Coordinator (inproc): determinism, all schemes run, message accounting, evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coordinator.trpo.backend import make_backend
from coordinator.trpo.config import TrainConfig
from coordinator.trpo.evaluate import evaluate_policy
from coordinator.trpo.trainer import Trainer, random_positions
from deploy.config import load_config

SMALL = ["policy.hidden=16", "policy.layers=2", "trpo.episodes=64", "trpo.cg_iters=5", "trpo.value_epochs=2",
         "run.backend=inproc"]


def train(overrides, n=2):
    cfg = load_config(TrainConfig, None, SMALL + overrides)
    tr = Trainer(cfg, make_backend(cfg))
    ms = [tr.step() for _ in range(n)]
    return tr, ms


@pytest.mark.parametrize("scheme,algo", [("centralized", "trpo"), ("partial", "trpo"), ("full", "trpo"),
                                         ("centralized", "a2c")])
def test_schemes_run_and_log(scheme, algo):
    tr, ms = train([f"run.scheme={scheme}", f"run.algo={algo}"])
    m = ms[-1]
    assert np.isfinite(m["reward"]) and m["env_steps"] == 64 * (1 if scheme == "centralized" else 3)
    if algo == "trpo":
        assert m["kl"] <= 0.01 + 1e-12
    if scheme == "partial":
        assert m["msgs_POWER_VECTOR"] == 3 * 3 and m["bytes_POWER_VECTOR"] > 64 * 6 * 4
    if scheme == "centralized":
        assert m["msgs_CSI_UPLOAD"] == 3 and m["bytes_CSI_UPLOAD"] > 3 * 64 * 6 * 4
    if scheme == "full":
        assert "msgs_POWER_VECTOR" not in m


def test_same_seed_same_parameters_different_seed_different():
    a, _ = train(["run.scheme=partial", "run.seed=3"])
    b, _ = train(["run.scheme=partial", "run.seed=3"])
    c, _ = train(["run.scheme=partial", "run.seed=4"])
    assert torch.equal(a.theta, b.theta) and torch.equal(a.phi, b.phi)
    assert not torch.equal(a.theta, c.theta)


def test_critic_minibatches_change_only_the_critic_and_cycle():
    """Iteration 0's policy step uses V at the initial phi, so minibatches leave its theta as it is and
    change phi; each agent takes one round per minibatch, counted from zero every iteration."""
    full, _ = train(["run.scheme=partial", "trpo.value_epochs=3"], n=1)
    mini, ms = train(["run.scheme=partial", "trpo.value_epochs=3", "trpo.value_batches=3"], n=1)
    assert torch.equal(full.theta, mini.theta) and not torch.equal(full.phi, mini.phi)
    assert [a.critic_round for a in mini.backend.agents] == [3, 3, 3] and np.isfinite(ms[0]["value_loss"])
    again, _ = train(["run.scheme=partial", "trpo.value_epochs=3", "trpo.value_batches=3"], n=1)
    assert torch.equal(again.phi, mini.phi)
    mini.step()
    assert [a.critic_round for a in mini.backend.agents] == [3, 3, 3]


def test_resume_from_state_dict_is_exact():
    a, _ = train(["run.scheme=partial"], n=3)
    cfg = load_config(TrainConfig, None, SMALL + ["run.scheme=partial"])
    b = Trainer(cfg, make_backend(cfg))
    b.step()
    st = b.state_dict()
    c = Trainer(cfg, make_backend(cfg))
    c.load_state_dict(st)
    c.step()
    c.step()
    assert torch.equal(a.theta, c.theta)


def test_random_positions_are_permutations():
    pos = random_positions(np.random.default_rng(0), 50, 4)
    assert (np.sort(pos, axis=1) == np.arange(4)).all()


def test_evaluate_policy_respects_power_limits():
    tr, _ = train(["run.scheme=partial", "scenario.bs_sum_power_dbm=43"])
    from coordinator.trpo.config import scenario_of

    pr = scenario_of(tr.cfg).sample(20, np.random.default_rng(0))
    p = evaluate_policy(tr.cfg, tr.theta, pr)
    assert p.shape == (20, 6) and (p >= 0).all() and (p <= pr.p_max_w + 1e-12).all()
    assert (p.reshape(20, 3, 2).sum(-1) <= pr.bs_sum_power_w * (1 + 1e-9)).all()
