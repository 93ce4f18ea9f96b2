"""One base station as a plain object (testable without Ray); :mod:`bs_agent.trpo.ops` gives it numpy
calls and :mod:`bs_agent.trpo.actor` puts those in a Ray actor.

A BS holds its id, its local state for the current batch of M slots (see :mod:`bs_agent.trpo.state`),
the shared policy and value networks, and what it sampled. It acts on the whole batch at once and
computes its SHARE (a sum over its own samples) of:

    g_b   = sum_m  w_m grad log pi(a_m|s_m)                 w_m = gamma^n A_m           eq. (18)
    F_b v = sum_m  Hess_theta KL(pi_old(.|s_m) || pi_theta(.|s_m)) v                   eq. (15)/(19)
    L_b   = sum_m  w_m (pi_theta'(a_m|s_m) / pi_theta(a_m|s_m) - 1)                   eq. (12), (22)
    KL_b  = sum_m  KL(pi_theta(.|s_m) || pi_theta'(.|s_m))                              eq. (23)
    c_b   = grad_phi sum_m (V_phi(s_m) - G_m)^2                                         critic

The coordinator sums the shares of all BSs and divides by the number of samples M*N.
The centralized agent of Alg. 1 is the same class with ``scheme='centralized'`` (it decides all L
powers from the full CSI).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bs_agent.trpo.gaussian import gaussian_kl, gaussian_log_prob
from bs_agent.trpo.nets import (
    flat_cat,
    flat_params,
    init_networks,
    mlp_forward,
    mlp_forward_cache,
    mlp_jvp,
    mlp_vjp,
    set_flat_params,
    unflat,
)
from bs_agent.trpo.state import RR_MESSAGES, InterferenceScale, act_dim, obs_dim, round_robin_extra


def wire_round(x: np.ndarray) -> np.ndarray:
    """Values as they arrive after a hop (floats travel as float32, DESIGN §5), back in float64."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


VALUE_PRECISIONS = ("float32", "bfloat16")


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 matmuls natively (AVX512-BF16 or AMX, through oneDNN); without
    it torch emulates them, ~10x slower than float32 (measured: 343 vs ~3000 steps/s, 2-core AMD EPYC)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the (private) probe: assume emulation
        return False


def resolve_value_precision(value: str) -> str:
    """'auto' -> 'bfloat16' where native_bfloat16(), else 'float32'; other values unchanged."""
    return ("bfloat16" if native_bfloat16() else "float32") if value == "auto" else value


@dataclass(frozen=True)
class AgentSpec:
    """Static description shared by every BS of a run."""

    scheme: str          # 'centralized' | 'partial' | 'full'
    B: int               # cells
    K: int               # users per cell
    hidden: int = 256
    layers: int = 3
    init_log_std: float = -1.0
    init_seed: int = 0   # seed of the network initialisation (same at every BS: the policy is shared)
    fvp_stride: int = 1  # Fisher-vector products on every k-th sample, times k (1: exact, all samples)
    value_batches: int = 1  # critic round e on every k-th sample from offset e mod k (1: all samples)
    value_precision: str = "float32"  # 'bfloat16': the critic's hidden layers compute in bfloat16
    rr_message: str = "powers"  # round-robin message: 'powers' (paper 1) | 'interference' (+ running INR)
    rr_scale: InterferenceScale | None = None  # the 'interference' variant's constants (state.InterferenceScale)

    def __post_init__(self) -> None:
        if self.fvp_stride < 1:
            raise ValueError(f"fvp_stride: expected an integer >= 1, got {self.fvp_stride}")
        if self.value_batches < 1:
            raise ValueError(f"value_batches: expected an integer >= 1, got {self.value_batches}")
        if self.value_precision not in VALUE_PRECISIONS:
            raise ValueError(f"value_precision: expected one of {VALUE_PRECISIONS}, got {self.value_precision!r}")
        if self.rr_message not in RR_MESSAGES:
            raise ValueError(f"rr_message: expected one of {RR_MESSAGES}, got {self.rr_message!r}")
        if self.rr_message == "interference" and (self.scheme != "partial" or self.rr_scale is None):
            raise ValueError("rr_message=interference: the round-robin scheme (partial) with its rr_scale only")

    @property
    def interference(self) -> bool:
        """Whether the round-robin message carries the running interference (rr_message='interference')."""
        return self.rr_message == "interference"

    @property
    def obs_dim(self) -> int:
        return obs_dim(self.scheme, self.B, self.K, self.rr_message)

    @property
    def act_dim(self) -> int:
        return act_dim(self.scheme, self.B, self.K)


def _param_key(params: list[torch.Tensor]) -> tuple[int, ...]:
    """Changes whenever a parameter is written in place (torch's version counters): cache validity."""
    return tuple(p._version for p in params)


