"""Policy update rules on the mean policy gradient g of eq. (18): TRPO (paper 1, eqs. (19)-(23)) and the A2C
baseline (a fixed RMSprop step, paper 1 Fig. 9). A rule is pure math: it gets g, the agents' summed
Fisher-vector product ``fvp(v)`` (eq. (19), no damping) and ``surrogate_kl(theta')`` (eqs. (22), (23)) as
functions, and returns the new parameters and its diagnostics; the sampling, the advantages, the critic and
the messages are the trainer's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from coordinator.trpo.config import TrpoConfig
from coordinator.trpo.optim import line_search, trpo_step

Fvp = Callable[[torch.Tensor], torch.Tensor]
SurrogateKL = Callable[[torch.Tensor], tuple[float, float]]


class UpdateRule(Protocol):
    """How the policy moves given the mean policy gradient ``g``."""

    checkpoint_key: str | None   # where its state goes in a checkpoint (None: it has none)

    def step(self, theta: torch.Tensor, g: torch.Tensor, fvp: Fvp, surrogate_kl: SurrogateKL
             ) -> tuple[torch.Tensor, dict[str, float]]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, st: dict[str, Any]) -> None: ...
    def moments(self) -> list[tuple[str, torch.Tensor]]: ...


class TRPOUpdate:
    """Conjugate gradient on the Fisher-vector products plus damping, the step of eq. (20) and the
    backtracking line search of eqs. (21)-(23)."""

    checkpoint_key = None

    def __init__(self, cfg: TrpoConfig) -> None:
        self.cfg = cfg

    def step(self, theta: torch.Tensor, g: torch.Tensor, fvp: Fvp, surrogate_kl: SurrogateKL
             ) -> tuple[torch.Tensor, dict[str, float]]:
        p = self.cfg

        def damped(v: torch.Tensor) -> torch.Tensor:   # eq. (19) + damping
            return fvp(v) + p.cg_damping * v

        step, cg, _ = trpo_step(g, damped, p.delta, p.cg_iters, p.cg_tol)   # eq. (20)
        ls = line_search(theta, step, surrogate_kl, p.delta, p.zeta, p.max_backtracks)
        return ls.theta, {"kl": ls.kl, "surrogate": ls.surrogate, "backtracks": ls.backtracks,
                          "ls_success": int(ls.accepted), "cg_residual": cg.residual, "cg_iters": cg.iterations,
                          "step_norm": float(step.norm())}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        pass

    def moments(self) -> list[tuple[str, torch.Tensor]]:
        return []


def clip_grad_norm(g: torch.Tensor, max_norm: float) -> tuple[torch.Tensor, float]:
    """(g scaled to norm ``max_norm`` when ||g|| > max_norm, else g itself; ||g||) -- the clipping of
    torch.nn.utils.clip_grad_norm_ (SB3's A2C: 0.5) on the one flat vector, without its 1e-6 in the
    denominator (it only guards ||g|| = 0, never clipped here). ``max_norm`` 0: off (g as it is)."""
    norm = float(torch.linalg.vector_norm(g))
    if max_norm > 0 and norm > max_norm:
        return g * (max_norm / norm), norm
    return g, norm


class A2CUpdate:
    """theta <- RMSprop step on -g (lr ``trpo.a2c_lr``, alpha 0.99, eps 1e-5), no trust region; with
    ``trpo.a2c_max_grad_norm`` > 0, g is first clipped to that norm (:func:`clip_grad_norm`), as A2C
    implementations do. The surrogate and KL of the step are measured on the batch for the diagnostics,
    and ``grad_norm`` is ||g|| before clipping."""

    checkpoint_key = "a2c_opt"

    def __init__(self, theta: torch.Tensor, lr: float, max_grad_norm: float = 0.0) -> None:
        self.pol = torch.nn.Parameter(theta.clone())
        self.opt = torch.optim.RMSprop([self.pol], lr=lr, alpha=0.99, eps=1e-5)
        self.max_grad_norm = max_grad_norm

    def step(self, theta: torch.Tensor, g: torch.Tensor, fvp: Fvp, surrogate_kl: SurrogateKL
             ) -> tuple[torch.Tensor, dict[str, float]]:
        g, grad_norm = clip_grad_norm(g, self.max_grad_norm)
        with torch.no_grad():
            self.pol.copy_(theta)
        self.opt.zero_grad()
        self.pol.grad = -g.to(self.pol.dtype)
        self.opt.step()
        new_theta = self.pol.detach().clone()
        surr, kl = surrogate_kl(new_theta)
        return new_theta, {"kl": kl, "surrogate": surr, "backtracks": 0, "ls_success": 1, "cg_residual": 0.0,
                           "cg_iters": 0, "grad_norm": grad_norm}

    def state_dict(self) -> dict[str, Any]:
        return self.opt.state_dict()

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.opt.load_state_dict(st)

    def moments(self) -> list[tuple[str, torch.Tensor]]:
        """The optimiser's running averages (checked for NaN / inf with the parameters)."""
        return [("the A2C RMSprop average of g^2", s["square_avg"]) for s in self.opt.state.values()
                if "square_avg" in s]


def update_rule(algo: str, cfg: TrpoConfig, theta: torch.Tensor) -> UpdateRule:
    """The rule of ``run.algo`` ('trpo' | 'a2c')."""
    return A2CUpdate(theta, cfg.a2c_lr, cfg.a2c_max_grad_norm) if algo == "a2c" else TRPOUpdate(cfg)
