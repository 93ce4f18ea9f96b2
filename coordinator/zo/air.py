"""The air of paper 2's N-link network: the channel process and the slot-by-slot physics.

The air owns the channel process (G = c_l h^2, h ~ N(0, 1) i.i.d. per slot, paper 2 Sec. IV) and
the powers in force. Every link's transmitter applies its policy in force at that slot to its
local measurements (channel of the slot, powers of the previous slot), so the powers of slot t
depend on those of slot t-1: slots are computed in order, vectorised over links, a whole segment
(up to the next moment some link switches parameters) per call — never one call per slot.

Each link reports the rate it got in every slot (its utility is computed from it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bs_agent.zo.policy import MLPSpec, forward_stacked, forward_stacked_torch
from radio.channels import Scenario
from radio.rates import LN2, sum_rate
from radio.seeding import ZoStream, rng_for

BLOCK = 256   # slots drawn per channel block (the stream does not depend on how it is consumed)


class Air:
    """Channel process plus powers-in-force of all links (logical slots 0, 1, 2, ...).

    scenario  a 'links' :class:`radio.channels.Scenario` (N, sigma^2, p_max, path losses)
    specs     [N] policy architecture of each link
    thetas    [N] initial parameter vectors in force
    """

    def __init__(self, scenario: Scenario, specs: list[MLPSpec], thetas: list[np.ndarray], root_seed: int):
        self.scenario = scenario
        self.L = scenario.L
        self.noise_w = scenario.noise_w
        self.p_max_w = np.full(self.L, scenario.p_max_w)
        self.rng = rng_for(root_seed, ZoStream.AIR)
        self.groups: list[tuple[MLPSpec, np.ndarray]] = []
        by_spec: dict[MLPSpec, list[int]] = {}
        for i, sp in enumerate(specs):
            by_spec.setdefault(sp, []).append(i)
        self.row: dict[int, tuple[int, int]] = {}
        self.stacks: list[np.ndarray] = []
        for g, (sp, ix) in enumerate(by_spec.items()):
            self.groups.append((sp, np.asarray(ix)))
            self.stacks.append(np.stack([np.asarray(thetas[i], dtype=np.float64) for i in ix]))
            for r, i in enumerate(ix):
                self.row[i] = (g, r)
        self.t = 0
        self.p_prev = self.p_max_w.copy()          # powers of slot t-1 (max power before slot 0)
        self._block = np.empty((0, self.L, self.L))
        self._block_t0 = 0
        self.last_gains = np.empty((0, self.L, self.L))   # G of the last advance() [S, N, N]

    # ---- parameters in force ----
    def set_theta(self, i: int, theta: np.ndarray) -> None:
        g, r = self.row[i]
        self.stacks[g][r] = theta

    def theta(self, i: int) -> np.ndarray:
        g, r = self.row[i]
        return self.stacks[g][r].copy()

    # ---- channels ----
    def gains(self, t0: int, t1: int) -> np.ndarray:
        """[t1 - t0, N, N] channel gains of slots [t0, t1); t0 must be the next unread slot or later
        slots of the current block (the stream is consumed once, in order)."""
        out = []
        t = t0
        while t < t1:
            end = self._block_t0 + self._block.shape[0]
            if t >= end:
                self._block_t0 = end
                self._block = self.scenario.sample(BLOCK, self.rng).G
                continue
            take = min(t1, end) - t
            out.append(self._block[t - self._block_t0: t - self._block_t0 + take])
            t += take
        return np.concatenate(out) if out else np.empty((0, self.L, self.L))

    def powers(self, s: np.ndarray) -> np.ndarray:
        """[..., N] powers in W from the states [..., N, m] and the parameters in force."""
        p = np.empty(s.shape[:-1])
        for (spec, ix), th in zip(self.groups, self.stacks, strict=False):
            p[..., ix] = forward_stacked(spec, th, s[..., ix, :])
        return p * self.p_max_w

    def advance(self, t_end: int, powers_out: np.ndarray | None = None) -> np.ndarray:
        """Run slots [t, t_end) with the parameters in force; returns the rates [t_end - t, N]
        (and the powers in ``powers_out`` [t_end - t, N] if given)."""
        n = t_end - self.t
        if n <= 0:
            return np.empty((0, self.L))
        G = self.last_gains = self.gains(self.t, t_end)
        rates, self.p_prev = run_slots(G, self.p_prev, self.groups, self.stacks, self.noise_w, self.p_max_w,
                                       powers_out)
        self.t = t_end
        return rates

    # ---- checkpoint ----
    def state(self) -> dict[str, Any]:
        return {"t": self.t, "p_prev": self.p_prev.copy(), "rng": self.rng.bit_generator.state,
                "block": self._block.copy(), "block_t0": self._block_t0,
                "stacks": [s.copy() for s in self.stacks]}

    def load_state(self, st: dict[str, Any]) -> None:
        self.t = int(st["t"])
        self.p_prev = np.asarray(st["p_prev"], dtype=np.float64).copy()
        self.rng.bit_generator.state = st["rng"]
        self._block = np.asarray(st["block"], dtype=np.float64).copy()
        self._block_t0 = int(st["block_t0"])
        self.stacks = [np.asarray(s, dtype=np.float64).copy() for s in st["stacks"]]


def block_diag_layers(spec: MLPSpec, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Layers of a group of links as one block-diagonal affine map per layer:
    theta [g, n] -> [(W^T [g*in, g*out], b [g*out])], so that a whole group is one matmul."""
    out = []
    for W, b in spec.unflatten(theta):
        g, o, i = W.shape
        WT = np.zeros((g * i, g * o))
        for r in range(g):
            WT[r * i:(r + 1) * i, r * o:(r + 1) * o] = W[r].T
        out.append((WT, b.reshape(g * o).copy()))
    return out


