"""The execution phase's one-slot path (bs_agent.trpo.lean): the compiled policy mean against the numpy
reference and the torch policy, the compiled token take against SlotState.set_powers (bit for bit), with
every malformed message refused without writing anything, and the compiled CSI take against GainNorm."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from bs_agent.trpo import lean
from bs_agent.trpo.base_station import AgentSpec, BaseStation
from bs_agent.trpo.lean import LeanPolicy, SlotState
from bs_agent.trpo.state import GainNorm
from radio.channels import Scenario


def _policy(spec: AgentSpec, seed: int = 0) -> tuple[LeanPolicy, np.ndarray]:
    theta = BaseStation(0, spec, 1).get_policy_params().numpy()
    theta = theta + 0.1 * np.random.default_rng(seed).standard_normal(theta.size).astype(np.float32)
    return LeanPolicy(spec, theta), theta


def test_the_compiled_path_is_built_and_active():
    if os.environ.get("BSEMU_PURE_POLICY") == "1":
        pytest.skip("BSEMU_PURE_POLICY=1 asks for the numpy path")
    import bs_agent.trpo._cpolicy  # noqa: F401  (fails, not skips, when the build did not make it)

    assert lean.POLICY_IMPL == "c"
    code = "import bs_agent.trpo.lean as m; print(m.POLICY_IMPL)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "BSEMU_PURE_POLICY": "1"}).stdout.split()
    assert out == ["numpy"]


@pytest.mark.parametrize("scheme,B,K,hidden,layers", [("partial", 3, 2, 256, 3), ("full", 7, 8, 64, 2),
                                                      ("centralized", 3, 2, 37, 3), ("partial", 7, 8, 5, 1)])
def test_compiled_mean_equals_numpy_and_torch(scheme, B, K, hidden, layers):
    spec = AgentSpec(scheme, B, K, hidden=hidden, layers=layers)
    pol, theta = _policy(spec)
    states = np.random.default_rng(1).standard_normal((64, spec.obs_dim)).astype(np.float32) * 2
    c = np.stack([pol(s) for s in states])
    ref = np.stack([pol.numpy_mean(s) for s in states])
    assert c.dtype == np.float32 and c.shape == (64, spec.act_dim)
    assert ((c >= 0) & (c <= 1)).all() and 0 < c.mean() < 1          # clipped, and not all at a bound
    np.testing.assert_allclose(c, ref, rtol=2e-5, atol=2e-6)          # summation order only
    bs = BaseStation(0, spec, 1)
    bs.set_policy_params(torch.from_numpy(theta))


    with torch.no_grad():
        mu = bs.policy(torch.from_numpy(states))[0].numpy()         # the trained network's mean, batched
    np.testing.assert_allclose(c, np.clip(mu, 0, 1), rtol=2e-5, atol=2e-6)


def test_compiled_mean_keeps_nan_and_refuses_wrong_sizes():
    spec = AgentSpec("full", 3, 2, hidden=16, layers=2)
    pol, _ = _policy(spec)
    s = np.full(spec.obs_dim, np.nan, np.float32)
    assert np.isnan(pol(s)).all() and np.isnan(pol.numpy_mean(s)).all()
    if pol.use_c:
        with pytest.raises(ValueError, match="sizes do not match"):
            lean._c_mean(pol._packed, pol._dims, np.zeros(spec.obs_dim + 1, np.float32), np.empty(spec.act_dim,
                                                                                               np.float32))


def _slot_state(b: int = 1, B: int = 3, K: int = 2) -> SlotState:
    spec = AgentSpec("partial", B, K, hidden=8, layers=1)
    st = SlotState(spec, b, GainNorm.of_scenario(Scenario.preset("3cell")))
    st.set_csi(np.linspace(1e-9, 1e-7, B * K))
    return st


def _buffers(B: int = 3, K: int = 2) -> list[np.ndarray]:
    L = B * K
    return [np.zeros(L, np.float32), np.zeros(B, np.float32), np.zeros(L, np.float32), np.zeros(B, np.float32)]


@pytest.mark.skipif(lean._c_token is None, reason="the compiled path is not built (BSEMU_PURE_POLICY=1)")
def test_token_take_equals_set_powers_bit_for_bit():
    rng = np.random.default_rng(2)
    for b in range(3):
        for _ in range(20):
            p_in = rng.random(6).astype(np.float32)
            d_in = rng.integers(0, 2, 3).astype(np.int64)
            fast, ref = _slot_state(b), _slot_state(b)
            p, dec, lp, ld = _buffers()
            assert fast.take_token(p_in, d_in, p, dec, lp, ld)
            pr, dr = p_in.copy(), d_in.astype(np.float32)
            ref.set_powers(pr, dr)
            assert fast.state.tobytes() == ref.state.tobytes()
            assert p.tobytes() == lp.tobytes() == pr.tobytes() and dec.tobytes() == ld.tobytes() == dr.tobytes()


@pytest.mark.skipif(lean._c_token is None, reason="the compiled path is not built (BSEMU_PURE_POLICY=1)")
@pytest.mark.parametrize("p_in,d_in", [
    (np.array([0.1, np.nan, 0, 0, 0, 0], np.float32), np.zeros(3, np.int64)),        # not finite
    (np.array([0.1, np.inf, 0, 0, 0, 0], np.float32), np.zeros(3, np.int64)),
    (np.zeros(6, np.float64), np.zeros(3, np.int64)),                                 # other dtypes
    (np.zeros(6, np.float32), np.zeros(3, np.int32)),
    (np.zeros(5, np.float32), np.zeros(3, np.int64)),                                 # other lengths
    (np.zeros(6, np.float32), np.zeros(4, np.int64)),
    (np.zeros((2, 3), np.float32), np.zeros(3, np.int64)),                            # not 1-D
    ([0.0] * 6, np.zeros(3, np.int64)),                                               # not an array
    (None, np.zeros(3, np.int64)),
    (b"\x00" * 24, np.zeros(3, np.int64)),                                            # bytes: format 'B'
])
def test_token_take_refuses_a_malformed_message_and_writes_nothing(p_in, d_in):
    st = _slot_state()
    bufs = _buffers()
    for x in bufs:
        x[:] = 7.0
    before = st.state.copy()
    assert not st.take_token(p_in, d_in, *bufs)
    assert st.state.tobytes() == before.tobytes() and all((x == 7.0).all() for x in bufs)


@pytest.mark.skipif(lean._c_token is None, reason="the compiled path is not built (BSEMU_PURE_POLICY=1)")
def test_token_take_refuses_wrong_own_buffers():
    st = _slot_state()
    p, dec, lp, ld = _buffers()
    good = (np.zeros(6, np.float32), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="this node's buffers"):
        st.take_token(*good, p.astype(np.float64), dec, lp, ld)
    with pytest.raises(ValueError, match="this node's buffers"):
        st.take_token(*good, p, dec, lp[:5], ld)
    st.p_index = st.p_index + 6                                          # an index out of range
    with pytest.raises(ValueError, match="this node's buffers"):
        st.take_token(*good, p, dec, lp, ld)


@pytest.mark.skipif(lean._c_csi is None, reason="the compiled path is not built (BSEMU_PURE_POLICY=1)")
@pytest.mark.parametrize("kind,b", [("3cell", 0), ("3cell", 2), ("7cell", 3)])
def test_compiled_csi_equals_the_gain_norm_to_a_float32_ulp(kind, b):
    """set_csi's compiled call writes what GainNorm gives for the BS's gains in its relative order (numpy's log10
    and the C library's may differ in a double's last bit), over many slots and at the edges: a gain of 0 and
    below the 1e-300 floor, and NaN (kept, as np.maximum keeps it)."""
    sc = Scenario.preset(kind)
    norm = GainNorm.of_scenario(sc)
    spec = AgentSpec("partial", sc.cells, sc.K, hidden=8, layers=1)
    st = SlotState(spec, b, norm)
    L = sc.cells * sc.K
    gains = sc.user_bs_gains(200, np.random.default_rng(4))[:, :, b]
    edges = np.full((1, L), 1e-9)
    edges[0, :3] = [0.0, 1e-310, np.nan]
    for g in np.concatenate([gains, edges]):
        st.state[:] = 5.0
        st.set_csi(np.ascontiguousarray(g))
        ref = norm(g[st.p_index])
        np.testing.assert_array_max_ulp(st.state[:L], ref, maxulp=1)
        assert (st.state[L:] == 5.0).all()                 # nothing else written
    assert np.isnan(st.state[:L]).sum() == 1


@pytest.mark.skipif(lean._c_csi is None, reason="the compiled path is not built (BSEMU_PURE_POLICY=1)")
def test_compiled_csi_leaves_other_inputs_to_numpy_and_refuses_wrong_own_buffers():
    st = _slot_state()
    g = np.linspace(1e-12, 1e-9, 6)
    for other in (g.astype(np.float32), g[:5], g.reshape(2, 3), list(g)):
        assert not lean._c_csi(other, st.p_index, st.norm.mean_db, st.norm.std_db, st.state)
    st.set_csi(g.astype(np.float32))                        # the numpy path takes them
    np.testing.assert_array_equal(st.state[:6], st.norm(g.astype(np.float32).astype(np.float64)[st.p_index]))
    with pytest.raises(ValueError, match="this node's buffers"):
        lean._c_csi(g, st.p_index + 6, 0.0, 1.0, st.state)
    with pytest.raises(ValueError, match="this node's buffers"):
        lean._c_csi(g, st.p_index, 0.0, 1.0, st.state.astype(np.float64))
