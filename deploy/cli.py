"""The `bsemu` command line. Each sub-command lives in its own module of :mod:`deploy.commands` with
``register(subparsers) -> None`` that adds a parser whose ``func(args) -> int`` runs it.

Exit codes: 0 success, 2 bad input (config, file, argument), 1 anything else.
"""

from __future__ import annotations

import os

from deploy import THREAD_VARS

# One BLAS thread per process, set before numpy loads: on 2 cores a threaded OpenBLAS made the
# small matmuls of the policies ~35x slower, and Ray actors must not fight over the cores.
for _var in THREAD_VARS:
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
import typing  # noqa: E402

from coordinator.config import ConfigError  # noqa: E402
from deploy.errors import UsageError  # noqa: E402
from radio.problem import ProblemError  # noqa: E402

# one line per sub-command module; each module owns its own parser and runner
COMMAND_MODULES = (
    "deploy.commands.baselines",
    "deploy.commands.cluster",
    "deploy.commands.execute",
    "deploy.commands.reproduce",
    "deploy.commands.train",
    "deploy.commands.zo",
)

DESCRIPTION = ("bsemu: cellular base stations as Ray actors that learn downlink power allocation "
               "(paper 1: TRPO, centralized / round-robin / fully decentralized; paper 2: zeroth-order "
               "decentralized training), exchanging real messages over ZeroMQ.")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bsemu")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on ONE line (no usage block), exit code 2, as every bad input of bsemu."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see `{self.prog} --help`)\n")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bsemu", description=DESCRIPTION,
                     epilog="`bsemu COMMAND --help` describes a command. Exit codes: 0 done, "
                            "2 bad input (nothing written), 1 anything else.")
    parser.add_argument("--version", action="version", version=f"bsemu {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """parse_args, with unrecognized arguments reported by the sub-command's parser (its name in the line)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        sub = subs[0].choices.get(args.command, parser) if subs else parser
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ConfigError, ProblemError) as exc:
        print(f"bsemu {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bsemu {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
