"""bsemu's tests; the tree mirrors the packages (tests/<package>/[<algorithm>/]test_<module>.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the CLI runs there in subprocess tests; configs are under ROOT/deploy/configs)."""


def bsemu(*args: str, timeout: float = 300, env: dict | None = None):
    """``python -m deploy.cli ARGS`` in the repository root, its output captured (a subprocess.CompletedProcess)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "deploy.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def csv_rows(path: Path) -> list[dict]:
    """A CSV file's rows as dicts of strings."""
    import csv

    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))
