"""A run whose numbers become NaN / inf stops at that iteration with :class:`Diverged` naming the quantity, and
the A2C rule's gradient clipping (``trpo.a2c_max_grad_norm``): hand-computed, and off = the rule as it was."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from coordinator.trpo.backend import make_backend
from coordinator.trpo.config import TrainConfig
from coordinator.trpo.trainer import Diverged, Trainer, check_finite
from coordinator.trpo.update import A2CUpdate, clip_grad_norm
from deploy.config import ConfigError, load_config

SMALL = ["policy.hidden=16", "policy.layers=2", "trpo.episodes=64", "trpo.cg_iters=5", "trpo.value_epochs=2",
         "run.backend=inproc", "run.scheme=centralized"]
# A2C at an absurd step: the KL between consecutive policies overflows within a few iterations
FAST_DIVERGING = ["run.algo=a2c", "trpo.a2c_lr=0.03"]


def trainer(overrides: list[str]) -> Trainer:
    cfg = load_config(TrainConfig, None, SMALL + overrides)
    return Trainer(cfg, make_backend(cfg))


def run_until_diverged(tr: Trainer, n: int = 50) -> tuple[list[dict[str, Any]], Diverged]:
    rows = []
    with pytest.raises(Diverged) as exc:
        for _ in range(n):
            rows.append(tr.step())
    return rows, exc.value


# ---------------------------------------------------------------------------------------------- Diverged
def test_check_finite_names_the_quantity_and_counts_entries():
    check_finite(3, "x", 1.0)
    check_finite(3, "x", torch.tensor([1.0, -2.0]))
    with pytest.raises(Diverged, match=r"^diverged at iteration 7: the KL between consecutive policies is inf$"):
        check_finite(7, "the KL between consecutive policies", math.inf)
    with pytest.raises(Diverged) as exc:
        check_finite(2, "the policy parameters theta", torch.tensor([1.0, math.nan, math.inf, 0.0]))
    assert (exc.value.iteration, exc.value.quantity) == (2, "the policy parameters theta")
    assert str(exc.value) == ("diverged at iteration 2: the policy parameters theta has 2 of 4 entries NaN or inf "
                              "(1 NaN)")


def test_a2c_at_an_absurd_step_stops_at_the_first_non_finite_kl():
    tr = trainer(FAST_DIVERGING)
    rows, exc = run_until_diverged(tr)
    assert exc.iteration == len(rows) > 0           # every iteration before it returned finite metrics
    assert exc.quantity == "the KL between consecutive policies" and exc.detail in ("is inf", "is nan")
    for m in rows:
        assert all(math.isfinite(v) for v in m.values() if isinstance(v, float))


def test_a_poisoned_policy_stops_at_the_reward_and_a_poisoned_critic_at_the_gradient():
    """NaN parameters of the policy give NaN powers (iteration 0's reward); of the critic, NaN advantages
    and so a NaN policy gradient (eq. 18), found before any step is taken or broadcast."""
    tr = trainer([])
    theta = tr.theta.clone()
    theta[0] = math.nan
    tr.load_state_dict({**tr.state_dict(), "theta": theta})
    _, exc = run_until_diverged(tr)
    assert (exc.iteration, exc.quantity) == (0, "the mean sum-rate of the batch (the reward R)")
    tr = trainer(["run.scheme=partial"])
    phi = tr.phi.detach().clone()
    phi[:] = math.nan
    tr.load_state_dict({**tr.state_dict(), "phi": phi})
    _, exc = run_until_diverged(tr)
    assert (exc.iteration, exc.quantity) == (0, "the policy gradient g (eq. 18)")
    assert "NaN" in exc.detail


def test_the_checks_do_not_stop_a_finite_run_without_critic_rounds():
    """value_epochs = 0: no critic round, the value loss is NaN by convention, not a divergence."""
    tr = trainer(["trpo.value_epochs=0"])
    m = tr.step()
    assert math.isnan(m["value_loss"]) and tr.iteration == 1


# ---------------------------------------------------------------------------------------------- clipping
def test_clip_grad_norm_hand_computed():
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)       # ||g|| = 5
    c, norm = clip_grad_norm(g, 1.0)
    assert norm == 5.0 and torch.allclose(c, torch.tensor([0.6, 0.8], dtype=torch.float64), rtol=1e-15, atol=0)
    assert float(torch.linalg.vector_norm(c)) == pytest.approx(1.0, abs=1e-15)
    for max_norm in (5.0, 10.0, 0.0):                       # at or under the bound, and 0 = off: g itself
        c, norm = clip_grad_norm(g, max_norm)
        assert c is g and norm == 5.0
    g = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    c, norm = clip_grad_norm(g, 0.5)
    assert float(torch.linalg.vector_norm(c)) == pytest.approx(0.5, rel=1e-14)
    assert torch.allclose(c * (norm / 0.5), g, rtol=1e-14, atol=0)       # same direction


def test_a2c_step_clips_g_before_rmsprop_hand_computed():
    """First RMSprop step from theta = 0 on the clipped gc = g * m / ||g||: the running average of g^2 is
    (1 - 0.99) gc^2, so theta' = lr gc / (sqrt(0.01 gc^2) + 1e-5) = lr gc / (0.1 |gc| + 1e-5)."""
    lr, m = 0.1, 1.0
    g = torch.tensor([3.0, -4.0], dtype=torch.float64)
    gc = torch.tensor([0.6, -0.8], dtype=torch.float64)
    for max_norm, expect_g in ((m, gc), (10.0, g), (0.0, g)):
        rule = A2CUpdate(torch.zeros(2, dtype=torch.float64), lr, max_norm)
        theta, metrics = rule.step(torch.zeros(2, dtype=torch.float64), g, lambda v: v, lambda th: (0.0, 0.0))
        expect = lr * expect_g / (0.1 * expect_g.abs() + 1e-5)
        assert torch.allclose(theta, expect, rtol=1e-12, atol=0), (max_norm, theta, expect)
        assert metrics["grad_norm"] == 5.0
        sq = rule.opt.state[rule.pol]["square_avg"]
        assert torch.allclose(sq, 0.01 * expect_g ** 2, rtol=1e-12, atol=0)


class CommittedA2C:
    """The A2C rule as it was before trpo.a2c_max_grad_norm (commit 2c2d859), for the bit-identity check."""

    checkpoint_key = "a2c_opt"

    def __init__(self, theta: torch.Tensor, lr: float) -> None:
        self.pol = torch.nn.Parameter(theta.clone())
        self.opt = torch.optim.RMSprop([self.pol], lr=lr, alpha=0.99, eps=1e-5)

    def step(self, theta, g, fvp, surrogate_kl):
        with torch.no_grad():
            self.pol.copy_(theta)
        self.opt.zero_grad()
        self.pol.grad = -g.to(self.pol.dtype)
        self.opt.step()
        new_theta = self.pol.detach().clone()
        surr, kl = surrogate_kl(new_theta)
        return new_theta, {"kl": kl, "surrogate": surr, "backtracks": 0, "ls_success": 1, "cg_residual": 0.0,
                           "cg_iters": 0}

    def state_dict(self):
        return self.opt.state_dict()

    def moments(self):
        return []


def test_a2c_without_clipping_is_the_committed_rule_bit_for_bit():
    new = trainer(["run.algo=a2c"])
    old = trainer(["run.algo=a2c"])
    assert new.cfg.trpo.a2c_max_grad_norm == 0.0
    old.rule = CommittedA2C(old.theta, old.cfg.trpo.a2c_lr)
    for _ in range(4):
        mn, mo = new.step(), old.step()
        assert torch.equal(new.theta, old.theta) and torch.equal(new.phi, old.phi)
        assert (mn["kl"], mn["surrogate"], mn["reward"]) == (mo["kl"], mo["surrogate"], mo["reward"])
    assert torch.equal(new.rule.state_dict()["state"][0]["square_avg"], old.rule.state_dict()["state"][0]["square_avg"])
    clipped = trainer(["run.algo=a2c", "trpo.a2c_max_grad_norm=0.5"])
    for _ in range(2):
        m = clipped.step()
    assert m["grad_norm"] > 0.5 and not torch.equal(clipped.theta, new.theta)    # clipping on: another step


def test_a2c_max_grad_norm_is_validated():
    for bad in ("-1", "nan", "inf", "2e6"):
        with pytest.raises(ConfigError, match="trpo.a2c_max_grad_norm"):
            load_config(TrainConfig, None, [f"trpo.a2c_max_grad_norm={bad}"])
    assert load_config(TrainConfig, None, ["trpo.a2c_max_grad_norm=0.5"]).trpo.a2c_max_grad_norm == 0.5
    assert np.isclose(load_config(TrainConfig, None, []).trpo.a2c_max_grad_norm, 0.0)
