"""bsemu's tests; the tree mirrors the packages (tests/<package>/[<algorithm>/]test_<module>.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the CLI runs there in subprocess tests; configs are under ROOT/deploy/configs)."""
