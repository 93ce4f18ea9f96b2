"""bs_agent.envs: the Gymnasium / PettingZoo environments over the radio core and the BS state features.

The libraries' own checkers pass; a step's reward is the sum-rate of radio (and of a hand-written loop) for
the powers the action names; the observations are the vectors training's agents see for the same channels
(the central agent's upload, the round-robin state BS by BS on the real inproc agents); seeding reproduces;
a gains file's slots are cycled through; the core imports without gymnasium and pettingzoo.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from bs_agent.envs.slots import SlotSource
from bs_agent.trpo.state import GainNorm
from radio.channels import Scenario
from radio.gainsfile import save_gains
from radio.problem import ProblemError
from radio.rates import sum_rate
from tests import ROOT

ENV_ID = "bs_agent.envs:bsemu/Centralized-v0"


@pytest.fixture
def gym():
    return pytest.importorskip("gymnasium")


@pytest.fixture
def pz():
    pytest.importorskip("gymnasium")
    return pytest.importorskip("pettingzoo")


def hand_sum_rate(G: np.ndarray, p: np.ndarray, noise_w: float) -> float:
    """sum_l log2(1 + G_ll p_l / (sum_{j != l} G_lj p_j + sigma^2)), one link at a time (paper 1, eq. (1a))."""
    total = 0.0
    for l in range(len(p)):
        interference = sum(G[l, j] * p[j] for j in range(len(p)) if j != l)
        total += np.log2(1.0 + G[l, l] * p[l] / (interference + noise_w))
    return total


def gains_file(tmp_path, n: int = 3, kind: str = "3cell", seed: int = 7):
    problem = Scenario.preset(kind).sample(n, np.random.default_rng(seed))
    path = tmp_path / "gains.npz"
    save_gains(path, problem)
    return path, problem


# ------------------------------------------------------------------------------------------ checkers
@pytest.mark.parametrize("kw", [{"scenario": "3cell"}, {"scenario": "7cell", "users_per_cell": 2},
                                {"scenario": "3cell", "bs_sum_power_dbm": 43.0}])
def test_centralized_env_passes_gymnasium_checker(gym, kw):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(ENV_ID, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # not even a warning from the checker
        check_env(env.unwrapped, skip_render_check=True)
    B, K = Scenario.preset(kw["scenario"], **{k: v for k, v in kw.items() if k != "scenario"}).cells, \
        kw.get("users_per_cell", 2)
    assert env.observation_space.shape == (K * B * B,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (B * K,) and float(env.action_space.low.min()) == 0.0
    assert float(env.action_space.high.max()) == 1.0


def test_gains_file_env_passes_gymnasium_checker(gym, tmp_path):
    from gymnasium.utils.env_checker import check_env

    path, _ = gains_file(tmp_path)
    check_env(gym.make(ENV_ID, gains=str(path)).unwrapped, skip_render_check=True)


def test_pettingzoo_envs_pass_api_and_seed_tests(pz):
    from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

    import bs_agent.envs as E

    api_test(E.round_robin_env(), num_cycles=20)
    parallel_api_test(E.parallel_env(), num_cycles=20)
    seed_test(lambda: E.round_robin_env(), num_cycles=20)
    parallel_seed_test(lambda: E.parallel_env(), num_cycles=20)


def test_pettingzoo_envs_pass_api_test_on_7_cells_and_a_gains_file(pz, tmp_path):
    from pettingzoo.test import api_test, parallel_api_test

    import bs_agent.envs as E

    api_test(E.round_robin_env("7cell", users_per_cell=1), num_cycles=5)
    path, _ = gains_file(tmp_path)
    parallel_api_test(E.parallel_env(gains=path), num_cycles=5)
    api_test(E.round_robin_env(gains=path, rr_message="interference"), num_cycles=5)


@pytest.mark.parametrize("kw", [{}, {"scenario": "7cell", "users_per_cell": 1}, {"bs_sum_power_dbm": 43.0}])
def test_interference_variant_passes_api_and_seed_tests(pz, kw):
    from pettingzoo.test import api_test, seed_test

    import bs_agent.envs as E

    env = E.round_robin_env(rr_message="interference", **kw)
    B, K = env.source.B, env.source.K
    assert all(env.observation_space(a).shape == (3 * B * K + B,) for a in env.possible_agents)
    api_test(env, num_cycles=10)
    seed_test(lambda: E.round_robin_env(rr_message="interference", **kw), num_cycles=10)


# ------------------------------------------------------------------------------------------ the reward
def test_centralized_reward_is_the_sum_rate_of_the_powers(gym):
    env = gym.make(ENV_ID)
    for seed in range(5):
        env.reset(seed=seed)
        slot = env.unwrapped.slot
        G, pmax, noise = slot.problem.G[0], slot.problem.p_max_w, slot.problem.noise_w
        frac = np.random.default_rng(100 + seed).random(6).astype(np.float32)
        _, reward, terminated, truncated, info = env.step(frac)
        p = frac.astype(np.float64) * pmax
        assert terminated and not truncated
        assert reward == pytest.approx(float(sum_rate(G[None], p[None], noise)[0]), rel=1e-12)
        assert reward == pytest.approx(hand_sum_rate(G, p, noise), rel=1e-10)
        np.testing.assert_allclose(info["p_w"], p, rtol=1e-12)
        assert info["sum_rate_mbps"] == pytest.approx(reward * 20.0)        # W = 20 MHz
    # out-of-range fractions are clipped (as the policy's actions are, eq. (9)); full power = max-power
    env.reset(seed=0)
    G = env.unwrapped.slot.problem.G
    _, reward, *_ = env.step(np.full(6, 2.0, np.float32))
    assert reward == pytest.approx(float(sum_rate(G, np.full((1, 6), Scenario().p_max_w), Scenario().noise_w)[0]))


def test_reward_respects_the_per_bs_sum_power_limit(gym):
    env = gym.make(ENV_ID, bs_sum_power_dbm=43.0)        # each BS: the sum of its 2 users' powers <= Pmax
    env.reset(seed=3)
    slot = env.unwrapped.slot
    _, reward, _, _, info = env.step(np.ones(6, np.float32))
    pmax = slot.problem.p_max_w[0]
    np.testing.assert_allclose(info["p_w"], pmax / 2)                   # full power scaled into the budget
    assert reward == pytest.approx(hand_sum_rate(slot.problem.G[0], info["p_w"], slot.problem.noise_w), rel=1e-10)


# ------------------------------------------------------------------------------------------ the observations
def test_centralized_observation_is_what_the_central_agent_sees(gym):
    from bs_agent.trpo.base_station import AgentSpec
    from bs_agent.trpo.lean import central_state
    from bs_agent.trpo.ops import agent_csi
    from coordinator.trpo.config import RunConfig, TrainConfig, scenario_of

    cfg = TrainConfig(run=RunConfig(scheme="centralized"))
    sc = scenario_of(cfg)
    env = gym.make(ENV_ID)
    assert env.unwrapped.source.scenario == sc                           # the trainer's scenario for this config
    obs, _ = env.reset(seed=11)
    ub = sc.user_bs_gains(1, np.random.default_rng(11))                 # reset(seed=s): the draw of default_rng(s)
    np.testing.assert_array_equal(env.unwrapped.slot.user_bs, ub[0])
    norm = GainNorm.of_scenario(sc)                                      # as Trainer.norm
    expected = agent_csi(AgentSpec("centralized", sc.cells, sc.K), norm(ub), 0)[0]
    assert obs.dtype == np.float32
    np.testing.assert_array_equal(obs, expected)
    np.testing.assert_array_equal(obs, central_state(norm, ub[0]))      # the execution phase's one-slot state


@pytest.mark.parametrize("rr_message", ["powers", "interference"])
def test_round_robin_observations_and_reward_are_training_s(pz, rr_message):
    """The real inproc agents of training act the slot in the env's order (deterministic policy); every BS's
    observation in the AEC env equals the state that agent fed its policy (for both round-robin messages), and
    the env's reward is the trainer's reward for the powers the agents chose."""
    torch = pytest.importorskip("torch")
    import bs_agent.envs as E
    from bs_agent.trpo.base_station import AgentSpec
    from coordinator.trpo.backend import InprocBackend
    from coordinator.trpo.trainer import powers_w

    env = E.round_robin_env("3cell", rr_message=rr_message)
    sc = env.source.scenario
    spec = AgentSpec("partial", sc.cells, sc.K, hidden=16, layers=2, rr_message=rr_message, rr_scale=env.scale)
    backend = InprocBackend(spec, [0] * sc.cells)
    theta, _ = backend.initial_params()
    backend.set_policy(theta + 0.3 * np.random.default_rng(0).standard_normal(theta.shape).astype(theta.dtype))
    norm = GainNorm.of_scenario(sc)
    for seed in range(3):
        env.reset(seed=seed)
        position = np.empty((1, sc.cells), dtype=np.int64)
        position[0, env.order] = np.arange(sc.cells)                    # step of BS b in this slot
        with torch.no_grad():
            backend.load(norm(env.slot.user_bs[None]), stochastic=False)
            frac, _ = backend.act_round_robin(position, log_hops=False)
        K, R = sc.K, None
        for agent in env.agent_iter():
            obs, reward, terminated, truncated, info = env.last()
            if terminated:
                R = reward if R is None else R
                assert reward == R and info["p_w"].shape == (sc.L,)
                env.step(None)
                continue
            b = env.agent_index[agent]
            np.testing.assert_array_equal(obs, backend.agents[b].bs.obs[0].numpy())
            env.step(frac[0, b * K:(b + 1) * K])
        expected = sum_rate(env.slot.problem.G, powers_w(frac, env.slot.problem), sc.noise_w)[0]
        assert R == pytest.approx(float(expected), rel=1e-12)


def test_parallel_observations_are_the_local_csi(pz):
    import bs_agent.envs as E
    from bs_agent.trpo.base_station import AgentSpec
    from bs_agent.trpo.ops import agent_csi

    env = E.parallel_env("7cell", users_per_cell=2)
    obs, _ = env.reset(seed=5)
    sc = env.source.scenario
    gn = GainNorm.of_scenario(sc)(sc.user_bs_gains(1, np.random.default_rng(5)))
    spec = AgentSpec("full", sc.cells, sc.K)
    for b, agent in enumerate(env.possible_agents):
        np.testing.assert_array_equal(obs[agent], agent_csi(spec, gn, b)[0])
    np.testing.assert_array_equal(env.state(), gn.reshape(-1))
    frac = {a: np.full(sc.K, 0.5, np.float32) for a in env.agents}
    _, rewards, terms, _, infos = env.step(frac)
    G = env.slot.problem.G[0]
    R = hand_sum_rate(G, np.full(sc.L, 0.5 * sc.p_max_w), sc.noise_w)
    assert all(terms.values()) and env.agents == []
    assert all(r == pytest.approx(R, rel=1e-10) for r in rewards.values())


# ------------------------------------------------------------------------------------------ rr_message
def _play(env, seed: int, actions: np.ndarray) -> dict[str, np.ndarray]:
    """One slot of the AEC env with the fixed fractions ``actions`` [L]: each BS's observation at its turn."""
    env.reset(seed=seed)
    seen, K = {}, env.source.K
    for agent in env.agent_iter():
        obs, _, terminated, _, _ = env.last()
        if terminated:
            env.step(None)
            continue
        b = env.agent_index[agent]
        seen[agent] = obs
        env.step(actions[b * K:(b + 1) * K])
    return seen


