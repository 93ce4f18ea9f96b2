"""trpo.rr_message: the round-robin message with the running interference ('interference') beside the paper's
powers ('powers', the default, unchanged): the interference is radio's, the states agree between training and
the execution phase, the message's bytes are logged as they are, and inproc == ray bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bs_agent.trpo.lean import SlotState
from bs_agent.trpo.ops import AgentOps, agent_csi, token_payload
from bs_agent.trpo.state import GainNorm, obs_dim
from coordinator.config import ConfigError
from coordinator.trpo.backend import InprocBackend, make_backend
from coordinator.trpo.config import TrainConfig, agent_spec, check_feasible, network_sizes, scenario_of
from coordinator.trpo.trainer import Trainer, random_positions
from deploy.config import load_config
from protocol import Kind
from radio.channels import expand_gains
from radio.rates import interference_plus_noise

SMALL = ["policy.hidden=16", "policy.layers=2", "trpo.episodes=48", "trpo.cg_iters=4", "trpo.value_epochs=2",
         "run.scheme=partial"]


def _cfg(*sets: str) -> TrainConfig:
    return load_config(TrainConfig, None, SMALL + list(sets))


def _slots(cfg: TrainConfig, M: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gains user-by-BS [M, L, B], their normalisation, positions [M, B])."""
    sc = scenario_of(cfg)
    rng = np.random.default_rng(seed)
    ub = sc.user_bs_gains(M, rng)
    return ub, GainNorm.of_scenario(sc)(ub), random_positions(rng, M, sc.cells)


def _ring(spec, gains_norm: np.ndarray, position: np.ndarray, stochastic: bool = True):
    """The inproc ring by hand, keeping every BS's token as it received it: (fractions [M, L], final INR [M, L],
    {b: (p, decided, inr) at the moment BS b decided, per slot})."""
    M, B = position.shape
    L = B * spec.K
    agents = [AgentOps(b, spec, 10 + b) for b in range(B)]
    for b, a in enumerate(agents):
        a.load(agent_csi(spec, gains_norm, b), stochastic)
    p, decided, inr = np.zeros((M, L)), np.zeros((M, B), bool), np.zeros((M, L))
    seen = {b: [np.zeros((M, L)), np.zeros((M, B), bool), np.zeros((M, L))] for b in range(B)}
    for n in range(B):
        for b, a in enumerate(agents):
            rows = position[:, b] == n
            for arr, now in zip(seen[b], (p, decided, inr), strict=True):
                arr[rows] = now[rows]
            a.rr_pass(p, decided, position[:, b], n, None, inr)
    return p, inr, seen, agents


def test_default_is_the_papers_state():
    cfg = _cfg()
    spec = agent_spec(cfg)
    assert cfg.trpo.rr_message == "powers" and spec.rr_message == "powers" and spec.rr_scale is None
    assert spec.obs_dim == obs_dim("partial", 3, 2) == 2 * 6 + 3
    assert set(token_payload(np.zeros((4, 6)), np.zeros((4, 3)))) == {"p", "decided"}
    inter = agent_spec(_cfg("trpo.rr_message=interference"))
    assert inter.obs_dim == 3 * 6 + 3
    assert network_sizes(_cfg("trpo.rr_message=interference"))[0] - network_sizes(cfg)[0] == 6 * 16


def test_running_interference_is_radios():
    """After every BS decided, the message holds radio's interference / noise at every user (to the float32 of
    the CSI and of the wire); what each BS received is the interference of the BSs before it in the slot."""
    cfg = _cfg("trpo.rr_message=interference")
    spec, sc = agent_spec(cfg), scenario_of(cfg)
    ub, gn, position = _slots(cfg, 64)
    frac, inr, seen, _ = _ring(spec, gn, position)
    G = expand_gains(ub, sc.K)
    want = interference_plus_noise(G, frac * sc.p_max_w, sc.noise_w) / sc.noise_w - 1.0
    np.testing.assert_allclose(inr, want, rtol=2e-5, atol=1e-9)
    assert inr.dtype == np.float64 and np.array_equal(inr, inr.astype(np.float32).astype(np.float64))
    for b in range(sc.cells):
        p_seen, dec_seen, inr_seen = seen[b]
        before = frac * np.repeat(dec_seen, sc.K, axis=1)            # the powers of the BSs decided before b
        want_b = interference_plus_noise(G, before * sc.p_max_w, sc.noise_w) / sc.noise_w - 1.0
        np.testing.assert_allclose(inr_seen, want_b, rtol=2e-5, atol=1e-9)
        np.testing.assert_array_equal(p_seen, before)
    first = position == 0
    assert all((seen[b][2][first[:, b]] == 0).all() for b in range(sc.cells))   # the first BS hears nobody


