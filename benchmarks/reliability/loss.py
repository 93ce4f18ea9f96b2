"""Loss: messages lost on the links vs logged in messages.csv, at 0 / 5 / 10 / 20 % loss."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.reliability.common import TRAIN, ZO, load_average, run_cli


def _log_counts(path: Path, kinds: set[str]) -> dict[str, int]:
    import csv

    out = {"sent": 0, "received": 0, "dropped": 0}
    with path.open() as f:
        for r in csv.DictReader(f):
            if r["kind"] in kinds:
                out[r["event"]] += 1
    return out


def loss() -> int:
    """Messages lost vs logged at 0 / 5 / 10 / 20 % loss: the zeroth-order d messages (``algo.drop_prob``, links as
    Ray actors, logical clock) and the execution phase's round-robin vectors (``links.loss``, Ray actors, wall
    clock): sent, received and dropped as messages.csv logs them, whether sent = received + dropped, the dropped
    share, and what the run itself counted (zo: metrics' ``dropped``; execute: summary's ``lost_messages``)."""
    import csv
    import json

    print(f"load average {load_average()}\n")
    t0 = time.perf_counter()
    rows, fails = [], 0
    with tempfile.TemporaryDirectory(prefix="bsemu-loss-") as tmp:
        base = Path(tmp)
        trained = base / "trained" / "run"
        r = run_cli("train", *TRAIN[:-2], "--set", "run.iterations=2", "--set", "run.backend=inproc",
                     "--run-dir", str(trained))
        if r.returncode != 0:
            print(f"training the policy to execute failed: {r.stderr.strip()[-300:]}")
            return 1
        for p in (0.0, 0.05, 0.1, 0.2):
            run = base / f"zo-{p}" / "run"
            r = run_cli("zo", *ZO[:-2], "--set", "run.iterations=40", "--set", "algo.update=async", "--set",
                         f"algo.drop_prob={p}", "--set", "run.backend=ray", "--run-dir", str(run))
            if r.returncode != 0:
                rows.append(("zo d (SCALAR_D)", p, None, f"exit {r.returncode}: {r.stderr.strip()[-200:]}"))
                fails += 1
                continue
            c = _log_counts(run / "messages.csv", {"SCALAR_D", "RELAY_D"})
            with (run / "metrics.csv").open() as f:
                last = list(csv.DictReader(f))[-1]
            own = f"metrics: {int(float(last['messages']))} sent, {int(float(last['dropped']))} dropped"
            ok = c["sent"] == c["received"] + c["dropped"] and int(float(last["dropped"])) == c["dropped"] \
                and int(float(last["messages"])) == c["sent"] and (p > 0 or c["dropped"] == 0)
            fails += not ok
            rows.append(("zo d (SCALAR_D)", p, c, own + ("" if ok else "  <-- NOT AS DESIGNED")))
        for p in (0.0, 0.05, 0.1, 0.2):
            out = base / f"exec-{p}"
            r = run_cli("execute", str(trained), "--slots", "300", "--set", f"links.loss={p}", "--out", str(out))
            if r.returncode != 0:
                rows.append(("execute POWER_VECTOR", p, None, f"exit {r.returncode}: {r.stderr.strip()[-200:]}"))
                fails += 1
                continue
            c = _log_counts(out / "messages.csv", {"POWER_VECTOR"})
            summ = json.loads((out / "summary.json").read_text())
            own = f"summary: lost_messages {summ['lost_messages']}, late {summ['late_messages']}"
            ok = c["sent"] == c["received"] + c["dropped"] and summ["lost_messages"] == c["dropped"] \
                and (p > 0 or c["dropped"] == 0)
            fails += not ok
            rows.append(("execute POWER_VECTOR", p, c, own + ("" if ok else "  <-- NOT AS DESIGNED")))
    print("| messages | loss | sent | received | dropped | neither | sent = received + dropped | dropped share | "
          "the run's own count |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---|")
    for name, p, c, own in rows:
        if c is None:
            print(f"| {name} | {p:.0%} | — | — | — | — | — | — | {own} |")
            continue
        gap = c["sent"] - c["received"] - c["dropped"]
        share = c["dropped"] / c["sent"] if c["sent"] else 0.0
        print(f"| {name} | {p:.0%} | {c['sent']} | {c['received']} | {c['dropped']} | {gap} | "
              f"{'yes' if not gap else 'NO'} | {share:.3f} | {own} |")
    print("\nneither: sent but neither received nor dropped in the log (the execution phase's nodes stop after the "
          "last slot without draining: a vector still in flight, or queued unread, is never logged).")
    print(f"\nload average {load_average()}; {time.perf_counter() - t0:.1f} s; rows not as designed: {fails}")
    return fails
