"""Faults: a dead actor, a killed or interrupted driver, and the run continued after it."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.reliability.common import ROOT, TRAIN, ZO, cli, load_average, run_cli

# Each row runs a real command line in a subprocess on a small run (logical time), faults it for real (SIGKILL to an
# actor's process, pid from meta.json; SIGKILL or SIGINT to the driver) once it has written 2 metrics rows, then
# continues it as the ending says (the printed --resume command), and compares it with the uninterrupted run.


def _fault(args: list[str], run: Path, what: str, rows: int = 2) -> tuple[int, str, list[int]]:
    """Start ``bsemu ARGS``; once ``run`` has ``rows`` metrics rows, fault it: ``what`` is an actor name of meta.json's
    placement (SIGKILL to its process), ``driver-kill`` (SIGKILL) or ``driver-int`` (SIGINT). Returns (exit code,
    stderr, the actors' pids of meta.json at the fault)."""
    import json
    import os
    import signal
    import subprocess

    p = subprocess.Popen(cli(*args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        while p.poll() is None:
            text = (run / "metrics.csv").read_text() if (run / "metrics.csv").is_file() else ""
            if (run / "meta.json").is_file() and text.count("\n") - 1 >= rows:
                break
            time.sleep(0.02)
        if p.poll() is None:
            meta = json.loads((run / "meta.json").read_text())
            where = meta.get("placement")
            pids = [int(v["pid"]) for v in where.values() if "pid" in v] if isinstance(where, dict) else []
            if what == "driver-kill":
                p.send_signal(signal.SIGKILL)
            elif what == "driver-int":
                p.send_signal(signal.SIGINT)
            else:
                os.kill(int(meta["placement"][what]["pid"]), signal.SIGKILL)
        _, err = p.communicate(timeout=1800)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, err, pids


def _alive(pids: list[int]) -> int:
    """How many of ``pids`` are still running processes (after a few seconds' grace)."""

    def running(q: int) -> bool:
        try:
            with open(f"/proc/{q}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    t_end = time.monotonic() + 10
    while True:
        left = [q for q in pids if running(q)]
        if not left or time.monotonic() > t_end:
            return len(left)
        time.sleep(0.2)


def _same_as(run: Path, ref: Path, command: str) -> bool:
    """metrics.csv (less its seconds) and the last checkpoint's parameters equal the uninterrupted run's."""
    import csv

    import numpy as np

    from deploy.rundir import RunDir

    def rows(d: Path) -> list[dict[str, str]]:
        with (d / "metrics.csv").open() as f:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]

    def params(d: Path) -> list[np.ndarray]:
        ck = RunDir.open(d).load_latest_checkpoint() or {}
        if command == "train":
            return [np.asarray(ck["theta"]), np.asarray(ck["phi"])]
        links = ck["trainer"]["links"]
        agents = links if isinstance(links, list) else links["agents"]
        return [np.asarray(a["theta"] if "theta" in a else a["agent"]["theta"]) for a in agents]

    try:
        return rows(run) == rows(ref) and all(np.array_equal(a, b) for a, b in zip(params(run), params(ref),
                                                                                   strict=True))
    except (OSError, KeyError, TypeError, ValueError):
        return False


def faults() -> int:
    """Faults through the command line: an actor killed (max_restarts 0 and 1), the driver SIGKILLed, the driver
    interrupted (SIGINT); how each ended, and whether the continued run completed equal to an uninterrupted one."""
    print(f"load average {load_average()}; train: demo.yaml, 8 iterations, checkpoint every 1; zo: zo_demo.yaml, "
          f"3 links, 40 iterations, checkpoint every 4; every fault after 2 metrics rows\n")
    t0 = time.perf_counter()
    table, fails = [], 0
    with tempfile.TemporaryDirectory(prefix="bsemu-faults-") as tmp:
        base = Path(tmp)
        refs = {"train": base / "ref-train" / "run", "zo": base / "ref-zo" / "run"}
        for command, args in (("train", TRAIN), ("zo", ZO)):
            extra = ["--set", "run.backend=inproc"] if command == "train" else []
            r = run_cli(command, *args, *extra, "--run-dir", str(refs[command]))   # inproc == ray in logical time
            if r.returncode != 0:
                print(f"reference {command} run failed: {r.stderr.strip()[-300:]}")
                return 1
        cases = [("train", "bs1", "ray", 0), ("train", "bs1", "ray", 1), ("zo", "link2", "ray", 0),
                 ("zo", "link2", "ray", 1), ("train", "driver-kill", "inproc", 0), ("zo", "driver-kill", "inproc", 0),
                 ("train", "driver-kill", "ray", 0), ("train", "driver-int", "ray", 0), ("zo", "driver-int", "ray", 0)]
        for k, (command, what, backend, restarts) in enumerate(cases):
            run = base / f"case{k}" / "run"
            args = [command, *(TRAIN if command == "train" else ZO), "--set", f"run.backend={backend}", "--set",
                    f"run.max_restarts={restarts}", "--run-dir", str(run)]
            code, err, pids = _fault(args, run, what)
            lines = [ln for ln in err.splitlines() if ln.startswith(f"bsemu {command}:")]
            last = lines[-1] if lines else (err.strip().splitlines() or ["(nothing)"])[-1]
            tb = "Traceback" in err
            restarted = [ln for ln in lines if "restart 1 of" in ln]
            how = f"exit {code}: {restarted[0] if restarted else last}"
            then, done = "—", code == 0
            if code != 0:
                resume = ["--resume", str(run), "--no-progress"]
                rr = run_cli(command, *resume)
                then, done = f"`bsemu {command} --resume` exit {rr.returncode}", rr.returncode == 0
            equal = done and _same_as(run, refs[command], command)
            left = _alive(pids) if backend == "ray" else 0
            fault = {"bs1": "BS 1 actor SIGKILL", "link2": "link 2 actor SIGKILL", "driver-kill": "driver SIGKILL",
                     "driver-int": "driver SIGINT"}[what]
            if what in ("bs1", "link2") and restarts == 0:        # one line naming it and the resume command
                ended = code == 1 and " died (" in last and "error:" in last and f"--resume {run}" in last
            elif what in ("bs1", "link2"):                         # restarted by itself
                ended = code == 0 and bool(restarted)
            else:                                                  # SIGKILL: -9; SIGINT: 130, "interrupted"
                ended = code == -9 if what == "driver-kill" else code == 130 and "interrupted" in last
            designed = ended and not tb and done and equal and left == 0
            fails += not designed
            table.append((f"{fault}, max_restarts {restarts}" if what in ("bs1", "link2") else fault, command, backend,
                          how, then, done, equal, left, tb, designed))
    print("| fault | command | backend | how it ended | continued with | completed | equal to uninterrupted "
          "| actor processes left | traceback | as designed |")
    print("|---|---|---|---|---|---|---|---:|---|---|")
    for fault, command, backend, how, then, done, equal, left, tb, ok in table:
        print(f"| {fault} | {command} | {backend} | {how[:400]} | {then} | {'yes' if done else 'NO'} | "
              f"{'yes' if equal else 'NO'} | {left} | {'YES' if tb else 'no'} | {'yes' if ok else 'NO'} |")
    print(f"\nequal: metrics.csv rows less their seconds and the last checkpoint's parameters, against the same run "
          f"uninterrupted (inproc, logical time).\nload average {load_average()}; {time.perf_counter() - t0:.1f} s; "
          f"rows not as designed: {fails}")
    return fails