class BaseStation:
    """A BS (or, with ``scheme='centralized'``, the central agent)."""

    def __init__(self, bs_id: int, spec: AgentSpec, sample_seed: int, dtype: torch.dtype = torch.float32):
        self.bs_id = int(bs_id)
        self.spec = spec
        self.dtype = dtype
        self.policy, self.value = init_networks(spec.obs_dim, spec.act_dim, spec.hidden, spec.layers,
                                                spec.init_log_std, spec.init_seed, dtype)
        # parameter lists kept once (module.parameters() walks the module tree: ~0.03 ms a call, and
        # the caches check them on every product)
        self._pparams = list(self.policy.parameters())
        self._vparams = list(self.value.parameters())
        self.gen = torch.Generator().manual_seed(int(sample_seed))   # this BS's sampling noise
        self._vlow: tuple | None = None   # (parameter versions, the critic's low-precision parameters)
        self._clear()

    def _clear(self) -> None:
        self.csi: np.ndarray | None = None       # [M, csi_dim] relative, normalised
        self.obs: torch.Tensor | None = None     # [M, obs_dim]
        self.eps: torch.Tensor | None = None     # [M, A] standard normal noise of this batch
        self.a: torch.Tensor | None = None       # [M, A] sampled (unclipped) power fractions
        self.mu_old = self.log_std_old = self.logp_old = None
        self.weights: torch.Tensor | None = None  # [M] gamma^n A
        self._pcache: list | None = None          # forward cache of the policy at the current theta, all M slots
        self._pout: torch.Tensor | None = None    # [M, 2A] its output (mu, log-std)
        self._vcache: list | None = None          # same for the value network at the current phi
        self._vout: torch.Tensor | None = None
        self._acted: np.ndarray | None = None     # [M] slots whose act() forward is in _pcache
        self._fisher: tuple | None = None         # (cache it was made from, sub-sampled cache, k D)

    # ---------------------------------------------------------------- parameters
    def get_policy_params(self) -> torch.Tensor:
        return flat_params(self.policy)

    def get_value_params(self) -> torch.Tensor:
        return flat_params(self.value)

    def set_policy_params(self, theta: torch.Tensor) -> None:
        set_flat_params(self.policy, torch.as_tensor(theta, dtype=self.dtype))
        self._pcache = self._pout = self._acted = None

    def set_value_params(self, phi: torch.Tensor) -> None:
        set_flat_params(self.value, torch.as_tensor(phi, dtype=self.dtype))
        self._vcache = self._vout = None

    def get_rng_state(self) -> torch.Tensor:
        return self.gen.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self.gen.set_state(state)

    # ---------------------------------------------------------------- acting
    def load_csi(self, csi: np.ndarray, stochastic: bool = True) -> None:
        """Start a batch: this BS's local CSI [M, csi_dim] (already relative and normalised), and the
        Gaussian noise for all M slots drawn at once (so acting in passes is the same as at once)."""
        self._clear()
        self.csi = np.asarray(csi, dtype=np.float32)
        M = self.csi.shape[0]
        self.obs = torch.zeros(M, self.spec.obs_dim, dtype=self.dtype)
        self.a = torch.zeros(M, self.spec.act_dim, dtype=self.dtype)
        self.eps = (torch.randn(M, self.spec.act_dim, generator=self.gen, dtype=torch.float64).to(self.dtype)
                    if stochastic else torch.zeros(M, self.spec.act_dim, dtype=self.dtype))

    def act(self, rows: np.ndarray | None = None, extra: np.ndarray | None = None) -> np.ndarray:
        """Decide the powers of slots ``rows`` (all when None); ``extra`` [len(rows), ...] is appended to
        the CSI (round-robin: the relative powers and flags). Returns power fractions clipped to [0, 1]
        (paper 1 eq. (9)), [len(rows), A]. The forward pass is kept (per slot) so that pi_old is not recomputed."""
        assert self.csi is not None and self.obs is not None and self.a is not None and self.eps is not None
        M = self.csi.shape[0]
        idx = np.arange(M) if rows is None else np.asarray(rows)
        parts = [self.csi[idx]] if extra is None else [self.csi[idx], np.asarray(extra, dtype=np.float32)]
        s = torch.as_tensor(np.concatenate(parts, axis=1), dtype=self.dtype)
        t_idx = torch.as_tensor(idx, dtype=torch.long)
        with torch.no_grad():
            out, cache = mlp_forward_cache(self.policy.body, s)
            mu, log_std = out[:, :self.spec.act_dim], out[:, self.spec.act_dim:]
            a = mu + torch.exp(log_std) * self.eps[t_idx]
        self.obs[t_idx] = s
        self.a[t_idx] = a
        self._keep_act_cache(idx, t_idx, out, cache)
        return torch.clamp(a, 0.0, 1.0).numpy().astype(np.float64)

    def _keep_act_cache(self, idx: np.ndarray, t_idx: torch.Tensor, out: torch.Tensor, cache: list) -> None:
        M = self.obs.shape[0]
        key = _param_key(self._pparams)
        if self._acted is None or self._pkey != key:
            if idx.size == M:                       # all slots at once: keep the tensors as they are
                self._pout, self._pcache, self._acted, self._pkey = out, cache, np.ones(M, bool), key
                return
            self._pout = out.new_zeros(M, out.shape[1])
            self._pcache = [(h.new_zeros(M, h.shape[1]), None if d is None else d.new_zeros(M, d.shape[1]))
                            for h, d in cache]
            self._acted, self._pkey = np.zeros(M, bool), key
        self._pout[t_idx] = out
        for (H, Dc), (h, d) in zip(self._pcache, cache, strict=True):
            H[t_idx] = h
            if Dc is not None:
                Dc[t_idx] = d
        self._acted[idx] = True

    def _policy_cache(self) -> tuple[torch.Tensor, list]:
        """(output [M, 2A], forward cache) of the policy at the CURRENT parameters on this batch."""
        key = _param_key(self._pparams)
        if self._pcache is None or self._pkey != key or not bool(self._acted.all()):
            with torch.no_grad():
                self._pout, self._pcache = mlp_forward_cache(self.policy.body, self.obs)
            self._acted, self._pkey = np.ones(self.obs.shape[0], bool), key
        return self._pout, self._pcache

    def _value_params(self) -> list[torch.Tensor] | None:
        """The critic's parameters as its products use them: None (the module's own) at 'float32'; at
        'bfloat16' (spec.value_precision) bfloat16 copies of the hidden layers and the output layer as it
        is, so that V, and every advantage made from it, keeps its float resolution. The critic's matmuls
        then run ~4x faster on a CPU with AMX/AVX512-BF16; its Adam step stays on the float parameters."""
        if self.spec.value_precision == "float32":
            return None
        key = _param_key(self._vparams)
        if self._vlow is None or self._vlow[0] != key:
            last = len(self._vparams) - 2
            self._vlow = (key, [p.detach().to(torch.bfloat16) if i < last else p.detach()
                                for i, p in enumerate(self._vparams)])
        return self._vlow[1]

    def _value_cache(self) -> tuple[torch.Tensor, list]:
        key = _param_key(self._vparams)
        if self._vcache is None or self._vkey != key:
            with torch.no_grad():
                self._vout, self._vcache = mlp_forward_cache(self.value.body, self.obs, self._value_params())
            self._vkey = key
        return self._vout, self._vcache

    def rr_pass(self, p_frac: np.ndarray, decided: np.ndarray, position: np.ndarray, n: int,
                lost: np.ndarray | None = None, inr: np.ndarray | None = None) -> None:
        """Round-robin pass n (in place on the token): act on the slots where this BS is at step n,
        from its CSI plus the powers decided so far; write its powers and flag into the token.
        ``p_frac`` [M, L], ``decided`` [M, B], ``position`` [M] this BS's step in each slot's order;
        ``lost`` [M]: slots whose vector from the predecessor was lost — the BS sees every predecessor as
        undecided there (the execution phase's ``undecided`` fallback), and passes on only its own powers.
        ``inr`` [M, L] (rr_message='interference'): the running interference at every user, to which this BS adds
        its own (rounded to the wire's float32, as the powers)."""
        rows = np.nonzero(position == n)[0]
        if rows.size == 0:
            return
        if lost is not None:
            gone = rows[lost[rows]]
            p_frac[gone] = 0.0
            decided[gone] = False
            if inr is not None:
                inr[gone] = 0.0
        K, b = self.spec.K, self.bs_id
        extra = round_robin_extra(p_frac[rows], decided[rows], b, K, None if inr is None else inr[rows],
                                  self.spec.rr_scale)
        frac = self.act(rows, extra)
        p_frac[rows, b * K:(b + 1) * K] = wire_round(frac)
        decided[rows, b] = True
        if inr is not None:
            inr[rows] = wire_round(inr[rows] + self.spec.rr_scale.added(self.csi[rows], p_frac[rows, b * K:(b + 1) * K],
                                                                        b, K))

    def finish_acting(self) -> np.ndarray:
        """Freeze pi_old on the batch (from the forward pass of acting); returns V(s) [M] of the critic."""
        out, _ = self._policy_cache()
        A = self.spec.act_dim
        self.mu_old, self.log_std_old = out[:, :A], out[:, A:]
        with torch.no_grad():
            self.logp_old = gaussian_log_prob(self.a, self.mu_old, self.log_std_old)
        return self._value_cache()[0].squeeze(-1).double().numpy()

    # ---------------------------------------------------------------- TRPO shares
    def set_weights(self, weights: np.ndarray) -> None:
        """w_m = gamma^n A_m of this BS's samples (from the coordinator's advantage estimate)."""
        self.weights = torch.as_tensor(np.asarray(weights), dtype=self.dtype)

    def policy_gradient(self) -> torch.Tensor:
        """Share of eq. (18): sum_m w_m grad log pi(a_m|s_m), flat. Backward pass by hand on the cached
        forward: d log N(a; mu, s^2)/d mu = z/s, d/d log s = z^2 - 1 with z = (a - mu)/s."""
        out, cache = self._policy_cache()
        A = self.spec.act_dim
        with torch.no_grad():
            inv_std = torch.exp(-out[:, A:])
            z = (self.a - out[:, :A]) * inv_std
            w = self.weights[:, None]
            u = torch.cat([w * z * inv_std, w * (z * z - 1.0)], dim=1)
            return flat_cat(mlp_vjp(self.policy.body, cache, u))

    def fisher_vector_product(self, v: torch.Tensor) -> torch.Tensor:
        """Share of eq. (15)/(19): (Hessian of sum_m KL(pi_old || pi_theta) at theta = theta_old) v.

        At theta = theta_old the KL Hessian is the Gauss-Newton form J^T D J (J: Jacobian of the
        network outputs (mu, log-std) w.r.t. theta; D = diag(1/sigma^2, 2) the Gaussian's Fisher in
        those outputs), computed with one tangent pass and one backward pass on the cached forward.
        With ``spec.fvp_stride = k > 1`` the sum runs over slots 0, k, 2k, ... and is multiplied by k
        (the Fisher on a sub-sample, Schulman et al. 2015 App. C); k = 1 is exact."""
        v = torch.as_tensor(v, dtype=self.dtype)
        cache, D = self._fisher_pieces()
        with torch.no_grad():
            Jv = mlp_jvp(self.policy.body, cache, unflat(v, self._pparams))
            return flat_cat(mlp_vjp(self.policy.body, cache, Jv.mul_(D)))

    def _fisher_pieces(self) -> tuple[list, torch.Tensor]:
        """(forward cache, k * D) on the slots the Fisher uses, made once per batch and parameters."""
        _, cache = self._policy_cache()
        k = self.spec.fvp_stride
        if self._fisher is None or self._fisher[0] is not cache:
            ls = self.log_std_old[::k]
            with torch.no_grad():
                D = torch.cat([torch.exp(-2.0 * ls), torch.full_like(ls, 2.0)], -1)
                sub = cache if k == 1 else [(h[::k].contiguous(), None if d is None else d[::k].contiguous())
                                            for h, d in cache]
            self._fisher = (cache, sub, D if k == 1 else D * k)
        return self._fisher[1], self._fisher[2]

    def surrogate_kl(self, theta: torch.Tensor) -> tuple[float, float]:
        """Shares of eq. (12) (as L(theta') - L(theta)) and of the KL of eq. (23) at candidate theta'.
        The BS's own parameters are left as they were."""
        theta = torch.as_tensor(theta, dtype=self.dtype)
        A = self.spec.act_dim
        with torch.no_grad():
            out = mlp_forward(self.policy.body, self.obs, unflat(theta, self._pparams))
            mu, log_std = out[:, :A], out[:, A:]
            logp = gaussian_log_prob(self.a, mu, log_std)
            surr = (self.weights * (torch.exp(logp - self.logp_old) - 1.0)).sum()
            kl = gaussian_kl(self.mu_old, self.log_std_old, mu, log_std).sum()
        return float(surr), float(kl)

    def value_gradient(self, returns: np.ndarray, round_: int = 0) -> tuple[torch.Tensor, float]:
        """Critic share: (grad_phi sum_m (V(s_m) - G_m)^2, the loss sum). Policy parameters untouched.
        With ``spec.value_batches = k > 1`` the sum runs over the minibatch of critic round ``round_``:
        samples m = e, e + k, e + 2k, ... with e = round_ mod k (a forward on those rows only)."""
        G = torch.as_tensor(np.asarray(returns), dtype=self.dtype)
        k = self.spec.value_batches
        if k == 1:
            out, cache = self._value_cache()
        else:
            rows = slice(round_ % k, None, k)
            G = G[rows]
            with torch.no_grad():
                out, cache = mlp_forward_cache(self.value.body, self.obs[rows].contiguous(), self._value_params())
        with torch.no_grad():
            r = out.squeeze(-1) - G
            grads = mlp_vjp(self.value.body, cache, (2.0 * r)[:, None], self._value_params())
            grad = flat_cat([g.to(self.dtype) for g in grads])
            return grad, float((r * r).sum())

    def n_samples(self) -> int:
        return 0 if self.obs is None else int(self.obs.shape[0])
