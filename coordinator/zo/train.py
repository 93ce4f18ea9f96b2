"""One zeroth-order run, any method: the trainer of ``run.method`` (:func:`make_trainer`), the held-out
evaluation (:class:`Evaluator`) and the loop that reports metric rows and checkpoints (:func:`train`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from coordinator.config import ConfigError
from coordinator.zo.air import eval_gains, max_power_sum_rate, rollout_sum_rate
from coordinator.zo.config import ZOConfig, scenario, specs
from coordinator.zo.first_order import FirstOrder
from coordinator.zo.links import Exchange, InprocLinks, LinksBackend
from coordinator.zo.proposed import ZOProposed
from coordinator.zo.realtime import RealTimeProposed
from protocol.log import MessageLog


class Evaluator:
    """Sum-rate of the unperturbed policies on fixed held-out channel sequences, and max power."""

    def __init__(self, cfg: ZOConfig):
        self.cfg = cfg
        self.G = eval_gains(scenario(cfg), cfg.run.seed, cfg.run.eval_sequences, cfg.run.eval_slots)
        self.specs = specs(cfg)
        self.max_power = max_power_sum_rate(self.G, cfg.scenario.noise_w, cfg.scenario.p_max_w)

    def __call__(self, thetas: list[np.ndarray]) -> float:
        return rollout_sum_rate(self.specs, thetas, self.G, self.cfg.scenario.noise_w, self.cfg.scenario.p_max_w)


class Diverged(ArithmeticError):
    """A policy parameter or a sum-rate of iteration ``iteration`` is NaN or inf: the run cannot go on. Raised by
    :func:`train` before that iteration's row or checkpoint is written (the form of
    :class:`coordinator.trpo.trainer.Diverged`, kept here so that a zeroth-order run needs no torch)."""

    def __init__(self, iteration: int, quantity: str, detail: str) -> None:
        self.iteration, self.quantity, self.detail = iteration, quantity, detail
        super().__init__(f"diverged at iteration {iteration}: {quantity} {detail}")


def check_finite(trainer, iteration: int, measured: bool) -> None:
    """Raise :class:`Diverged` if a link's parameters theta_i (the unperturbed ones, already held by the
    driver) or the last training sum-rate hold NaN or inf (``measured``: a sum-rate has been measured before;
    until then it is NaN by convention)."""
    for i, th in enumerate(trainer.thetas()):
        if not np.isfinite(th).all():
            raise Diverged(iteration, f"the parameters theta_{i} of link {i}",
                           f"have {int((~np.isfinite(th)).sum())} of {th.size} entries NaN or inf")
    x = trainer.last_sum_rate
    if not math.isfinite(x) and (measured or not math.isnan(x)):
        raise Diverged(iteration, "the training sum-rate", f"is {x}")


def make_trainer(cfg: ZOConfig, log: MessageLog, exchange: Exchange, links: LinksBackend | None = None):
    """The trainer of ``cfg.run.method`` (links backend defaults to in-process)."""
    if cfg.run.method == "proposed" and cfg.run.clock == "real":
        if links is None:
            raise ConfigError("run.clock=real needs run.backend=ray (links as actors on the wall clock)")
        return RealTimeProposed(cfg, links, exchange)  # type: ignore[arg-type]
    if cfg.run.method == "proposed":
        return ZOProposed(cfg, links if links is not None else InprocLinks(cfg, log, exchange), exchange)
    return FirstOrder(cfg, log, exchange, fl=cfg.run.method == "fl")


def train(cfg: ZOConfig, trainer, evaluator: Evaluator, iterations: int,
          on_row: Callable[[dict[str, Any]], None] | None = None,
          on_checkpoint: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run ``trainer`` until ``iterations`` and report metric rows; returns the last row. Raises
    :class:`Diverged` at the first iteration whose parameters or sum-rates are NaN or inf (its row and
    checkpoint not written)."""
    B = cfg.algo.b1 + cfg.algo.b2
    row: dict[str, Any] = {}
    t0 = time.perf_counter()
    measured = math.isfinite(trainer.last_sum_rate)
    while trainer.iteration < iterations:
        trainer.run_iteration()
        it = trainer.iteration
        check_finite(trainer, it, measured)
        measured = measured or math.isfinite(trainer.last_sum_rate)
        if it % cfg.run.eval_every == 0 or it == iterations:
            ex = trainer.exchange
            held_out = evaluator(trainer.thetas())
            if not math.isfinite(held_out):
                raise Diverged(it, "the held-out sum-rate", f"is {held_out}")
            row = {"iteration": it, "samples": it * B, "sum_rate": held_out,
                   "max_power": evaluator.max_power, "train_sum_rate": trainer.last_sum_rate,
                   "messages": ex.messages, "scalars": ex.scalars, "bytes": ex.bytes, "dropped": ex.dropped,
                   **trainer.diagnostics(), "seconds": time.perf_counter() - t0}
            if on_row is not None:
                on_row(row)
        if on_checkpoint is not None and (it % cfg.run.checkpoint_every == 0 or it == iterations):
            on_checkpoint(it)
    trainer.finish()
    if row and hasattr(trainer, "unreceived"):      # real clock: d never received within the drain
        row["unreceived_d"] = float(trainer.unreceived)
    return row
