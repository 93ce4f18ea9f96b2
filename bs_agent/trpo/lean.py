"""A trained policy's decision for ONE slot in one compiled call, numpy as reference (:class:`LeanPolicy`), and
the state a BS builds from what it has in that slot (:class:`SlotState`).

Training acts on batches of M slots with torch; the execution phase decides one slot at a time, where
torch's per-operation overhead (~5-10 µs a call, ~110 µs for a bare 3x256 forward) would dominate. Here a
decision is a few numpy calls on preallocated float32 buffers: the deterministic action of paper 1
eq. (9) is the policy's mean, clipped to [0, 1]:

    h_0 = s,  h_i = ELU(W_i h_{i-1} + b_i)  (eq. (24)),  mu = (W_o h + b_o)[:A],  p / Pmax = clip(mu, 0, 1)

with the same parameters, in the same precision (float32), as :class:`bs_agent.trpo.base_station.BaseStation`
(equal to its mean action up to the rounding of a matrix-vector against a matrix-matrix product).

The whole forward is one call into the compiled ``bs_agent.trpo._cpolicy`` where it is built (``pip install``
builds it; a 3x256 policy: ~8 µs p50 hot against ~22 µs for the numpy calls below, which stay the reference and the
fallback). :data:`POLICY_IMPL` says which is active: ``"c"`` unless the extension is missing or
``BSEMU_PURE_POLICY=1`` at import, else ``"numpy"``.
"""

from __future__ import annotations

import os

import numpy as np

from bs_agent.trpo.base_station import AgentSpec
from bs_agent.trpo.state import GainNorm, relative_order


def _load_c_policy():
    if os.environ.get("BSEMU_PURE_POLICY") == "1":
        return None, None, None, "numpy"
    try:
        from bs_agent.trpo import _cpolicy
    except ImportError:
        return None, None, None, "numpy"
    return _cpolicy.mean, _cpolicy.token, getattr(_cpolicy, "csi", None), "c"


_c_mean, _c_token, _c_csi, POLICY_IMPL = _load_c_policy()


class LeanPolicy:
    """The mean action of the shared policy for one state vector, from its flat parameters ``theta``
    (``module.parameters()`` order of :class:`bs_agent.trpo.nets.PolicyNet`: weight [out, in], bias [out]
    per Linear)."""

    def __init__(self, spec: AgentSpec, theta: np.ndarray) -> None:
        theta = np.asarray(theta, dtype=np.float32).ravel()
        sizes = [spec.obs_dim] + [spec.hidden] * spec.layers + [2 * spec.act_dim]
        self.A = spec.act_dim
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        pos = 0
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            W = theta[pos:pos + n_in * n_out].reshape(n_out, n_in)
            pos += n_in * n_out
            b = theta[pos:pos + n_out]
            pos += n_out
            if i == len(sizes) - 2:              # the output layer: only the mean rows are needed
                W, b = W[:self.A], b[:self.A]
            self.layers.append((np.ascontiguousarray(W), b.copy()))
        if pos != theta.size:
            raise ValueError(f"theta has {theta.size} parameters, the policy of {spec} has {pos}")
        self._h = [np.empty(W.shape[0], np.float32) for W, _ in self.layers]
        self._pos = [np.empty(W.shape[0], np.float32) for W, _ in self.layers[:-1]]
        # the compiled path's operands: each weight transposed ([in, out]) then its bias, packed in one buffer
        self._packed = np.concatenate([np.concatenate([W.T.ravel(), b]) for W, b in self.layers])
        self._dims = np.array([self.layers[0][0].shape[1]] + [W.shape[0] for W, _ in self.layers], np.int32)
        self.use_c = _c_mean is not None

    def __call__(self, s: np.ndarray) -> np.ndarray:
        """Power fractions [A] (float32, in [0, 1]) for the state ``s`` [obs_dim] float32 (a new array)."""
        if self.use_c:
            out = np.empty(self.A, np.float32)
            _c_mean(self._packed, self._dims, np.ascontiguousarray(s, np.float32), out)
            return out
        return self.numpy_mean(s)

    def numpy_mean(self, s: np.ndarray) -> np.ndarray:
        """The same as calling the policy, with numpy's calls: the reference of the compiled path."""
        x = s
        last = len(self.layers) - 1
        for i, (W, b) in enumerate(self.layers):
            h = self._h[i]
            np.dot(W, x, out=h)
            h += b
            if i < last:                          # ELU(z) = max(z, 0) + exp(min(z, 0)) - 1, eq. (24)
                pos = self._pos[i]
                np.maximum(h, 0.0, out=pos)
                np.minimum(h, 0.0, out=h)
                np.exp(h, out=h)
                h -= 1.0
                h += pos
            x = h
        return np.clip(x, 0.0, 1.0)


