"""Run the reliability sections: ``python -m benchmarks.reliability [SECTION ...]`` (or ``python
benchmarks/reliability [SECTION ...]``) from the repository root; see the package's docstring."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

# run as a folder, sys.path[0] is benchmarks/reliability/; as -m, the current folder. The repository root replaces
# it (benchmarks/ must not come first: its protocol.py would shadow the protocol package).
sys.path[:1] = [str(Path(__file__).resolve().parents[2])]

import benchmarks.reliability as package  # noqa: E402
from benchmarks.reliability.faults import faults  # noqa: E402
from benchmarks.reliability.frames import frames  # noqa: E402
from benchmarks.reliability.inputs import bad_inputs  # noqa: E402
from benchmarks.reliability.loss import loss  # noqa: E402

# name -> section; each returns the number of failures it found
SECTIONS: dict[str, Callable[[], int]] = {
    "bad_inputs": bad_inputs,
    "frames": frames,
    "faults": faults,
    "loss": loss,
}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.reliability",
                                 description=(package.__doc__ or "").splitlines()[0])
    ap.add_argument("sections", nargs="*", help=f"sections to run: {', '.join(SECTIONS)} (default: all)")
    args = ap.parse_args()
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; expected {', '.join(SECTIONS)}")
    failures = 0
    for name in args.sections or list(SECTIONS):
        print(f"== {name} ==")
        failures += SECTIONS[name]()
        print()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