def test_execution_state_is_the_training_state():
    """The execution phase's SlotState (one slot, numpy) builds the state the BS trained on, and adds the same
    interference to the vector it passes on."""
    cfg = _cfg("trpo.rr_message=interference")
    spec, sc = agent_spec(cfg), scenario_of(cfg)
    ub, gn, position = _slots(cfg, 16, seed=3)
    frac, inr, seen, agents = _ring(spec, gn, position, stochastic=False)
    norm = GainNorm.of_scenario(sc)
    L = sc.L
    for b in range(sc.cells):
        st = SlotState(spec, b, norm)
        for m in range(16):
            st.set_csi(ub[m, :, b])
            p, dec, r = (x[m] for x in seen[b])
            st.set_powers(p.astype(np.float32), dec.astype(np.float32), r.astype(np.float32))
            np.testing.assert_array_equal(st.state, agents[b].bs.obs[m].numpy())
            added = st.added_inr(frac[m, b * sc.K:(b + 1) * sc.K].astype(np.float32))
            want = spec.rr_scale.added(agent_csi(spec, gn, b)[m:m + 1], frac[m:m + 1, b * sc.K:(b + 1) * sc.K], b,
                                       sc.K)[0]
            np.testing.assert_array_equal(added, want)
            assert added.shape == (L,)


def test_message_bytes_are_logged_as_they_are():
    """The hops' rows record the frames' real size: the interference adds L float32 per slot to each hop."""
    M = 40
    sizes = {}
    for variant in ("powers", "interference"):
        cfg = _cfg(f"trpo.rr_message={variant}")
        spec = agent_spec(cfg)
        _, gn, position = _slots(cfg, M)
        be = InprocBackend(spec, [1, 2, 3])
        _, rows = be.act_round_robin(position, gains_norm=gn)
        assert len(rows) == 2 * (3 * 3 - 1) and all(r[1] == int(Kind.POWER_VECTOR) for r in rows)
        sizes[variant] = {r[6] for r in rows}
        assert len(sizes[variant]) == 1
    (pw,), (it,) = sizes["powers"], sizes["interference"]
    assert 4 * M * 6 <= it - pw <= 4 * M * 6 + 64


def test_config_edge():
    with pytest.raises(ConfigError, match="rr_message"):
        check_feasible(load_config(TrainConfig, None, ["run.scheme=full", "trpo.rr_message=interference"]))
    with pytest.raises(ConfigError, match="rr_message"):
        load_config(TrainConfig, None, ["trpo.rr_message=sinr"])
    check_feasible(_cfg("trpo.rr_message=interference"))


@pytest.mark.ray
@pytest.mark.parametrize("extra", [[], ["links.loss=0.3"], ["run.bs_per_actor=2"]])
def test_inproc_equals_ray_with_interference(ray_session, extra):
    """Two iterations of the 'interference' round-robin on both backends: parameters and message counts and
    bytes equal bit for bit (the token over the actors' ZeroMQ ring carries the interference as float32)."""
    torch.set_num_threads(1)
    thetas, logs = {}, {}
    for backend in ("inproc", "ray"):
        cfg = _cfg("trpo.rr_message=interference", f"run.backend={backend}", *extra)
        be = make_backend(cfg)
        try:
            tr = Trainer(cfg, be)
            ms = [tr.step() for _ in range(2)]
            thetas[backend] = (tr.theta.clone(), tr.phi.detach().clone())
            logs[backend] = {k: v for k, v in ms[-1].items() if k.startswith("msgs_") or k == "lost_vectors"}
        finally:
            be.close()
    assert torch.equal(thetas["inproc"][0], thetas["ray"][0])
    assert torch.equal(thetas["inproc"][1], thetas["ray"][1])
    assert logs["inproc"] == logs["ray"]


@pytest.mark.ray
def test_execution_phase_runs_the_variant(ray_session):
    """`bsemu execute`'s nodes on the logical clock with ideal links decide the evaluation's powers with the
    'interference' message (its vectors carry "inr"), to the float32 of the one-slot forward."""
    from coordinator.execute.config import ExecuteConfig, check_execute
    from coordinator.execute.report import applied_fractions, ideal_fractions
    from coordinator.execute.runner import ExecutionRunner, Source
    from protocol.log import SENT

    cfg = _cfg("trpo.rr_message=interference", "policy.hidden=32")
    spec, sc = agent_spec(cfg), scenario_of(cfg)
    theta = AgentOps(0, spec, 1).initial_params()[0]
    theta = theta + 0.3 * np.random.default_rng(0).standard_normal(theta.size).astype(np.float32)
    src = Source(sc, "partial", spec=spec, theta=theta)
    ecfg = load_config(ExecuteConfig, None, ["run.slots=25", "run.clock=logical", "run.warmup_slots=0"])
    check_execute(ecfg)
    runner = ExecutionRunner(ecfg, src, 3)
    col = runner.run()
    frac, ready = applied_fractions(col, 3, 2, real=False)
    assert ready.all()
    np.testing.assert_allclose(frac, ideal_fractions(src, runner.problem, runner.order), rtol=0, atol=2e-6)
    sent = [row for r in col.nodes.values() for row in r["rows"] if row[0] == SENT
            and row[1] == int(Kind.POWER_VECTOR)]
    assert len(sent) == 2 * 25
