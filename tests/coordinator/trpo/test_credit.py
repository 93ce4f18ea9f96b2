"""trpo.credit=difference: each BS's return is R minus the sum-rate with its own powers (and, in the round-robin,
its successors') set to 0. Checked: the silenced sum-rates by hand and against radio with the links removed, that
column b never depends on BS b's own action nor on what its successors saw, that the policy gradient keeps its
expectation with less noise from batch to batch, and that the config refuses it where one agent acts alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coordinator.config import ConfigError
from coordinator.trpo.backend import make_backend
from coordinator.trpo.config import TrainConfig, check_feasible
from coordinator.trpo.critic import shares_sum
from coordinator.trpo.optim import credit_returns, silenced_sum_rates, step_weights
from coordinator.trpo.trainer import Trainer
from deploy.config import load_config
from radio.rates import sum_rate

NOISE = 1.0


def _rate_of(G: np.ndarray):
    return lambda f: sum_rate(G, f, NOISE)      # fractions as watts: Pmax = 1 W


def test_two_cells_by_hand():
    """2 cells, K = 1: G = [[4, 1], [2, 8]] (G[l, j]: the BS of link j to user l), powers 1 and 0.5."""
    G = np.array([[[4.0, 1.0], [2.0, 8.0]]])
    frac = np.array([[1.0, 0.5]])
    r0 = np.log2(1 + 4.0 / (1 + 0.5))       # user 0: signal 4, interference 1 x 0.5
    r1 = np.log2(1 + 4.0 / (1 + 2.0))       # user 1: signal 8 x 0.5, interference 2 x 1
    assert sum_rate(G, frac, NOISE)[0] == pytest.approx(r0 + r1)
    got = silenced_sum_rates(_rate_of(G), frac, K=1)
    np.testing.assert_allclose(got, [[np.log2(1 + 4.0), np.log2(1 + 4.0)]])   # the other alone, no interference
    # round-robin, BS 1 first then BS 0: silencing BS 1 silences its successor BS 0 too
    got = silenced_sum_rates(_rate_of(G), frac, K=1, position=np.array([[1, 0]]))
    np.testing.assert_allclose(got, [[np.log2(1 + 4.0), 0.0]])


def _random_problem(rng: np.random.Generator, M: int, B: int, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    L = B * K
    G = rng.exponential(size=(M, L, L)) + 5.0 * np.eye(L)
    frac = rng.random((M, L))
    position = np.argsort(rng.random((M, B)), axis=1).argsort(axis=1)
    return G, frac, position


@pytest.mark.parametrize("round_robin", [False, True])
def test_column_b_does_not_depend_on_b_nor_on_its_successors(round_robin):
    rng = np.random.default_rng(0)
    M, B, K = 64, 4, 3
    G, frac, position = _random_problem(rng, M, B, K)
    pos = position if round_robin else None
    base = silenced_sum_rates(_rate_of(G), frac, K, pos)
    for b in range(B):
        moved = frac.copy()
        acts_after = (position >= position[:, b:b + 1]) if round_robin else np.eye(B, dtype=bool)[b][None, :]
        mask = np.repeat(np.broadcast_to(acts_after, (M, B)), K, axis=1)
        moved[mask] = rng.random(int(mask.sum()))      # b's own powers (and its successors') redrawn
        np.testing.assert_array_equal(silenced_sum_rates(_rate_of(G), moved, K, pos)[:, b], base[:, b])
        before = ~np.repeat(np.broadcast_to(acts_after, (M, B)), K, axis=1)
        other = frac.copy()
        other[before] = rng.random(int(before.sum()))  # the powers b's column keeps: it must see them
        assert not np.allclose(silenced_sum_rates(_rate_of(G), other, K, pos)[:, b], base[:, b])


def test_silenced_rates_match_radio_with_the_links_removed():
    """Independent check: silencing BS b equals radio's sum-rate of the network without b's links."""
    rng = np.random.default_rng(1)
    M, B, K = 16, 3, 2
    G, frac, _ = _random_problem(rng, M, B, K)
    got = silenced_sum_rates(_rate_of(G), frac, K)
    for b in range(B):
        keep = np.array([c // K != b for c in range(B * K)])
        want = sum_rate(G[:, keep][:, :, keep], frac[:, keep], NOISE)
        np.testing.assert_allclose(got[:, b], want, rtol=1e-12)


SMALL = ["scenario.kind=7cell", "scenario.users_per_cell=2", "scenario.alpha=4.0", "policy.hidden=8",
         "policy.layers=1", "policy.init_log_std=-0.5", "trpo.value_epochs=0", "run.backend=inproc",
         "run.scheme=full"]


def _gradients(credit: str, M: int, batches: int, extra: list[str]) -> torch.Tensor:
    """[batches, n] the policy gradient g of eq. (18) at the initial policy on successive batches of M slots, as
    the trainer forms it. The credit changes no random draw: both credits see the same slots and actions."""
    cfg = load_config(TrainConfig, None, SMALL + extra + [f"trpo.episodes={M}", f"trpo.credit={credit}"])
    tr = Trainer(cfg, make_backend(cfg))
    out = []
    for _ in range(batches):
        R, position, silenced = tr._sample(0)
        pos = tr._positions(position, M)
        returns = credit_returns(R, silenced, pos, tr.N, cfg.trpo.gamma)
        shares = tr.agents.start_learning(returns, [step_weights(n, cfg.trpo.gamma) for n in pos])
        out.append(shares_sum([x for x, _ in shares]) / float(M * tr.N))
    tr.backend.close()
    return torch.stack(out)


@pytest.mark.parametrize("extra,M", [(["scenario.kind=3cell", "scenario.users_per_cell=1"], 2000),
                                     (["scenario.users_per_cell=2"], 1000)])
def test_difference_credit_keeps_the_gradients_expectation(extra, M):
    """On the same slots and actions, the mean gradient over 8 batches points the same way with either return
    (measured: cosine 0.9998 on 3 cells x 1 user, 0.966 on 7 x 2, where the common return's noise is left)."""
    common, diff = _gradients("common", M, 8, extra).mean(0), _gradients("difference", M, 8, extra).mean(0)
    assert float(torch.nn.functional.cosine_similarity(common, diff, dim=0)) > 0.9


def test_difference_credit_cuts_the_gradients_noise_on_seven_cells():
    """7 cells x 8 users, M = 500 (the 7-cell runs' batch): the spread of the batch gradient around its mean is
    measured 0.31 with the common return, larger than the mean itself (0.12), and 0.06 with the difference."""
    spread = {}
    for credit in ("common", "difference"):
        g = _gradients(credit, 500, 8, ["scenario.users_per_cell=8"])
        spread[credit] = float((g - g.mean(0)).norm(dim=1).mean())
    assert spread["difference"] < 0.5 * spread["common"], spread


def test_centralized_refuses_the_difference_and_common_is_the_default():
    assert load_config(TrainConfig, None, []).trpo.credit == "common"
    with pytest.raises(ConfigError, match="trpo.credit=difference"):
        check_feasible(load_config(TrainConfig, None, ["run.scheme=centralized", "trpo.credit=difference"]))
    check_feasible(load_config(TrainConfig, None, ["run.scheme=partial", "trpo.credit=difference"]))


@pytest.mark.parametrize("credit", ["difference", "difference_self"])
def test_the_trainer_silences_what_its_credit_names(credit, monkeypatch):
    """Round-robin: 'difference' silences the BS and its successors, 'difference_self' the BS only, both on the
    slot's sampled fractions (a twin trainer with the same seed draws the same; its call is caught to read them)."""
    import coordinator.trpo.trainer as trainer_mod

    cfg = load_config(TrainConfig, None, SMALL[:-1] + ["run.scheme=partial", "trpo.episodes=32",
                                                       f"trpo.credit={credit}"])
    tr, twin = Trainer(cfg, make_backend(cfg)), Trainer(cfg, make_backend(cfg))
    _, position, silenced = tr._sample(0)
    got = {}
    real = trainer_mod.silenced_sum_rates
    monkeypatch.setattr(trainer_mod, "silenced_sum_rates",
                        lambda rate, frac, K, pos=None: got.update(rate=rate, frac=frac, pos=pos) or real(rate, frac,
                                                                                                          K, pos))
    twin._sample(0)
    np.testing.assert_array_equal(silenced, real(got["rate"], got["frac"], 2,
                                                 position if credit == "difference" else None))
    assert (got["pos"] is None) == (credit == "difference_self")
    for t in (tr, twin):
        t.backend.close()
