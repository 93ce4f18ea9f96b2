"""policy.init=cell_optimum: the teacher's states are what each BS sees (its CSI; in the round-robin the teacher's
powers of the BSs before it, the flags), the fit moves the policy's mean onto the own-cell optimum, and the trainer
fits before its first iteration only, broadcasting the result as a logged PARAMETERS message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bs_agent.trpo.base_station import AgentSpec
from bs_agent.trpo.nets import init_networks
from bs_agent.trpo.state import GainNorm
from coordinator.trpo import imitate as im
from coordinator.trpo.backend import make_backend
from coordinator.trpo.config import TrainConfig, scenario_of
from coordinator.trpo.evaluate import evaluate_policy
from coordinator.trpo.trainer import Trainer, random_positions
from deploy.config import load_config
from radio.channels import Scenario, user_bs_gains_of
from radio.optimum import cell_optimum
from radio.rates import sum_rate

SMALL = ["policy.hidden=32", "policy.layers=2", "trpo.episodes=32", "trpo.cg_iters=4", "trpo.value_epochs=2",
         "run.backend=inproc", "policy.init=cell_optimum", "policy.init_log_std=-1.0"]


def _theta(spec: AgentSpec, seed: int = 0) -> np.ndarray:
    pol, _ = init_networks(spec.obs_dim, spec.act_dim, spec.hidden, spec.layers, -1.0, seed)
    return torch.nn.utils.parameters_to_vector(pol.parameters()).detach().numpy()


def test_round_robin_teacher_states_carry_the_teachers_powers_of_the_bss_before():
    sc = Scenario.preset("3cell")
    spec = AgentSpec("partial", 3, 2, hidden=8, layers=1)
    norm = GainNorm.of_scenario(sc)
    problem = sc.sample(5, np.random.default_rng(0))
    frac = np.random.default_rng(1).random((5, 6))
    position = random_positions(np.random.default_rng(2), 5, 3)
    S, T = im.teacher_states(spec, norm, problem, frac, position)
    assert S.shape == (15, spec.obs_dim) and T.shape == (15, 2)
    gn = norm(user_bs_gains_of(problem))
    for b in range(3):
        rel = [(b + j) % 3 for j in range(3)]                  # BS b's relative order: itself, then the next ones
        for m in range(5):
            s, t = S[b * 5 + m], T[b * 5 + m]
            np.testing.assert_allclose(s[:6], gn[m, :, b].reshape(3, 2)[rel].ravel(), rtol=1e-6)
            flags = [float(position[m, c] < position[m, b]) for c in rel]
            powers = [frac[m, 2 * c + k] * f for c, f in zip(rel, flags, strict=True) for k in range(2)]
            np.testing.assert_allclose(s[6:12], powers, rtol=1e-6)
            np.testing.assert_array_equal(s[12:], flags)
            np.testing.assert_allclose(t, frac[m, 2 * b:2 * b + 2], rtol=1e-6)


def test_fit_moves_the_mean_onto_the_teacher_and_holds_the_log_std():
    sc = Scenario.preset("3cell")
    spec = AgentSpec("full", 3, 2, hidden=32, layers=2)
    problem = sc.sample(600, np.random.default_rng(3))
    frac = cell_optimum(problem) / problem.p_max_w
    S, T = im.teacher_states(spec, GainNorm.of_scenario(sc), problem, frac, None)
    theta0 = _theta(spec)
    theta, mse = im.fit_policy(spec, theta0, S, T, -1.0, seed=4)
    again, _ = im.fit_policy(spec, theta0, S, T, -1.0, seed=4)
    np.testing.assert_array_equal(theta, again)                       # one seed, one result
    before = float(((0.5 - T) ** 2).mean())                          # the initial policy's mean is ~0.5 everywhere
    assert mse < 0.25 * before
    from bs_agent.trpo.nets import PolicyNet
    net = PolicyNet(spec.obs_dim, spec.act_dim, spec.hidden, spec.layers)
    torch.nn.utils.vector_to_parameters(torch.as_tensor(theta), net.parameters())
    with torch.no_grad():
        log_std = net(torch.from_numpy(S))[1]
    assert abs(float(log_std.mean()) + 1.0) < 0.05


def test_the_trainer_fits_before_its_first_iteration_only_and_logs_the_broadcast():
    """3 cells, round-robin: the fitted policy's evaluation reaches most of the teacher's sum-rate where the random
    one does not; the fit runs at iteration 0 only, and its broadcast is one PARAMETERS message per BS."""
    cfg = load_config(TrainConfig, None, SMALL + ["run.scheme=partial"])
    tr = Trainer(cfg, make_backend(cfg))
    held = scenario_of(cfg).sample(300, np.random.default_rng(9))
    teacher = sum_rate(held.G, cell_optimum(held), held.noise_w).mean()
    random_rate = sum_rate(held.G, evaluate_policy(cfg, tr.theta, held), held.noise_w).mean()
    tr.step()
    assert tr.imitation is not None and tr.imitation["fit_mse"] < 0.1
    fitted = tr.theta.clone()
    tr.imitation = None
    tr.step()                                                          # iteration 1: no second fit
    assert tr.imitation is None and not torch.equal(tr.theta, fitted)
    # the fitted policy (before any TRPO step) against the teacher; the fit's broadcast is one message per BS
    tr2 = Trainer(cfg, make_backend(cfg))
    tr2.log.take_iteration()
    tr2._imitate()
    sent = {k: v for k, v in tr2.log.take_iteration().items() if k.startswith("msgs_") and v}
    assert sent == {"msgs_PARAMETERS": 3}
    fit_rate = sum_rate(held.G, evaluate_policy(cfg, tr2.theta, held), held.noise_w).mean()
    assert fit_rate > 0.95 * teacher > random_rate


@pytest.mark.parametrize("sets,what", [(["run.scheme=centralized"], "decentralized"),
                                       (["run.scheme=partial", "trpo.rr_message=interference"], "rr_message"),
                                       (["run.scheme=full", "scenario.users_per_cell=9"], "8 users")])
def test_refused_where_it_does_not_apply(sets, what):
    from coordinator.config import ConfigError
    from coordinator.trpo.config import check_feasible

    cfg = load_config(TrainConfig, None, SMALL + sets)
    with pytest.raises(ConfigError, match="policy.init=cell_optimum") as err:
        check_feasible(cfg)
    assert what in str(err.value)


@pytest.mark.ray
def test_inproc_and_ray_start_from_the_same_fit(ray_session):
    """The fit is the coordinator's: both backends broadcast the same parameters and take the same first step."""
    out = {}
    for backend in ("inproc", "ray"):
        cfg = load_config(TrainConfig, None, SMALL + ["run.scheme=partial", f"run.backend={backend}"])
        be = make_backend(cfg)
        try:
            tr = Trainer(cfg, be)
            m = tr.step()
            out[backend] = (tr.theta.clone(), m["reward"])
        finally:
            be.close()
    assert torch.equal(out["inproc"][0], out["ray"][0]) and out["inproc"][1] == out["ray"][1]
