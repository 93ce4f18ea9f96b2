"""The `bsemu` command line. Each sub-command lives in its own module with
``register(subparsers) -> None`` that adds a parser whose ``func(args) -> int`` runs it.

Exit codes: 0 success, 2 bad input (config, file, argument), 1 anything else.
"""

from __future__ import annotations

import os

# One BLAS thread per process, set before numpy loads: on 2 cores a threaded OpenBLAS made the
# small matmuls of the policies ~35x slower, and Ray actors must not fight over the cores.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402

from deploy.errors import UsageError  # noqa: E402

# one line per sub-command module; each module owns its own parser and runner
COMMAND_MODULES = (
    "deploy.cmd_baselines",
    "deploy.cmd_train",
    "deploy.cmd_zo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bsemu", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # sub-command not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"bsemu {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bsemu {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
