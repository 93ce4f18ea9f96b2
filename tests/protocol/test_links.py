"""Link emulation: delay distributions (KS tests), loss rates, FIFO/reordering, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from protocol import ConfigError, LinkEmulator, LinkModel, link_rng

N = 4000


def _real_delays_s(model: LinkModel, seed: int = 0, n: int = N) -> np.ndarray:
    emu = LinkEmulator(model, root_seed=seed, clock="real")
    return np.array([emu.decide(0, 1, 0).delay for _ in range(n)]) / 1e9


def test_uniform_delays_follow_their_distribution() -> None:
    d = _real_delays_s(LinkModel("uniform", delay=0.002, jitter=0.003, reorder=True))
    assert stats.kstest(d, stats.uniform(loc=0.002, scale=0.003).cdf).pvalue > 1e-3
    # the test can fail: the same draws are not exponential, nor uniform on another interval
    assert stats.kstest(d, stats.uniform(loc=0.002, scale=0.004).cdf).pvalue < 1e-6
    assert stats.kstest(d, stats.expon(loc=0.002, scale=0.0015).cdf).pvalue < 1e-6


def test_exponential_delays_follow_their_distribution() -> None:
    d = _real_delays_s(LinkModel("exponential", delay=0.001, jitter=0.004, reorder=True), seed=3)
    assert stats.kstest(d, stats.expon(loc=0.001, scale=0.004).cdf).pvalue > 1e-3
    assert stats.kstest(d, stats.expon(loc=0.001, scale=0.005).cdf).pvalue < 1e-6


def test_logical_delays_are_whole_slots_with_the_right_law() -> None:
    emu = LinkEmulator(LinkModel("uniform", delay=1, jitter=3, reorder=True), root_seed=5)
    d = np.array([emu.decide(2, 3, 10).delay for _ in range(N)])
    counts = np.bincount(d, minlength=5)[1:5]
    assert d.min() == 1 and d.max() == 4
    assert stats.chisquare(counts).pvalue > 1e-3  # uniform over {1, 2, 3, 4}
    emu = LinkEmulator(LinkModel("exponential", delay=0, jitter=2.0, reorder=True), root_seed=5)
    d = np.array([emu.decide(2, 3, 10).delay for _ in range(N)])
    p = 1 - np.exp(-1 / 2.0)  # floor(Exp(mean 2)) is geometric with success probability p
    expected = stats.geom(p, loc=-1).pmf(np.arange(8)) * N
    observed = np.bincount(d, minlength=8)[:8]
    assert stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue > 1e-3


def test_fixed_delay_and_drop_rate() -> None:
    emu = LinkEmulator(LinkModel("fixed", delay=0.005, drop_prob=0.2), root_seed=1, clock="real")
    decisions = [emu.decide(0, 1, 1000) for _ in range(N)]
    kept = [d for d in decisions if not d.dropped]
    assert all(d.delay == 5_000_000 and d.due == 1000 + 5_000_000 for d in kept)
    assert stats.binomtest(N - len(kept), N, 0.2).pvalue > 1e-3
    assert emu.dropped == N - len(kept) and emu.submitted == N


def test_fifo_link_never_overtakes_and_reordering_link_does() -> None:
    for reorder in (False, True):
        emu = LinkEmulator(LinkModel("uniform", delay=0, jitter=10, reorder=reorder), root_seed=2)
        for t in range(200):
            emu.submit(t, 0, 1, t)
        released = [item for item, _ in emu.pop_due(10_000)]
        assert sorted(released) == list(range(200))
        assert (released == list(range(200))) is not reorder


def test_logical_release_waits_for_the_due_slot() -> None:
    emu = LinkEmulator({(0, 1): LinkModel("fixed", delay=3), (1, 0): LinkModel("fixed", delay=1)}, root_seed=0)
    emu.submit("a", 0, 1, now=5)
    emu.submit("b", 1, 0, now=5)
    emu.submit("c", 2, 0, now=5)  # default model: no delay
    assert [i for i, _ in emu.pop_due(5)] == ["c"]
    assert emu.next_due() == 6 and [i for i, _ in emu.pop_due(7)] == ["b"]
    assert [(i, d.delay) for i, d in emu.pop_due(8)] == [("a", 3)] and len(emu) == 0


def _logical_run(seed: int, arrival_order: str) -> list[tuple[int, int, int, int, bool]]:
    """Three nodes broadcasting for 60 iterations over lossy, jittery, reordering links.
    Messages reach the emulator in a shuffled order (as from sockets); what is released when
    must depend only on the seed."""
    models = {
        (s, r): LinkModel(
            ["uniform", "exponential", "fixed"][(s + r) % 3], delay=1, jitter=2, drop_prob=0.1, reorder=(s + r) % 2 == 0
        )  # fmt: skip
        for s in range(3)
        for r in range(3)
        if s != r
    }
    emu = LinkEmulator(models, root_seed=seed)
    shuffle = np.random.default_rng(123 if arrival_order == "a" else 456)
    out = []
    for it in range(60):
        msgs = [(s, r) for s in range(3) for r in range(3) if s != r]
        # per-link order is preserved (TCP), interleaving across links is arbitrary
        for idx in shuffle.permutation(len(msgs)):
            s, r = msgs[idx]
            dec = emu.submit((s, r, it), s, r, it)
            if dec.dropped:
                out.append((s, r, it, -1, True))
        out += [(s, r, i, it, False) for (s, r, i), _ in emu.pop_due(it)]
    return out


def test_logical_runs_are_identical_for_a_seed_and_differ_across_seeds() -> None:
    a = _logical_run(7, "a")
    assert a == _logical_run(7, "a")
    # arrival interleaving across links does not matter (drops are listed in arrival order)
    assert [x for x in a if not x[4]] == [x for x in _logical_run(7, "b") if not x[4]]
    assert sorted(a) == sorted(_logical_run(7, "b"))
    assert a != _logical_run(8, "a")


def test_link_rngs_are_independent_per_link_and_purpose() -> None:
    draws = {
        key: link_rng(42, *key).random(4).tolist()
        for key in [(0, 1, "link"), (1, 0, "link"), (0, 1, "other"), (0, 2, 0), (-2, 0, "link")]
    }
    assert len({tuple(v) for v in draws.values()}) == len(draws)
    assert link_rng(42, 0, 1, "link").random(4).tolist() == draws[(0, 1, "link")]
    expected = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=42, spawn_key=(0, 2, 0))))
    assert expected.random(4).tolist() == draws[(0, 2, 0)]


def test_bad_configs_raise_config_errors() -> None:
    for kwargs in ({"kind": "gauss"}, {"delay": -1.0}, {"jitter": float("nan")}, {"drop_prob": 1.5}):
        with pytest.raises(ConfigError):
            LinkModel(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        LinkEmulator(LinkModel(delay=0.5), root_seed=0, clock="logical")  # half a slot
    with pytest.raises(ConfigError):
        LinkEmulator(LinkModel(), root_seed=0, clock="wall")  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # ConfigError is also a ValueError
        LinkEmulator(LinkModel(), root_seed=-1)