class SlotState:
    """What BS ``b`` feeds its policy in one slot, relative to itself (DESIGN §3): its own normalised gains
    to every user (own cell first), then for the round-robin the powers decided so far (with
    rr_message='interference' then the running interference's features) and the decided flags in the same
    order. Index arrays are computed once."""

    def __init__(self, spec: AgentSpec, b: int, norm: GainNorm) -> None:
        B, K = spec.B, spec.K
        self.b, self.K, self.B, self.norm = b, K, B, norm
        order = relative_order(b, B)
        self.p_index = (order[:, None] * K + np.arange(K)[None, :]).ravel().astype(np.int64)  # [L] b's relative order
        self.flag_index = np.ascontiguousarray(order, np.int64)
        self.state = np.zeros(spec.obs_dim, np.float32)
        self.scale = spec.rr_scale if spec.interference else None

    def set_csi(self, gains_b: np.ndarray) -> None:
        """This BS's linear gains to every user [L] (link order): its local CSI of the slot. One compiled call where
        the extension is built and the gains are a float64 [L] array (the air's), else numpy (the reference)."""
        if _c_csi is not None and _c_csi(gains_b, self.p_index, self.norm.mean_db, self.norm.std_db, self.state):
            return
        self.state[:self.B * self.K] = self.norm(np.asarray(gains_b, np.float64)[self.p_index])

    def set_powers(self, p_frac: np.ndarray, decided: np.ndarray, inr: np.ndarray | None = None) -> None:
        """The round-robin token: fractions so far [L] (0 where undecided), flags [B] and, with
        rr_message='interference', the running interference / noise at every user ``inr`` [L]."""
        L = self.B * self.K
        self.state[L:2 * L] = p_frac[self.p_index]
        if self.scale is not None:
            self.state[2 * L:3 * L] = self.scale.features(inr[self.p_index])
        self.state[-self.B:] = decided[self.flag_index]

    def take_token(self, p_in: object, d_in: object, p: np.ndarray, decided: np.ndarray, last_p: np.ndarray,
                   last_d: np.ndarray) -> bool:
        """The compiled path of taking the paper's round-robin message (no interference): if ``p_in`` is a
        float32 [L] array of finite values and ``d_in`` an int64 [B] array, copy them into ``p`` and ``last_p``
        (float32 [L]), ``decided`` and ``last_d`` (float32 [B]), set the state's powers and flags as
        :meth:`set_powers` does, and return True; else (or without the extension) write nothing and return
        False: the caller then checks and copies in Python."""
        if _c_token is None or self.scale is not None:
            return False
        return _c_token(p_in, d_in, p, decided, last_p, last_d, self.state, self.p_index, self.flag_index)

    def added_inr(self, frac: np.ndarray) -> np.ndarray:
        """[L] the interference / noise this BS adds at every user with its fractions ``frac`` [K] (from the
        normalised CSI in the state, as in training)."""
        L = self.B * self.K
        return self.scale.added(self.state[None, :L], np.asarray(frac, np.float64)[None], self.b, self.K)[0]


def central_state(norm: GainNorm, user_bs: np.ndarray) -> np.ndarray:
    """The central agent's state [L * B] float32 from the network's gains [L, B] (user by BS) of one slot."""
    return norm(np.asarray(user_bs, np.float64)).reshape(-1)
