"""Every figure bsemu writes (PNG, matplotlib's Agg backend): learning curves, sum-rate bars per method,
line plots of sweep results, and tables rendered as images."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():  # noqa: ANN202 - matplotlib's module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ewma(x: Iterable[float], w: float = 0.96) -> np.ndarray:
    """Exponentially weighted average with smoothing factor ``w`` on the OLD value:
    s[1] = x[1];  s[n] = w s[n-1] + (1 - w) x[n].

    Paper 1's footnote 2 prints w x[n] + (1 - w) s[n-1], which at its w = 0.96 is almost the raw curve;
    its figures are visibly smoothed, as TensorBoard's smoothing of 0.96 (the same formula as here) gives,
    so the footnote's w and 1 - w are read as swapped."""
    xs = np.asarray(list(x), dtype=np.float64)
    s = np.empty_like(xs)
    for i, v in enumerate(xs):
        s[i] = v if i == 0 else w * s[i - 1] + (1.0 - w) * v
    return s


def read_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a metrics CSV as float arrays (non-numeric cells become NaN)."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    out: dict[str, np.ndarray] = {}
    for k in rows[0]:
        vals = []
        for r in rows:
            try:
                vals.append(float(r[k]))
            except (TypeError, ValueError):
                vals.append(float("nan"))
        out[k] = np.asarray(vals)
    return out


def plot_curves(csv_or_dict: str | Path | Mapping[str, Sequence[float]], keys: Sequence[str],
                out_png: str | Path, x_key: str = "iteration", w: float | None = 0.96,
                title: str | None = None) -> Path:
    """Learning curves of ``keys`` (raw, and exponentially weighted with ``w`` if given) into a PNG."""
    plt = _pyplot()
    data = read_csv(csv_or_dict) if isinstance(csv_or_dict, (str, Path)) else \
        {k: np.asarray(v, dtype=np.float64) for k, v in csv_or_dict.items()}
    keys = [k for k in keys if k in data]
    fig, axes = plt.subplots(len(keys) or 1, 1, figsize=(7, 2.6 * max(1, len(keys))), squeeze=False)
    for ax, k in zip(axes[:, 0], keys, strict=False):  # no keys: one empty panel
        y = data[k]
        x = data.get(x_key, np.arange(len(y)))
        ax.plot(x, y, lw=0.8, alpha=0.5 if w else 1.0, label=f"{k} (raw)")
        if w is not None and len(y):
            ax.plot(x, ewma(y, w), lw=1.6, label=f"{k} (EWMA w={w})")
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel(x_key)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def method_bars(summary: Mapping[str, Any], path: Path, highlight: str | None = None) -> Path:
    """Mean sum-rate (Mbps) per method with its spread over the realizations (a ``summarize`` summary);
    ``highlight``: the trained method, drawn in another colour."""
    plt = _pyplot()
    names = list(summary["methods"])
    mean = [summary["methods"][n]["mean_mbps"] for n in names]
    std = [summary["methods"][n]["std_mbps"] for n in names]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.5))
    ax.bar(names, mean, yerr=std, capsize=3, alpha=0.85, color=["C3" if n == highlight else "C0" for n in names])
    ax.set_ylabel("mean sum-rate (Mbps)")
    ax.set_title(f"{summary['n']} realizations, L = {summary['L']}")
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def lines(path: Path, rows: list[dict[str, Any]], group: str, x: str, y: str, title: str, logy: bool = False,
          logx: bool = False) -> Path:
    """One line of ``y`` against ``x`` per value of ``group`` in ``rows``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for g in dict.fromkeys(str(r[group]) for r in rows):
        rs = [r for r in rows if str(r[group]) == g]
        ax.plot([r[x] for r in rs], [r[y] for r in rs], marker=".", label=g)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("symlog")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(path: Path, header: list[str], body: list[list[str]], title: str) -> Path:
    """A table rendered as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.4 * len(header) + 1, 0.4 * len(body) + 1.2))
    ax.axis("off")
    ax.table(cellText=body, colLabels=header, loc="center")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_cdf(samples: Mapping[str, np.ndarray], path: Path, title: str = "") -> Path:
    """Empirical CDFs of latencies in µs (one curve per name), log-scaled time axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, x in samples.items():
        x = np.sort(np.asarray(x, np.float64))
        if x.size:
            ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("µs")
    ax.set_ylabel("share of slots ≤ x")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def seed_bands(path: Path, x: np.ndarray, panels: Mapping[str, np.ndarray], title: str, xlabel: str, ylabel: str,
               refs: Mapping[str, float] | None = None) -> Path:
    """One panel per entry of ``panels`` ([seeds, T] curves over ``x``): the seeds' mean as a line and their
    min-max as a band, each faint seed behind; ``refs``: horizontal reference lines (e.g. the optimum)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels) or 1, 1, figsize=(7, 2.8 * max(1, len(panels))), squeeze=False)
    for ax, (name, y) in zip(axes[:, 0], panels.items(), strict=False):
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        if y.size:
            for row in y:
                ax.plot(x, row, lw=0.5, alpha=0.3, color="C0")
            ax.fill_between(x, y.min(axis=0), y.max(axis=0), alpha=0.25, color="C0", label=f"min-max of {len(y)}")
            ax.plot(x, y.mean(axis=0), lw=1.6, color="C0", label="mean")
        for i, (label, v) in enumerate((refs or {}).items()):
            ax.axhline(v, ls="--", lw=1.0, color=f"C{i + 3}", label=f"{label} {v:.1f}")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel(xlabel)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bars(path: Path, names: Sequence[str], values: Sequence[float], lo: Sequence[float], hi: Sequence[float],
         title: str, ylabel: str, refs: Mapping[str, float] | None = None) -> Path:
    """Bars of ``values`` with [lo, hi] whiskers (e.g. the spread over seeds; equal: none) and horizontal
    reference lines ``refs`` (e.g. the certified optimum, a bracket's ends)."""
    plt = _pyplot()
    v, lo_, hi_ = (np.asarray(a, dtype=np.float64) for a in (values, lo, hi))
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2.5, 3.8))
    ax.bar(list(names), v, yerr=np.stack([v - lo_, hi_ - v]) if v.size else None, capsize=3, alpha=0.85)
    for i, (label, y) in enumerate((refs or {}).items()):
        ax.axhline(y, ls="--", lw=1.0, color=f"C{i + 3}", label=f"{label} {y:.1f}")
    if refs:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", rotation=25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