def run_slots(G: np.ndarray, p_prev: np.ndarray, groups: list[tuple[MLPSpec, np.ndarray]],
              stacks: list[np.ndarray], noise_w: float, p_max_w: np.ndarray,
              powers_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The slot recursion p(t) = phi(s(G(t), p(t-1))) over G [S, ..., N, N] (any batch dims).

    Same numbers (to rounding) as :func:`bs_agent.zo.policy.local_states` + ``forward_stacked`` +
    ``link_rates`` slot by slot, with the per-slot work cut to a few vector operations (each group
    of links is one block-diagonal matmul per layer). Returns the per-link rates [S, ..., N]
    (bit/s/Hz) and the powers of the last slot [..., N]; ``powers_out`` [S, ..., N], if given,
    receives the powers of every slot.
    """
    S = G.shape[0]
    L = G.shape[-1]
    m = L + 2
    batch = G.shape[1:-2]
    off = ~np.eye(L, dtype=bool)
    direct = np.einsum("...ll->...l", G)                                             # [S, .., L]
    g_caused = np.swapaxes(G, -1, -2)[..., off].reshape(*G.shape[:-1], L - 1) / noise_w  # G_ji/s2
    x_direct = np.log10(1.0 + direct * p_max_w / noise_w)
    inputs, pooled = groups[0][0].inputs, groups[0][0].caused == "sum"
    if any(sp.inputs != inputs or sp.caused != groups[0][0].caused for sp, _ix in groups):
        raise ValueError("run_slots: every link's policy needs the same inputs and caused")
    if pooled:
        g_caused = g_caused.sum(-1, keepdims=True)                  # sum_j G_ji / s2 [S, .., L, 1]
    x_caused = np.log10(1.0 + g_caused * p_max_w[..., None]) if inputs == "memoryless" else None
    c1 = 2 if pooled else L                                         # caused block in use: x[..., 1:c1]
    inv_pmax = 1.0 / p_max_w
    single = len(groups) == 1 and np.array_equal(groups[0][1], np.arange(L))
    layers = [(ix, block_diag_layers(spec, th), spec) for (spec, ix), th in zip(groups, stacks, strict=False)]
    P = np.empty(G.shape[:-1]) if powers_out is None else powers_out
    p = np.broadcast_to(p_prev, G.shape[1:-1]).copy()
    x = np.empty(batch + (L, m))
    x[..., c1:L] = 0.0                                              # pooled: the unused caused entries
    q = np.empty(batch + (L,))
    for s in range(S):
        Gs = G[s]
        rx = (Gs @ p[..., None])[..., 0] if batch else Gs @ p
        x[..., 0] = np.log10(2.0 + (rx - direct[s] * p) / noise_w)     # log10(1 + R_i / s2)
        if x_caused is None:
            x[..., 1:c1] = np.log10(1.0 + g_caused[s] * p[..., None])  # log10(1 + T_ij / s2)
            x[..., L + 1] = p * inv_pmax                                # previous power / p_max
        else:
            x[..., 1:c1] = x_caused[s]                                  # log10(1 + G_ji p_max / s2)
            x[..., L + 1] = 0.0
        x[..., L] = x_direct[s]                                         # log10(1 + G_ii p_max / s2)
        for ix, lay, spec in layers:
            h = spec.normalise(x if single else x[..., ix, :]).reshape(batch + (-1,))
            for li, (WT, b) in enumerate(lay):
                h = h @ WT + b
                if li < len(lay) - 1:
                    h = np.tanh(h)
            h = spec.squash(h)
            if single:
                q = h
            else:
                q[..., ix] = h
        p = p_max_w / (1.0 + np.exp(-q))
        P[s] = p
    own = direct * P
    rx = np.einsum("s...lj,s...j->s...l", G, P)
    rates = np.log1p(own / (rx - own + noise_w)) / LN2
    return rates, p


# ---------------------------------------------------------------- evaluation (no perturbation)

def eval_gains(scenario: Scenario, root_seed: int, sequences: int, slots: int) -> np.ndarray:
    """[slots, sequences, N, N] fixed evaluation channels (own seeded stream)."""
    rng = rng_for(root_seed, ZoStream.EVAL)
    G = scenario.sample(slots * sequences, rng).G
    return G.reshape(slots, sequences, scenario.L, scenario.L)


def rollout_sum_rate(specs: list[MLPSpec], thetas: list[np.ndarray], G: np.ndarray, noise_w: float,
                     p_max_w: float, warmup: int = 0) -> float:
    """Mean sum-rate (bit/s/Hz) of the policies over independent sequences G [slots, E, N, N],
    each starting from max power; the first ``warmup`` slots are not counted."""
    L = G.shape[-1]
    groups: dict[MLPSpec, list[int]] = {}
    for i, sp in enumerate(specs):
        groups.setdefault(sp, []).append(i)
    gl = [(sp, np.asarray(ix)) for sp, ix in groups.items()]
    stacks = [np.stack([np.asarray(thetas[i], dtype=np.float64) for i in ix]) for _sp, ix in gl]
    pmax = np.full(L, p_max_w)
    rates, _ = run_slots(G, pmax, gl, stacks, noise_w, pmax)
    return float(rates[warmup:].sum(axis=-1).mean())


def max_power_sum_rate(G: np.ndarray, noise_w: float, p_max_w: float) -> float:
    """Mean sum-rate of max power on the same channels."""
    flat = G.reshape(-1, G.shape[-2], G.shape[-1])
    return float(sum_rate(flat, np.full(flat.shape[:2], p_max_w), noise_w).mean())


def batch_sum_rate_torch(specs: list[MLPSpec], thetas: list, G, states, noise_w: float, p_max_w: float):
    """Differentiable mean sum-rate of the policies over slots G [S, N, N] (torch) with their
    measured inputs ``states`` [S, N, m] held fixed: the exact gradient of the batch sum-rate
    through every policy given what each link measured (the p(t-1) inputs are not differentiated)."""
    import torch

    from radio.rates import sum_rate_torch

    L = G.shape[-1]
    groups: dict[MLPSpec, list[int]] = {}
    for i, sp in enumerate(specs):
        groups.setdefault(sp, []).append(i)
    cols: list = [None] * L
    for sp, ix in groups.items():
        q = forward_stacked_torch(sp, torch.stack([thetas[i] for i in ix]), states[..., ix, :])
        for c, i in enumerate(ix):
            cols[i] = q[..., c]
    p = torch.stack(cols, dim=-1) * p_max_w
    return sum_rate_torch(G, p, noise_w).mean()


def threshold_sum_rate(G: np.ndarray, noise_w: float, p_max_w: float, tau: float) -> float:
    """Mean sum-rate (bit/s/Hz) of the on/off policy p_i = p_max [G_ii > tau] over G [..., N, N]: each
    link looks at its own direct gain only (a one-parameter local policy; a reference, not a method)."""
    flat = G.reshape(-1, G.shape[-2], G.shape[-1])
    direct = np.einsum("sll->sl", flat)
    return float(sum_rate(flat, p_max_w * (direct > tau), noise_w).mean())


def best_direct_threshold(G_fit: np.ndarray, noise_w: float, p_max_w: float,
                          taus: np.ndarray | None = None) -> float:
    """The tau of :func:`threshold_sum_rate` with the highest mean sum-rate on G_fit (grid search)."""
    grid = np.linspace(0.0, 6.0, 121) if taus is None else taus
    vals = [threshold_sum_rate(G_fit, noise_w, p_max_w, float(t)) for t in grid]
    return float(grid[int(np.argmax(vals))])
