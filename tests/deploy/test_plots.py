"""deploy.plots: the EWMA of the learning curves, and that every figure writes a PNG."""

from __future__ import annotations

import numpy as np

from deploy import plots


def test_ewma_weights_the_old_value():
    """s[n] = w s[n-1] + (1 - w) x[n] (paper 1's smoothing factor 0.96 as its figures and TensorBoard apply
    it): a step from 0 to 1 reaches 1 - w^n after n samples."""
    s = plots.ewma([0.0] + [1.0] * 50, 0.96)
    assert s[0] == 0.0
    assert np.isclose(s[1], 0.04) and np.isclose(s[2], 0.96 * 0.04 + 0.04)
    assert np.allclose(s[1:], 1.0 - 0.96 ** np.arange(1, 51))
    x = [1.0, 2.0, 3.0]
    assert np.allclose(plots.ewma(x, 0.0), x)


def test_every_figure_writes_a_png(tmp_path):
    summary = {"n": 3, "L": 6, "methods": {"a": {"mean_mbps": 1.0, "std_mbps": 0.1},
                                           "b": {"mean_mbps": 2.0, "std_mbps": 0.2}}}
    rows = [{"g": "x", "t": 0, "y": 1.0}, {"g": "x", "t": 1, "y": 2.0}, {"g": "z", "t": 0, "y": 0.5}]
    outs = [plots.method_bars(summary, tmp_path / "b.png", highlight="a"),
            plots.lines(tmp_path / "l.png", rows, "g", "t", "y", "title", logy=True),
            plots.table(tmp_path / "t.png", ["a", "b"], [["1", "2"]], "t"),
            plots.plot_curves({"iteration": [0, 1, 2], "r": [1.0, 2.0, 1.5]}, ["r"], tmp_path / "c.png")]
    for out in outs:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