@pytest.mark.parametrize("sets", [(), ("scenario.bs_sum_power_dbm=43",)])
def test_interference_observations_are_the_trainers_state(pz, sets):
    """rr_message='interference' with fixed actions: the scale is the one the coordinator builds for
    trpo.rr_message=interference, and each BS's observation is the state bs_agent.trpo.lean.SlotState builds
    from the same slot, token and running interference (accumulated with SlotState.added_inr, as the execution
    phase does); after the slot the INR is radio's interference / noise for the powers applied."""
    pytest.importorskip("torch")
    import bs_agent.envs as E
    from bs_agent.trpo.lean import SlotState
    from coordinator.trpo.config import TrainConfig, agent_spec
    from deploy.config import load_config
    from radio.channels import expand_gains
    from radio.rates import interference_plus_noise

    cfg = load_config(TrainConfig, None, ["run.scheme=partial", "trpo.rr_message=interference", *sets])
    spec = agent_spec(cfg)
    over = {"bs_sum_power_dbm": 43.0} if sets else {}
    env = E.round_robin_env("3cell", rr_message="interference", **over)
    assert env.scale == spec.rr_scale
    B, K, L = spec.B, spec.K, spec.B * spec.K
    for seed in range(4):
        actions = np.random.default_rng(50 + seed).random(L).astype(np.float32)
        seen = _play(env, seed, actions)
        slot = env.slot
        p, decided, inr = np.zeros(L, np.float32), np.zeros(B, np.float32), np.zeros(L, np.float32)
        for b in env.order:                                             # the token, hop by hop, as execution's
            st = SlotState(spec, int(b), env.source.norm)
            st.set_csi(slot.user_bs[:, b])
            st.set_powers(p, decided, inr)
            np.testing.assert_array_equal(seen[env.possible_agents[b]], st.state)
            frac = actions[b * K:(b + 1) * K]
            p[b * K:(b + 1) * K], decided[b] = frac, 1.0
            inr[:] = inr + st.added_inr(frac)
        np.testing.assert_array_equal(env.inr, inr)
        p_w = slot.problem.project(actions.astype(np.float64)[None] * slot.problem.p_max_w)
        G = expand_gains(slot.user_bs[None], K)
        want = interference_plus_noise(G, p_w, slot.problem.noise_w)[0] / slot.problem.noise_w - 1.0
        np.testing.assert_allclose(inr, want, rtol=2e-5, atol=1e-9)


