"""Bad inputs: every case of ``tests/deploy/test_bad_input.py`` through the command line, how each ended."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def bad_inputs() -> int:
    """Run the bad-input table; print one line per case and the totals. Returns the number of cases that did
    not end as they must (tracebacks included)."""
    from tests.deploy.test_bad_input import CASES, build_sources, run_cases

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bsemu-bad-inputs-") as tmp:
        sources = build_sources(Path(tmp) / "sources")
        t1 = time.perf_counter()
        results = run_cases(CASES, Path(tmp) / "cases", sources)
    width = max(len(c.name) for c in CASES)
    print(f"bad inputs: {len(CASES)} cases (run folders built in {t1 - t0:.1f} s, cases run in "
          f"{time.perf_counter() - t1:.1f} s)\n")
    print(f"{'case':<{width}}  exit  first line of stderr")
    for r in results:
        if r.skipped:
            print(f"{r.case.name:<{width}}  skip  ({r.skipped})")
            continue
        flag = "" if not r.problems() else "   <-- " + "; ".join(r.problems())
        print(f"{r.case.name:<{width}}  {r.outcome.code:>4}  {r.first_line[:160]}{flag}")
    ran = [r for r in results if not r.skipped]
    tracebacks = sum(r.traceback for r in ran)
    bad = [r for r in ran if r.problems()]
    other = sum(r.outcome.code != 2 for r in ran)
    changed = sum(bool(r.changed) for r in ran)
    print(f"\n{len(ran)} run, {len(results) - len(ran)} skipped; tracebacks: {tracebacks} (goal 0); exit code "
          f"other than 2: {other}; folders changed: {changed}; not as they must end: {len(bad)} (goal 0)")
    return len(bad)
