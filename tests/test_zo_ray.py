"""Ray backend of Algorithm 1: one actor per link, d over ZeroMQ; identical to inproc in logical time."""

from __future__ import annotations

import numpy as np
import pytest

from coordinator.zo_config import ZOConfig
from coordinator.zo_train import Evaluator, Exchange, make_trainer, train
from protocol.log import MessageLog

pytestmark = pytest.mark.ray


def _cfg(**algo) -> ZOConfig:
    return ZOConfig().replace(algo={"b1": 10, "b2": 10, **algo},
                              run={"iterations": 5, "eval_every": 5, "eval_sequences": 2, "eval_slots": 5})


@pytest.mark.parametrize("algo", [
    {},
    {"update": "async", "asynchrony": 40.0, "delay_kind": "uniform", "jitter": 2.0, "drop_prob": 0.2},
    {"update": "graph", "graph": "random", "asynchrony": 20.0, "delay": 1.0},
])
def test_inproc_equals_ray_in_logical_time(ray_session, algo):
    from coordinator.zo_ray import RayLinks

    cfg = _cfg(**algo)
    ex_a, ex_b = Exchange(), Exchange()
    a = make_trainer(cfg, MessageLog(None), ex_a)
    train(cfg, a, Evaluator(cfg), cfg.run.iterations)
    log_b = MessageLog(None)
    links = RayLinks(cfg, log_b, ex_b)
    try:
        b = make_trainer(cfg, log_b, ex_b, links)
        train(cfg, b, Evaluator(cfg), cfg.run.iterations)
    finally:
        links.close()
    for x, y in zip(a.thetas(), b.thetas(), strict=True):
        assert np.array_equal(x, y)
    assert (ex_a.messages, ex_a.scalars, ex_a.bytes) == (ex_b.messages, ex_b.scalars, ex_b.bytes)