def test_default_round_robin_observations_are_unchanged(pz):
    """rr_message='powers' (the default) is paper 1's state, [2L + B]; the 'interference' observation is the same
    vector with the L interference features inserted before the flags, which are 0 for the slot's first BS."""
    import bs_agent.envs as E

    default, powers = E.round_robin_env(), E.round_robin_env(rr_message="powers")
    inter = E.round_robin_env(rr_message="interference")
    L, B = default.source.L, default.source.B
    assert default.scale is None and default.inr is None
    assert default.observation_space("bs_0") == powers.observation_space("bs_0")
    assert default.observation_space("bs_0").shape == (2 * L + B,)
    space = inter.observation_space("bs_0")
    np.testing.assert_array_equal(np.delete(space.low, np.s_[2 * L:3 * L]), default.observation_space("bs_0").low)
    np.testing.assert_array_equal(np.delete(space.high, np.s_[2 * L:3 * L]), default.observation_space("bs_0").high)
    for seed in range(3):
        actions = np.random.default_rng(seed).random(L).astype(np.float32)
        a, b, c = _play(default, seed, actions), _play(powers, seed, actions), _play(inter, seed, actions)
        assert list(a) == list(b) == list(c)                            # the same order of turns
        first = default.possible_agents[default.order[0]]
        for agent in a:
            np.testing.assert_array_equal(a[agent], b[agent])
            np.testing.assert_array_equal(a[agent], np.delete(c[agent], np.s_[2 * L:3 * L]))
            assert (c[agent][2 * L:3 * L] == 0).all() == (agent == first)


