"""The coordinator's numerical core of finite-horizon TRPO (paper 1, Sec. III-B/C). Tensor in, tensor out.
(The BS's shares of eqs. (18), (19), (22), (23) are :mod:`bs_agent.trpo.base_station`.)

    g      = 1/(MN) sum_m sum_n gamma^n  grad log pi(a|s) A(s, a)                      eq. (18)
    F v    = Hessian of the mean KL(pi_old || pi_theta) at theta_old, times v          eq. (15)/(19)
    x      = F^-1 g  by conjugate gradient
    dtheta = sqrt(2 delta / (x^T F x)) x                                               eq. (20)
    theta' = theta + zeta^j dtheta,  j = 0, 1, ...   until  L(theta') >= 0, KL <= delta   eqs. (21)-(23)

(eq. 20 writes g^T F^-1 g; with an exact solve x^T F x = g^T x. We use x^T F x so that the
quadratic model of the KL equals delta exactly after scaling, whatever CG's residual.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


# ---------------------------------------------------------------- the round-robin's orders
def random_positions(rng: np.random.Generator, M: int, B: int) -> np.ndarray:
    """[M, B] position[m, b] = step of BS b in slot m's random order (a permutation per slot)."""
    order = np.argsort(rng.random((M, B)), axis=1)     # order[m, n] = BS acting at step n
    pos = np.empty_like(order)
    np.put_along_axis(pos, order, np.arange(B)[None, :].repeat(M, 0), axis=1)
    return pos


# ---------------------------------------------------------------- conjugate gradient
@dataclass(frozen=True)
class CGResult:
    x: torch.Tensor
    residual: float          # ||b - A x|| at exit
    iterations: int
    Ax: torch.Tensor | None = None   # A x accumulated alongside x (sum_k alpha_k A p_k): no extra product


def conjugate_gradient(Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10,
                       tol: float = 1e-10) -> CGResult:
    """Solve A x = b for symmetric positive-definite A given only x -> A x (Hestenes-Stiefel CG)."""
    x = torch.zeros_like(b)
    Ax = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    tmp = torch.empty_like(b)
    rr = torch.dot(r, r)
    k = 0
    for k in range(1, iters + 1):  # noqa: B007
        if float(rr) <= tol:
            k -= 1
            break
        Ap = Avp(p)
        alpha = rr / torch.dot(p, Ap)
        # in place, the same roundings as x + alpha p, Ax + alpha Ap, r - alpha Ap, r + beta p
        x.add_(torch.mul(p, alpha, out=tmp))
        torch.mul(Ap, alpha, out=tmp)
        Ax.add_(tmp)
        r.sub_(tmp)
        rr_new = torch.dot(r, r)
        p.mul_(rr_new / rr).add_(r)
        rr = rr_new
    return CGResult(x, float(torch.sqrt(rr)), k, Ax)


def trpo_step(g: torch.Tensor, Fvp: Callable[[torch.Tensor], torch.Tensor], delta: float, cg_iters: int,
              cg_tol: float = 1e-10) -> tuple[torch.Tensor, CGResult, float]:
    """Full step of eq. (20): (dtheta, CG result, x^T F x). Zero step if the gradient vanishes.
    F x comes from CG's own products (F is linear: F sum_k alpha_k p_k = sum_k alpha_k F p_k), so the
    scaling costs no extra Fisher-vector product."""
    cg = conjugate_gradient(Fvp, g, cg_iters, cg_tol)
    xFx = float(torch.dot(cg.x, cg.Ax))
    if not math.isfinite(xFx) or xFx <= 0.0:
        return torch.zeros_like(g), cg, xFx
    return math.sqrt(2.0 * delta / xFx) * cg.x, cg, xFx


# ---------------------------------------------------------------- line search
@dataclass(frozen=True)
class LineSearchResult:
    theta: torch.Tensor
    accepted: bool
    backtracks: int          # j of the accepted step (or the number tried when none was accepted)
    surrogate: float         # L(theta') - L(theta) at the returned theta (0 when restored)
    kl: float                # mean KL at the returned theta (0 when restored)


def line_search(theta: torch.Tensor, full_step: torch.Tensor,
                evaluate: Callable[[torch.Tensor], tuple[float, float]], delta: float, zeta: float = 0.9,
                max_backtracks: int = 10) -> LineSearchResult:
    """Backtracking of eqs. (21)-(23): theta' = theta + zeta^j full_step for j = 0, 1, ..., the first
    with surrogate L(theta') >= 0 and KL <= delta; if none, the OLD parameters are returned
    unchanged (the very same tensor values). ``evaluate(theta') -> (surrogate, kl)``."""
    for j in range(max_backtracks):
        cand = theta + (zeta ** j) * full_step
        surr, kl = evaluate(cand)
        if math.isfinite(surr) and math.isfinite(kl) and surr >= 0.0 and kl <= delta:
            return LineSearchResult(cand, True, j, surr, kl)
    return LineSearchResult(theta.clone(), False, max_backtracks, 0.0, 0.0)


# ---------------------------------------------------------------- returns / advantages
def end_of_episode_returns(reward: np.ndarray, position: np.ndarray, horizon: int, gamma: float) -> np.ndarray:
    """Discounted return-to-go when the only reward R arrives at the end of the episode:
    step n (0-based) of an N-step episode has G_n = gamma^(N-1-n) R (intermediate rewards 0).
    ``reward`` [M], ``position`` [M, ...] step index of each sample -> [M, ...]."""
    reward = np.asarray(reward, dtype=np.float64)
    position = np.asarray(position)
    expo = (horizon - 1 - position).astype(np.float64)
    return (gamma ** expo) * reward.reshape(reward.shape + (1,) * (position.ndim - 1))


def silenced_sum_rates(rate: Callable[[np.ndarray], np.ndarray], frac: np.ndarray, K: int,
                       position: np.ndarray | None = None) -> np.ndarray:
    """[M, B] the sum-rate of each slot with BS b's power fractions set to 0 (``trpo.credit=difference``): with
    ``position`` [M, B] (the round-robin's step of every BS), its successors' (position > b's) too, since they
    saw b's powers; every other power as sampled. ``rate`` maps fractions [M, L] to sum-rates [M]. Column b does
    not depend on BS b's own action, so R - column b is an unbiased return for b's policy gradient."""
    M, L = frac.shape
    B = L // K
    out = np.empty((M, B))
    for b in range(B):
        off = np.zeros((M, B), dtype=bool)
        off[:, b] = True
        if position is not None:
            off |= position >= position[:, b:b + 1]
        out[:, b] = rate(np.where(np.repeat(off, K, axis=1), 0.0, frac))
    return out


def credit_returns(reward: np.ndarray, silenced: np.ndarray | None, positions: Sequence[np.ndarray], horizon: int,
                   gamma: float) -> list[np.ndarray]:
    """Each agent's discounted returns (:func:`end_of_episode_returns`) of the common reward R [M], or with
    ``silenced`` [M, B] (``trpo.credit`` other than common) of agent b's difference R - silenced[:, b]."""
    credit = [reward] * len(positions) if silenced is None else [reward - silenced[:, b] for b in range(len(positions))]
    return [end_of_episode_returns(r, n, horizon, gamma) for r, n in zip(credit, positions, strict=True)]


def step_weights(position: np.ndarray, gamma: float) -> np.ndarray:
    """gamma^n' of eq. (18)/(12) for 0-based step index n = n' - 1."""
    return gamma ** (np.asarray(position, dtype=np.float64) + 1.0)
