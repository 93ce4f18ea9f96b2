"""Shared by the sections: the repository root, the load average, and the small ``bsemu`` runs they start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# a small TRPO run and a small zeroth-order run (logical time), as the faults and loss sections start them
TRAIN = ["--config", "deploy/configs/demo.yaml", "--no-progress", "--set", "trpo.episodes=32", "--set",
         "policy.hidden=8", "--set", "trpo.cg_iters=3", "--set", "trpo.value_epochs=2", "--set", "run.eval_slots=0",
         "--set", "run.checkpoint_every=1", "--set", "run.iterations=8"]
ZO = ["--config", "deploy/configs/zo_demo.yaml", "--no-progress", "--set", "scenario.n_links=3", "--set", "algo.b1=5",
      "--set", "algo.b2=5", "--set", "run.eval_every=4", "--set", "run.checkpoint_every=4", "--set",
      "run.eval_sequences=2", "--set", "run.eval_slots=4", "--set", "run.iterations=40"]


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "deploy.cli", *args]


def run_cli(*args: str) -> Any:
    return subprocess.run(cli(*args), cwd=ROOT, capture_output=True, text=True, timeout=1800)