def test_bad_rr_message_is_one_clear_line(pz):
    import bs_agent.envs as E

    with pytest.raises(ProblemError, match=r"^rr_message: expected one of powers, interference, got 'sinr'$"):
        E.round_robin_env(rr_message="sinr")
    with pytest.raises(ProblemError, match=r"^rr_message: the round-robin message exists in round_robin_env only"):
        E.parallel_env(rr_message="interference")


# ------------------------------------------------------------------------------------------ rollouts and seeds
def test_random_round_robin_rollout_gives_the_sum_rate_of_its_powers(pz):
    import bs_agent.envs as E

    env = E.round_robin_env()
    for i, a in enumerate(env.possible_agents):
        env.action_space(a).seed(i)
    K = env.source.K
    for episode in range(20):
        env.reset(seed=episode if episode % 2 else None)
        acted, rewards = np.full(env.source.L, np.nan), {}
        order = [env.possible_agents[b] for b in env.order]
        seen = []
        for agent in env.agent_iter():
            _, reward, terminated, _, _ = env.last()
            if terminated:
                rewards[agent] = reward
                env.step(None)
                continue
            seen.append(agent)
            b = env.agent_index[agent]
            action = env.action_space(agent).sample()
            acted[b * K:(b + 1) * K] = action
            env.step(action)
        assert seen == order                                            # one turn each, in the slot's order
        pr = env.slot.problem
        R = hand_sum_rate(pr.G[0], acted * pr.p_max_w, pr.noise_w)
        assert set(rewards) == set(env.possible_agents)
        assert all(r == pytest.approx(R, rel=1e-10) for r in rewards.values())


