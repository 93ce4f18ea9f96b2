"""Latency percentiles in bounded memory: a histogram with log-spaced bins (:class:`LatencyHist`).

A bin covers [10^(i/R), 10^((i+1)/R)) ns with R = 100 bins per decade (each 2.3 % wide); a percentile is
the geometric middle of its bin, so it is within ±1.2 % of the exact order statistic whatever the number
of samples. Histograms add (bin by bin), so the summaries of several nodes merge exactly; the count, sum
and max are kept exactly beside the bins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

BINS_PER_DECADE = 100
PERCENTILES = (50, 95, 99)


def _bin(ns: int) -> int:
    return int(math.floor(math.log10(ns) * BINS_PER_DECADE)) if ns > 0 else -1


def _value(b: int) -> float:
    """Geometric middle of bin b in ns (0 for the bin of non-positive latencies)."""
    return 0.0 if b < 0 else 10.0 ** ((b + 0.5) / BINS_PER_DECADE)


class LatencyHist:
    """Counts of latencies (integer ns) per log-spaced bin, with exact count, sum and max."""

    __slots__ = ("bins", "count", "sum", "max")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.count = 0
        self.sum = 0
        self.max = 0

    def add(self, ns: int) -> None:
        b = _bin(ns)
        self.bins[b] = self.bins.get(b, 0) + 1
        self.count += 1
        self.sum += ns
        if ns > self.max or self.count == 1:
            self.max = ns

    def extend(self, values: Iterable[int]) -> None:
        for v in values:
            self.add(int(v))

    def percentile(self, q: float) -> float:
        """The q-th percentile (0 < q <= 100) in ns, to the bin's resolution (NaN when empty)."""
        return percentile_of(self.bins, self.count, q)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: count, sum, max, mean, p50/p95/p99 (ns) and the sparse bins (for merging)."""
        out: dict[str, Any] = {"count": self.count, "sum": self.sum, "max": self.max,
                               "mean": self.sum / self.count if self.count else float("nan")}
        for q in PERCENTILES:
            out[f"p{q}"] = self.percentile(q)
        out["hist"] = {str(b): c for b, c in sorted(self.bins.items())}
        return out


def percentile_of(bins: Mapping[int, int], count: int, q: float) -> float:
    """The q-th percentile of a histogram's bins (see the module docstring)."""
    if count <= 0:
        return float("nan")
    rank = max(1, math.ceil(q / 100.0 * count))
    seen = 0
    for b in sorted(bins):
        seen += bins[b]
        if seen >= rank:
            return _value(b)
    return _value(max(bins))


def refresh_percentiles(node: dict[str, Any]) -> None:
    """Recompute the percentiles and mean of a ``to_dict`` entry from its (merged) bins, in place."""
    bins = {int(b): int(c) for b, c in node.get("hist", {}).items()}
    count = int(node.get("count", 0))
    for q in PERCENTILES:
        node[f"p{q}"] = percentile_of(bins, count, q)
    node["mean"] = node["sum"] / count if count else float("nan")


__all__ = ["LatencyHist", "percentile_of", "refresh_percentiles", "BINS_PER_DECADE", "PERCENTILES"]
