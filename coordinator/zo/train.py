"""One zeroth-order run, any method: the trainer of ``run.method`` (:func:`make_trainer`), the held-out
evaluation (:class:`Evaluator`) and the loop that reports metric rows and checkpoints (:func:`train`)."""

from __future__ import annotations

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
    """Run ``trainer`` until ``iterations`` and report metric rows; returns the last row."""
    B = cfg.algo.b1 + cfg.algo.b2
    row: dict[str, Any] = {}
    t0 = time.perf_counter()
    while trainer.iteration < iterations:
        trainer.run_iteration()
        it = trainer.iteration
        if it % cfg.run.eval_every == 0 or it == iterations:
            ex = trainer.exchange
            row = {"iteration": it, "samples": it * B, "sum_rate": evaluator(trainer.thetas()),
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