def test_seeding_reproduces_and_seeds_differ(gym, pz):
    import bs_agent.envs as E

    def centralized(seed):
        env = gym.make(ENV_ID, scenario="7cell", users_per_cell=1)
        obs, _ = env.reset(seed=seed)
        obs2, _ = env.reset()                                           # the next slot of the same stream
        return obs, obs2, env.step(np.full(7, 0.3, np.float32))[1]

    a, b, c = centralized(4), centralized(4), centralized(5)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0]) and a[2] != c[2]

    def round_robin(seed):
        env = E.round_robin_env()
        env.reset(seed=seed)
        return env.order.copy(), env.state()

    (o1, s1), (o2, s2) = round_robin(9), round_robin(9)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(s1, s2)
    orders = {tuple(round_robin(s)[0]) for s in range(12)}
    assert len(orders) > 1                                              # the order is drawn per slot
    # the same seed gives the same channels in all three environments
    par = E.parallel_env()
    par.reset(seed=9)
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=9)
    np.testing.assert_array_equal(par.state(), s1)
    np.testing.assert_array_equal(obs, s1)


def test_no_global_rng_is_used(gym, pz):
    import bs_agent.envs as E

    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    env = gym.make(ENV_ID)
    env.reset(seed=1)
    env.step(env.action_space.sample())
    rr = E.round_robin_env()
    rr.reset(seed=1)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


# ------------------------------------------------------------------------------------------ gains files
def test_gains_file_slots_are_cycled_through(gym, pz, tmp_path):
    import bs_agent.envs as E

    path, problem = gains_file(tmp_path, n=3)
    env = gym.make(ENV_ID, gains=path)
    _, info = env.reset(seed=0)
    first = info["slot"]
    slots = [first]
    for _ in range(6):
        obs, info = env.reset()
        slots.append(info["slot"])
        i = info["slot"]
        norm = GainNorm.of_scenario(Scenario.preset("3cell"))
        np.testing.assert_array_equal(obs, norm(problem.G[i][:, ::2]).reshape(-1))
        frac = np.full(6, 0.7, np.float32)
        _, reward, _, _, step_info = env.step(frac)
        assert step_info["slot"] == i
        p = frac.astype(np.float64) * problem.p_max_w
        assert reward == pytest.approx(hand_sum_rate(problem.G[i], p, problem.noise_w), rel=1e-10)
    assert slots == [(first + k) % 3 for k in range(7)]
    env.reset(seed=0)
    assert env.unwrapped.slot.index == first                            # a seeded reset restarts the cycle
    par = E.parallel_env(gains=path)
    _, infos = par.reset(seed=0)
    assert {i["slot"] for i in infos.values()} == {first}


def test_gains_file_errors_are_one_clear_line(tmp_path, gym):
    path, _ = gains_file(tmp_path, kind="7cell")
    with pytest.raises(ProblemError, match=r"7 cells x 8 users .*scenario '3cell' has 3 x 2") as exc:
        SlotSource("3cell", gains=path)
    assert "\n" not in str(exc.value)
    SlotSource("7cell", gains=path)                                     # the matching scenario
    bad = tmp_path / "bad.npz"
    np.savez(bad, noise_w=1.0)
    with pytest.raises(ProblemError, match=r"gains file .*bad.npz: missing array\(s\) G") as exc:
        gym.make(ENV_ID, gains=bad)
    assert "\n" not in str(exc.value)
    with pytest.raises(ProblemError, match="scenario override p_max_dbm: comes from the gains file"):
        SlotSource("7cell", gains=path, p_max_dbm=40.0)
    with pytest.raises(ProblemError, match="scenario: expected one of 3cell, 7cell, 19cell"):
        SlotSource("links")
    with pytest.raises(ProblemError, match="scenario override colour: unknown key"):
        SlotSource("3cell", colour=1)


def test_bad_actions_are_refused(gym):
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="expected 6 power fractions"):
        env.unwrapped.step(np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        env.unwrapped.step(np.full(6, np.nan))
    env.unwrapped.step(np.zeros(6))
    with pytest.raises(RuntimeError, match="call reset"):
        env.unwrapped.step(np.zeros(6))


# ------------------------------------------------------------------------------------------ packaging
def test_core_imports_without_gymnasium_and_pettingzoo():
    """With gymnasium and pettingzoo unimportable, bs_agent.envs imports, and asking for an environment
    names what is missing and how to install it."""
    code = (
        "import sys\n"
        "sys.modules['gymnasium'] = None; sys.modules['pettingzoo'] = None\n"
        "import bs_agent.envs as E, bs_agent.envs.slots\n"
        "for f in (E.round_robin_env, E.parallel_env, lambda: E.CentralizedEnv, E.register_envs):\n"
        "    try:\n"
        "        f()\n"
        "    except ImportError as exc:\n"
        "        assert \"pip install 'bsemu[envs]'\" in str(exc), exc\n"
        "    else:\n"
        "        raise SystemExit('no ImportError')\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_gymnasium_make_needs_no_prior_import(gym):
    """A fresh interpreter makes the environment by its id alone (gymnasium imports bs_agent.envs)."""
    code = ("import gymnasium\n"
            f"env = gymnasium.make({ENV_ID!r}, scenario='3cell')\n"
            "obs, _ = env.reset(seed=0)\n"
            "print(obs.shape, env.step(env.action_space.sample())[2])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "(18,) True", out.stderr


def test_entry_point_and_extra_are_declared():
    tomllib = pytest.importorskip("tomllib")                          # (Python >= 3.11)
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = meta["entry-points"]["gymnasium.envs"]["bsemu"]
    assert target == "bs_agent.envs:register_envs"
    assert {r.split(">")[0].split("=")[0] for r in meta["optional-dependencies"]["envs"]} == {"gymnasium", "pettingzoo"}


def test_entry_point_registers_the_id_in_the_plugin_namespace(gym):
    """What gymnasium < 1.0 does with the entry point: call it inside the namespace named by its key."""
    from gymnasium.envs.registration import namespace, registry

    import bs_agent.envs as E

    registry.pop(E.ENV_ID, None)
    with namespace("bsemu"):
        E.register_envs()
    assert E.ENV_ID in registry
    E.register_envs()                                                   # idempotent
    assert gym.make(E.ENV_ID).reset(seed=0)[0].shape == (18,)


@pytest.mark.slow
def test_19_cells(gym, pz):
    from gymnasium.utils.env_checker import check_env
    from pettingzoo.test import api_test

    import bs_agent.envs as E

    env = gym.make(ENV_ID, scenario="19cell")
    assert env.observation_space.shape == (8 * 19 * 19,) and env.action_space.shape == (152,)
    check_env(env.unwrapped, skip_render_check=True)
    api_test(E.round_robin_env("19cell"), num_cycles=2)
