"""Bad input never reaches a traceback: every argument, config, data file, run folder and checkpoint from
outside is checked at the edge and answered with ONE line on stderr, ``bsemu <command>: error: ...``, exit
code 2, and nothing written or rewritten.

The table below is (command line, files to prepare). Each case runs in a fresh folder (the current directory of
the command, so default outputs such as ``runs/...`` land there too); trained run folders are copied in where
the command line names ``{trpo}`` or ``{zo}``. A case passes when the exit code is 2, stderr is exactly one
line starting ``bsemu <command>: error:`` (and holding ``expect``), nothing anywhere says "Traceback", and the
folder tree -- every file's bytes and mode -- is the same before and after.

Most cases run in this process through :func:`deploy.cli.main` (milliseconds each) with the expensive entry
points (trainers, Ray, the classical methods, sweeps) replaced by a trap, so that a check that went missing
fails the case instead of starting a run. Cases whose failure would allocate tens of GB (``isolate``) run
together in one child process under an address-space limit, so a missing memory check ends in a
MemoryError instead of taking the machine. ``python -m benchmarks.reliability bad_inputs`` prints how every case ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import traceback
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import ROOT

DEMO = ROOT / "deploy" / "configs" / "demo.yaml"
ZO_DEMO = ROOT / "deploy" / "configs" / "zo_demo.yaml"
MEMORY_GB = "8"             # the memory budget the cases run under (BSEMU_MEMORY_GB), whatever the machine
CHILD_AS_LIMIT = 4 << 30    # address-space limit of the child that runs the isolated (memory) cases
CHILD_TIMEOUT_S = 180

TRPO_TINY = ["--set", "trpo.episodes=8", "--set", "policy.hidden=8", "--set", "trpo.cg_iters=2",
             "--set", "run.eval_slots=10", "--set", "run.backend=inproc", "--set", "run.iterations=2",
             "--set", "run.checkpoint_every=1", "--set", "run.eval_methods=[max_power]"]
ZO_TINY = ["--set", "run.iterations=2", "--set", "algo.b1=2", "--set", "algo.b2=2", "--set", "run.eval_sequences=1",
           "--set", "run.eval_slots=2", "--set", "run.checkpoint_every=1", "--set", "run.eval_every=1"]


# ---------------------------------------------------------------------------------------------- the table
Prepare = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One bad command line: ``argv`` with ``{d}`` (the case folder), ``{demo}``, ``{zo_demo}``, ``{trpo}``
    and ``{zo}`` (copies of trained run folders inside it); ``prepare`` makes its files."""

    name: str
    argv: tuple[str, ...]
    prepare: tuple[Prepare, ...] = ()
    expect: str = ""          # a fragment the error line must hold
    isolate: bool = False     # a missing check would allocate tens of GB: run in the memory-limited child
    unwritable: bool = False  # needs a folder this process cannot write in (skipped where chmod cannot stop it)

    @property
    def command(self) -> str:
        return self.argv[0]


def C(name: str, *argv: str, prep: Prepare | Sequence[Prepare] = (), expect: str = "", isolate: bool = False,
      unwritable: bool = False) -> Case:
    preps = (prep,) if callable(prep) else tuple(prep)
    return Case(name, tuple(argv), preps, expect, isolate, unwritable)


# ---- file makers
def write(rel: str, data: bytes | str) -> Prepare:
    def f(d: Path) -> None:
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    return f


def mkdir(rel: str) -> Prepare:
    def f(d: Path) -> None:
        p = d / rel
        if p.is_file():
            p.unlink()
        p.mkdir(parents=True, exist_ok=True)
    return f


def remove(rel: str) -> Prepare:
    def f(d: Path) -> None:
        p = d / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return f


def cut(rel: str, size: int | None = None, frac: float = 0.5) -> Prepare:
    def f(d: Path) -> None:
        p = d / rel
        b = p.read_bytes()
        p.write_bytes(b[: int(len(b) * frac) if size is None else size])
    return f


def edit(rel: str, old: str, new: str) -> Prepare:
    def f(d: Path) -> None:
        p = d / rel
        text = p.read_text()
        assert old in text, (rel, old)
        p.write_text(text.replace(old, new, 1))
    return f


def edit_line(rel: str, line: int, fn: Callable[[str], str]) -> Prepare:
    def f(d: Path) -> None:
        p = d / rel
        lines = p.read_text().splitlines(keepends=True)
        lines[line] = fn(lines[line])
        p.write_text("".join(lines))
    return f


def keep_lines(rel: str, n: int) -> Prepare:
    def f(d: Path) -> None:
        p = d / rel
        p.write_text("".join(p.read_text().splitlines(keepends=True)[:n]))
    return f


def unwritable(rel: str) -> Prepare:
    def f(d: Path) -> None:
        p = d / rel
        p.mkdir(parents=True, exist_ok=True)
        p.chmod(0o555)
    return f


def symlink(rel: str, target: str) -> Prepare:
    def f(d: Path) -> None:
        (d / rel).symlink_to(target)
    return f


def last_ckpt(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]


def ckpt(run: str, fn: Callable[[Any], Any] | None = None, raw: bytes | None = None) -> Prepare:
    """Rewrite the last checkpoint of ``run``: ``fn(state) -> state`` saved with torch.save, or ``raw`` bytes."""
    def f(d: Path) -> None:
        import torch

        p = last_ckpt(d / run)
        if raw is not None:
            p.write_bytes(raw)
            return
        st = torch.load(p, weights_only=True)
        torch.save(fn(st), p)
    return f


def gains(rel: str, n: int = 4, cells: int | None = 3, K: int | None = 2, **over: Any) -> Prepare:
    """A gains .npz (valid unless ``over`` replaces or, with None, drops an array)."""
    def f(d: Path) -> None:
        L = (cells or 3) * (K or 2)
        rng = np.random.default_rng(0)
        arrays: dict[str, Any] = {"G": rng.exponential(size=(n, L, L)) * 1e-9, "noise_w": np.float64(1e-13),
                                  "p_max_w": np.float64(20.0), "bandwidth_hz": np.float64(20e6)}
        if cells is not None:
            arrays["cells"] = np.int64(cells)
        if K is not None:
            arrays["users_per_cell"] = np.int64(K)
        for k, v in over.items():
            if v is None:
                arrays.pop(k, None)
            else:
                arrays[k] = v
        np.savez(d / rel, **arrays)
    return f


def npz_members(rel: str, members: dict[str, bytes]) -> Prepare:
    """An .npz written member by member (headers that lie, truncated data)."""
    def f(d: Path) -> None:
        with zipfile.ZipFile(d / rel, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
    return f


def npy_header(shape: tuple[int, ...], descr: str = "<f8", data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


SCALARS = {"noise_w.npy": npy(np.float64(1e-13)), "p_max_w.npy": npy(np.float64(20.0)),
           "bandwidth_hz.npy": npy(np.float64(20e6))}


def _pickled_state(_st: Any) -> Any:
    return {"iteration": 2, "theta": object()}


def _np_state(st: Any) -> Any:
    return {**st, "theta": np.zeros(3)}


T, Z = "{trpo}", "{zo}"
TCK, ZCK = "trpo/checkpoints/ckpt-00000002.pt", "zo/checkpoints/ckpt-00000002.pt"


def _trpo_cases() -> list[Case]:
    fresh = ("train", "--config", "{demo}", "--run-dir", "{d}/run")
    resume = ("train", "--resume", T, "--no-progress")
    return [
        # config files
        C("train-config-missing", "train", "--config", "{d}/nope.yaml", expect="not found"),
        C("train-config-is-folder", "train", "--config", "{d}", expect="found a folder"),
        C("train-config-not-utf8", "train", "--config", "{d}/c.yaml", prep=write("c.yaml", b"run:\n  seed: \xff\xfe\n"),
          expect="not UTF-8"),
        C("train-config-malformed-yaml", "train", "--config", "{d}/c.yaml", prep=write("c.yaml", "run: [1, 2\n"),
          expect="line 2, column 1"),
        C("train-config-tab", "train", "--config", "{d}/c.yaml", prep=write("c.yaml", "run:\n\tseed: 1\n"),
          expect="line 2"),
        C("train-config-list", "train", "--config", "{d}/c.yaml", prep=write("c.yaml", "- 1\n- 2\n"),
          expect="mapping"),
        C("train-config-scalar", "train", "--config", "{d}/c.yaml", prep=write("c.yaml", "hello\n"), expect="mapping"),
        C("train-config-duplicate-key", "train", "--config", "{d}/c.yaml",
          prep=write("c.yaml", "run:\n  seed: 1\n  seed: 2\n"), expect="given twice"),
        C("train-config-binary", "train", "--config", "{d}/c.yaml", prep=write("c.yaml", bytes(range(256)) * 4)),
        C("train-config-nul", "train", "--config", "{d}/c.yaml", prep=write("c.yaml", "run:\x00\n")),
        C("train-config-huge", "train", "--config", "{d}/c.yaml", prep=write("c.yaml", "# filler\n" * 250_000),
          expect="bytes"),
        C("train-config-section-as-value", "train", "--config", "{d}/c.yaml", prep=write("c.yaml", "policy: 3\n"),
          expect="policy"),
        C("train-config-unknown-section", "train", "--config", "{d}/c.yaml", prep=write("c.yaml", "algo: {}\n"),
          expect="algo"),
        C("train-config-python-tag", "train", "--config", "{d}/c.yaml",
          prep=write("c.yaml", "run: !!python/object/apply:os.system [echo hi]\n"), expect="line 1"),
        C("train-config-nested-too-deep", "train", "--config", "{d}/c.yaml", prep=write("c.yaml", "[" * 100_000),
          expect="YAML"),
        C("train-config-is-device", "train", "--config", "{d}/c.yaml", prep=symlink("c.yaml", "/dev/zero"),
          expect="special file"),
        C("train-no-config", "train", expect="--config"),
        # --set
        C("train-set-no-equals", *fresh, "--set", "policy.hidden", expect="dotted.key=value"),
        C("train-set-empty-key", *fresh, "--set", "=3", expect="dotted.key=value"),
        C("train-set-unknown-key", *fresh, "--set", "trpo.dleta=1", expect="trpo.dleta"),
        C("train-set-hidden-zero", *fresh, "--set", "policy.hidden=0", expect="policy.hidden"),
        C("train-set-delta-nan", *fresh, "--set", "trpo.delta=nan", expect="trpo.delta"),
        C("train-set-delta-inf", *fresh, "--set", "trpo.delta=.inf", expect="trpo.delta"),
        C("train-set-seed-negative", *fresh, "--set", "run.seed=-1", expect="run.seed"),
        C("train-set-credit-centralized", *fresh, "--set", "run.scheme=centralized", "--set",
          "trpo.credit=difference", expect="trpo.credit=difference"),
        C("train-set-credit-bogus", *fresh, "--set", "trpo.credit=own", expect="trpo.credit"),
        C("train-set-power-levels-bogus", *fresh, "--set", "policy.power_levels=three", expect="policy.power_levels"),
        C("train-set-eval-method-bogus", *fresh, "--set", "run.eval_methods=[bogus]", expect="run.eval_methods"),
        C("train-set-init-bogus", *fresh, "--set", "policy.init=wmmse", expect="policy.init"),
        C("train-set-init-centralized", *fresh, "--set", "run.scheme=centralized", "--set",
          "policy.init=cell_optimum", expect="policy.init=cell_optimum: for the decentralized schemes"),
        C("train-set-cell-optimum-k9", *fresh, "--set", "scenario.users_per_cell=9", "--set",
          "run.eval_methods=[cell_optimum]", expect="'cell_optimum' is certified for at most 8 users per cell"),
        C("train-set-section-as-list", *fresh, "--set", "policy=[1]", expect="policy"),
        C("train-set-a2c-partial", *fresh, "--set", "run.algo=a2c", expect="run.algo"),
        C("train-set-memory-network", *fresh, "--set", "policy.hidden=4096", "--set", "policy.layers=16",
          expect="GiB", isolate=True),
        C("train-set-memory-episodes", *fresh, "--set", "trpo.episodes=1000000", expect="trpo.episodes",
          isolate=True),
        C("train-set-memory-eval", *fresh, "--set", "scenario.kind=7cell", "--set", "scenario.users_per_cell=64",
          "--set", "run.eval_methods=[max_power]", "--set", "run.eval_slots=1000000", expect="run.eval_slots",
          isolate=True),
        # run folders to create
        C("train-run-dir-is-file", "train", "--config", "{demo}", "--run-dir", "{d}/f", prep=write("f", "x"),
          expect="not a folder"),
        C("train-run-dir-under-file", "train", "--config", "{demo}", "--run-dir", "{d}/f/run", prep=write("f", "x"),
          expect="is a file"),
        C("train-run-dir-unwritable", "train", "--config", "{demo}", "--run-dir", "{d}/ro/run",
          prep=unwritable("ro"), expect="cannot write", unwritable=True),
        C("train-run-dir-not-empty", "train", "--config", "{demo}", "--run-dir", "{d}/run", prep=write("run/x", "x"),
          expect="not empty"),
        C("train-default-run-dir-under-file", "train", "--config", "{demo}", prep=write("runs", "x"),
          expect="is a file"),
        # --resume: the folder
        C("train-resume-and-config", "train", "--resume", T, "--config", "{demo}", expect="--config"),
        C("train-resume-and-run-dir", "train", "--resume", T, "--run-dir", "{d}/r", expect="--run-dir"),
        C("train-resume-not-found", "train", "--resume", "{d}/nope", expect="not found"),
        C("train-resume-a-file", "train", "--resume", "{d}/f", prep=write("f", "x"), expect="found a file"),
        C("train-resume-empty-folder", "train", "--resume", "{d}/e", prep=mkdir("e"), expect="no config.yaml"),
        C("train-resume-config-binary", *resume, prep=write("trpo/config.yaml", bytes(range(256))), expect="UTF-8"),
        C("train-resume-config-list", *resume, prep=write("trpo/config.yaml", "- a\n- b\n"), expect="mapping"),
        C("train-resume-config-empty", *resume, prep=write("trpo/config.yaml", ""), expect="missing"),
        C("train-resume-config-cut-8-lines", *resume, prep=keep_lines("trpo/config.yaml", 8), expect="missing"),
        C("train-resume-config-folder", *resume, prep=mkdir("trpo/config.yaml"), expect="folder"),
        C("train-resume-config-bad-value", *resume, prep=edit("trpo/config.yaml", "hidden: 8", "hidden: -3"),
          expect="policy.hidden"),
        C("train-resume-config-unknown-key", *resume, prep=edit("trpo/config.yaml", "policy:\n", "policy:\n  x: 1\n"),
          expect="policy.x"),
        C("train-resume-zo-folder", "train", "--resume", Z, "--no-progress", expect="unknown key"),
        C("train-resume-meta-garbage", *resume, prep=write("trpo/meta.json", "{not json"), expect="meta.json"),
        C("train-resume-meta-list", *resume, prep=write("trpo/meta.json", "[1, 2]"), expect="JSON object"),
        C("train-resume-meta-missing", *resume, prep=remove("trpo/meta.json"), expect="meta.json"),
        C("train-resume-meta-not-utf8", *resume, prep=write("trpo/meta.json", b'{"seed": "\xff"}'), expect="UTF-8"),
        C("train-resume-meta-seed-mismatch", *resume, prep=edit("trpo/meta.json", '"seed": 0', '"seed": 7'),
          expect="seed"),
        C("train-resume-metrics-bad-iteration", *resume, prep=edit_line("trpo/metrics.csv", 1, lambda s: "abc" +
                                                                           s[s.index(","):]), expect="iteration"),
        C("train-resume-metrics-not-utf8", *resume, prep=write("trpo/metrics.csv", b"iteration,x\n\xff,1\n"),
          expect="UTF-8"),
        C("train-resume-metrics-nul", *resume, prep=write("trpo/metrics.csv", "iteration,x\n0,\x00\n1,2\n"),
          expect="NUL"),
        C("train-resume-metrics-short", *resume, prep=keep_lines("trpo/metrics.csv", 2), expect="rows"),
        C("train-resume-metrics-folder", *resume, prep=mkdir("trpo/metrics.csv"), expect="metrics"),
        C("train-resume-messages-bad-kind", *resume, prep=edit_line("trpo/messages.csv", 1,
                                                                     lambda s: s.replace("POWER_VECTOR", "BOGUS", 1)
                                                                     .replace("PARAMETERS", "BOGUS", 1)
                                                                     .replace("CSI", "BOGUS", 1)),
          expect="message log"),
        C("train-resume-messages-short", *resume, prep=keep_lines("trpo/messages.csv", 5), expect="rows"),
        C("train-resume-messages-bad-int", *resume, prep=edit_line("trpo/messages.csv", 2, lambda s: s.replace(
            ",", ",x", 3)), expect="message log"),
        C("train-resume-summary-is-folder", *resume, prep=mkdir("trpo/summary.json/x"), expect="summary.json"),
        C("train-resume-unwritable", *resume, prep=lambda d: (d / "trpo").chmod(0o555), expect="cannot write",
          unwritable=True),
        # --resume: the checkpoint
        C("train-resume-ckpt-truncated", *resume, prep=cut(TCK), expect="truncated"),
        C("train-resume-ckpt-empty", *resume, prep=cut(TCK, 0), expect="empty"),
        C("train-resume-ckpt-garbage", *resume, prep=write(TCK, b"garbage " * 64), expect="checkpoint"),
        C("train-resume-ckpt-pickled-object", *resume, prep=ckpt("trpo", _pickled_state), expect="pickled object"),
        C("train-resume-ckpt-numpy-pickled", *resume, prep=ckpt("trpo", _np_state), expect="pickled object"),
        C("train-resume-ckpt-raw-pickle", *resume, prep=ckpt("trpo", raw=b"\x80\x04\x95\x05\x00\x00\x00\x00\x00"
                                                                    b"\x00\x00]\x94."), expect="weights only"),
        C("train-resume-ckpt-list", *resume, prep=ckpt("trpo", lambda st: [1, 2, 3]), expect="mapping"),
        C("train-resume-ckpt-theta-wrong", *resume, prep=ckpt("trpo", lambda st: {**st, "theta": st["theta"][:5]}),
          expect="theta"),
        C("train-resume-ckpt-missing-keys", *resume, prep=ckpt("trpo", lambda st: {"iteration": 2}),
          expect="theta"),
        C("train-resume-ckpt-iteration-mismatch", *resume, prep=ckpt("trpo", lambda st: {**st, "iteration": 5}),
          expect="iteration"),
        C("train-resume-ckpt-bad-rng", *resume, prep=ckpt("trpo", lambda st: {**st, "air_rng": {"a": 1}}),
          expect="air_rng"),
        C("train-resume-ckpt-bad-opt", *resume, prep=ckpt("trpo", lambda st: {**st, "value_opt": [1]}),
          expect="value_opt"),
        C("train-resume-ckpt-bad-rows", *resume, prep=ckpt("trpo", lambda st: {**st, "rows": {"metrics": "x"}}),
          expect="rows"),
        C("train-resume-checkpoints-is-file", *resume,
          prep=[remove("trpo/checkpoints"), write("trpo/checkpoints", "x")], expect="checkpoints"),
        # --resume: what --set may change
        C("train-resume-set-hidden", *resume, "--set", "policy.hidden=32", expect="policy.hidden"),
        C("train-resume-set-scenario", *resume, "--set", "scenario.kind=7cell", expect="scenario.kind"),
        C("train-resume-set-scheme", *resume, "--set", "run.scheme=full", expect="run.scheme"),
        C("train-resume-set-seed", *resume, "--set", "run.seed=5", expect="run.seed"),
        C("train-resume-set-delta", *resume, "--set", "trpo.delta=0.02", expect="trpo.delta"),
        C("train-resume-set-bad-value", *resume, "--set", "run.iterations=-1", expect="run.iterations"),
        C("train-resume-iterations-below", *resume, "--set", "run.iterations=1", expect="run.iterations"),
    ]


def _evaluate_cases() -> list[Case]:
    ev = ("evaluate", T)
    return [
        C("evaluate-slots-negative", *ev, "--slots", "-5", expect="--slots"),
        C("evaluate-slots-zero", *ev, "--slots", "0", expect="--slots"),
        C("evaluate-seed-negative", *ev, "--seed", "-1", expect="--seed"),
        C("evaluate-p-max-nan", *ev, "--p-max-dbm", "nan", expect="--p-max-dbm"),
        C("evaluate-p-max-huge", *ev, "--p-max-dbm", "1e6", expect="--p-max-dbm"),
        C("evaluate-methods-bogus", *ev, "--methods", "bogus", expect="bogus"),
        C("evaluate-methods-empty", *ev, "--methods", ",", expect="--methods"),
        C("evaluate-slots-memory", *ev, "--slots", "10000000", expect="GiB", isolate=True),
        C("evaluate-no-run-dir", "evaluate", expect="run_dir"),
        C("evaluate-out-is-file", *ev, "--out", "{d}/f", prep=write("f", "x"), expect="not a folder"),
        C("evaluate-out-under-file", *ev, "--out", "{d}/f/o", prep=write("f", "x"), expect="is a file"),
        C("evaluate-out-unwritable", *ev, "--out", "{d}/ro/o", prep=unwritable("ro"), expect="cannot write",
          unwritable=True),
        C("evaluate-default-out-is-file", *ev, prep=[remove("trpo/eval"), write("trpo/eval", "x")],
          expect="not a folder"),
        C("evaluate-out-summary-is-folder", *ev, "--out", "{d}/o", prep=mkdir("o/summary.json"),
          expect="summary.json"),
        C("evaluate-gains-missing", *ev, "--gains", "{d}/nope.npz", expect="does not exist"),
        C("evaluate-gains-empty", *ev, "--gains", "{d}/g.npz", prep=write("g.npz", b""), expect="empty"),
        C("evaluate-gains-wrong-cells", *ev, "--gains", "{d}/g.npz", prep=gains("g.npz", cells=7, K=1),
          expect="trained on 3 x 2"),
        C("evaluate-gains-no-cells", *ev, "--gains", "{d}/g.npz", prep=gains("g.npz", cells=None, K=None),
          expect="trained on 3 x 2"),
        C("evaluate-gains-and-slots", *ev, "--gains", "{d}/g.npz", "--slots", "5", prep=gains("g.npz"),
          expect="--slots"),
        C("evaluate-gains-and-p-max", *ev, "--gains", "{d}/g.npz", "--p-max-dbm", "40", prep=gains("g.npz"),
          expect="--p-max-dbm"),
        C("evaluate-not-found", "evaluate", "{d}/nope", expect="not found"),
        C("evaluate-a-file", "evaluate", "{d}/f", prep=write("f", "x"), expect="found a file"),
        C("evaluate-empty-folder", "evaluate", "{d}/e", prep=mkdir("e"), expect="no config.yaml"),
        C("evaluate-config-binary", *ev, prep=write("trpo/config.yaml", bytes(range(256))), expect="UTF-8"),
        C("evaluate-config-list", *ev, prep=write("trpo/config.yaml", "[1, 2]\n"), expect="mapping"),
        C("evaluate-config-cut-8-lines", *ev, prep=keep_lines("trpo/config.yaml", 8), expect="missing"),
        C("evaluate-config-cut-mid-line", *ev, prep=cut("trpo/config.yaml", 213), expect="config.yaml"),
        C("evaluate-config-empty", *ev, prep=write("trpo/config.yaml", ""), expect="missing"),
        C("evaluate-config-malformed", *ev, prep=write("trpo/config.yaml", "policy: {hidden: 8\n"), expect="line"),
        C("evaluate-zo-folder", "evaluate", Z, expect="unknown key"),
        C("evaluate-no-checkpoint", *ev, prep=remove("trpo/checkpoints"), expect="no checkpoint"),
        C("evaluate-ckpt-truncated", *ev, prep=cut(TCK), expect="truncated"),
        C("evaluate-ckpt-empty", *ev, prep=cut(TCK, 0), expect="empty"),
        C("evaluate-ckpt-garbage", *ev, prep=write(TCK, bytes(range(256)) * 8), expect="checkpoint"),
        C("evaluate-ckpt-pickled-object", *ev, prep=ckpt("trpo", _pickled_state), expect="pickled object"),
        C("evaluate-ckpt-theta-wrong", *ev, prep=ckpt("trpo", lambda st: {**st, "theta": st["theta"][:5]}),
          expect="theta"),
        C("evaluate-meta-garbage", *ev, prep=write("trpo/meta.json", "nope"), expect="meta.json"),
    ]


def _baselines_cases() -> list[Case]:
    b = ("baselines", "--slots", "5")
    g = ("baselines", "--gains", "{d}/g.npz")
    good_G = npy(np.ones((2, 6, 6)))
    return [
        C("baselines-seed-negative", *b, "--seed", "-1", expect="--seed"),
        C("baselines-seed-not-int", *b, "--seed", "abc", expect="--seed"),
        C("baselines-slots-zero", "baselines", "--slots", "0", expect="--slots"),
        C("baselines-slots-negative", "baselines", "--slots", "-5", expect="--slots"),
        C("baselines-slots-memory", "baselines", "--scenario", "7cell", "--slots", "10000000", expect="GiB",
          isolate=True),
        C("baselines-links-memory", "baselines", "--scenario", "links", "--links", "1024", "--slots", "100000",
          expect="GiB", isolate=True),
        C("baselines-users-per-cell-zero", *b, "--users-per-cell", "0", expect="--users-per-cell"),
        C("baselines-users-per-cell-huge", *b, "--users-per-cell", "100000", expect="--users-per-cell"),
        C("baselines-links-zero", *b, "--scenario", "links", "--links", "0", expect="--links"),
        C("baselines-sum-power-nan", *b, "--sum-power-dbm", "nan", expect="--sum-power-dbm"),
        C("baselines-sum-power-huge", *b, "--sum-power-dbm", "1e6", expect="--sum-power-dbm"),
        C("baselines-eps-nan", *b, "--eps", "nan", expect="--eps"),
        C("baselines-eps-inf", *b, "--eps", "inf", expect="--eps"),
        C("baselines-eps-zero", *b, "--eps", "0", expect="--eps"),
        C("baselines-single-negative", *b, "--single", "-1", expect="--single"),
        C("baselines-methods-bogus", *b, "--methods", "wmmse,bogus", expect="bogus"),
        C("baselines-methods-empty", *b, "--methods", ",", expect="--methods"),
        C("baselines-optimum-too-large", *b, "--scenario", "7cell", "--methods", "optimum", expect="optimum"),
        C("baselines-scenario-bogus", *b, "--scenario", "9cell", expect="--scenario"),
        C("baselines-gains-and-scenario", *b, "--scenario", "3cell", "--gains", "{d}/g.npz", prep=gains("g.npz"),
          expect="not allowed with"),
        C("baselines-unknown-flag", *b, "--bogus", expect="--bogus"),
        C("baselines-out-is-file", *b, "--out", "{d}/f", prep=write("f", "x"), expect="not a folder"),
        C("baselines-out-under-file", *b, "--out", "{d}/f/o", prep=write("f", "x"), expect="is a file"),
        C("baselines-out-unwritable", *b, "--out", "{d}/ro/o", prep=unwritable("ro"), expect="cannot write",
          unwritable=True),
        C("baselines-out-summary-is-folder", *b, "--out", "{d}/o", prep=mkdir("o/summary.json"),
          expect="summary.json"),
        C("baselines-gains-missing", *g, expect="does not exist"),
        C("baselines-gains-empty", *g, prep=write("g.npz", b""), expect="empty"),
        C("baselines-gains-npy", *g, prep=write("g.npz", npy(np.ones((2, 6, 6)))), expect=".npy"),
        C("baselines-gains-huge-header", *g, prep=npz_members("g.npz", {"G.npy": npy_header((100000, 1000, 1000)),
                                                                         **SCALARS}), expect="GiB", isolate=True),
        C("baselines-gains-pickled-object", *g, prep=gains("g.npz", G=np.array([{"a": 1}], dtype=object)),
          expect="objects"),
        C("baselines-gains-no-G", *g, prep=gains("g.npz", G=None), expect="missing"),
        C("baselines-gains-G-2d", *g, prep=gains("g.npz", G=np.ones((6, 6))), expect="G"),
        C("baselines-gains-G-complex", *g, prep=gains("g.npz", G=np.ones((2, 6, 6), dtype=complex)), expect="G"),
        C("baselines-gains-G-nan", *g, prep=gains("g.npz", G=np.full((2, 6, 6), np.nan)), expect="G"),
        C("baselines-gains-G-strings", *g, prep=gains("g.npz", G=np.array([["a"]])), expect="G"),
        C("baselines-gains-p-max-strings", *g, prep=gains("g.npz", p_max_w=np.array(["big"])), expect="p_max_w"),
        C("baselines-gains-p-max-shape", *g, prep=gains("g.npz", p_max_w=np.ones(5)), expect="p_max_w"),
        C("baselines-gains-noise-negative", *g, prep=gains("g.npz", noise_w=np.float64(-1.0)), expect="noise_w"),
        C("baselines-gains-cells-mismatch", *g, prep=gains("g.npz", cells=4, K=2, G=np.ones((2, 6, 6))),
          expect="cells"),
        C("baselines-gains-folder", "baselines", "--gains", "{d}", expect="not a file"),
        C("baselines-gains-is-device", *g, prep=symlink("g.npz", "/dev/zero"), expect="not a file"),
        C("baselines-gains-truncated", *g, prep=[gains("g.npz", n=50), cut("g.npz")], expect="g.npz"),
        C("baselines-gains-text", *g, prep=write("g.npz", "G = [[1]]\n"), expect="not a readable .npz"),
        C("baselines-gains-bad-header", *g, prep=npz_members("g.npz", {"G.npy": b"\x93NUMPY\x01\x00\x10\x00{garbage}"
                                                                        + b" " * 6 + b"\n", **SCALARS}),
          expect="header"),
        C("baselines-gains-short-data", *g, prep=npz_members("g.npz", {"G.npy": npy_header((2, 6, 6), data=b"x" * 10),
                                                                        **SCALARS}), expect="truncated"),
        C("baselines-gains-zip-of-text", *g, prep=npz_members("g.npz", {"readme.txt": b"hello"}), expect="missing"),
        C("baselines-gains-sum-power-no-cells", *g, "--sum-power-dbm", "40", prep=gains("g.npz", cells=None, K=None),
          expect="cells"),
        C("baselines-gains-memory-budget", *g, prep=npz_members("g.npz", {"G.npy": npy_header((10_000_000, 56, 56)),
                                                                           **SCALARS}), expect="GiB", isolate=True),
        C("baselines-gains-no-bandwidth", *g, prep=npz_members("g.npz", {
            "G.npy": good_G, "noise_w.npy": SCALARS["noise_w.npy"], "p_max_w.npy": SCALARS["p_max_w.npy"]}),
          expect="bandwidth_hz"),
    ]


def _zo_cases() -> list[Case]:
    fresh = ("zo", "--config", "{zo_demo}", "--run-dir", "{d}/run")
    resume = ("zo", "--resume", Z, "--no-progress")
    sweep = ("zo-sweep", "--out", "{d}/o", "--iterations", "1")
    return [
        C("zo-config-not-utf8", "zo", "--config", "{d}/c.yaml", prep=write("c.yaml", b"\xff\xfe\x00run: 1"),
          expect="UTF-8"),
        C("zo-config-malformed", "zo", "--config", "{d}/c.yaml", prep=write("c.yaml", "algo:\n  b1: [\n"),
          expect="line"),
        C("zo-config-list", "zo", "--config", "{d}/c.yaml", prep=write("c.yaml", "[algo]\n"), expect="mapping"),
        C("zo-config-duplicate-section", "zo", "--config", "{d}/c.yaml", prep=write("c.yaml", "run: {}\nrun: {}\n"),
          expect="given twice"),
        C("zo-set-hidden-huge", *fresh, "--set", "policy.hidden=[100000000]", expect="GiB", isolate=True),
        C("zo-set-hidden-negative", *fresh, "--set", "policy.hidden=[-1]", expect="policy.hidden"),
        C("zo-set-hidden-zero", *fresh, "--set", "policy.hidden=[0]", expect="policy.hidden"),
        C("zo-set-hidden-second-zero", *fresh, "--set", "policy.hidden=[10, 0]", expect="policy.hidden"),
        C("zo-set-hidden-float", *fresh, "--set", "policy.hidden=[1.5]", expect="policy.hidden"),
        C("zo-set-hidden-scalar", *fresh, "--set", "policy.hidden=10", expect="policy.hidden"),
        C("zo-set-per-link-huge", *fresh, "--set", "policy.per_link_hidden=10;10;10;10;100000000", expect="GiB",
          isolate=True),
        C("zo-set-per-link-bad", *fresh, "--set", "policy.per_link_hidden=a;b", expect="policy.per_link_hidden"),
        C("zo-set-per-link-zero", *fresh, "--set", "policy.per_link_hidden=10;10;0;10;10",
          expect="policy.per_link_hidden"),
        C("zo-set-wide-network", *fresh, "--set", "scenario.n_links=256", "--set", "policy.hidden=[1024]",
          expect="GiB", isolate=True),
        C("zo-set-batch-memory", *fresh, "--set", "scenario.n_links=256", "--set", "algo.b1=1000000", "--set",
          "algo.b2=1000000", expect="algo.b1", isolate=True),
        C("zo-set-eval-memory", *fresh, "--set", "run.eval_sequences=100000", "--set", "run.eval_slots=100000",
          expect="run.eval_sequences", isolate=True),
        C("zo-set-path-loss-inf", *fresh, "--set", "scenario.path_loss=[.inf, 1, 1, 1, 1]",
          expect="scenario.path_loss"),
        C("zo-set-layer-scale-nan", *fresh, "--set", "algo.layer_scale=[.nan, 1]", expect="algo.layer_scale"),
        C("zo-set-method-bogus", *fresh, "--set", "run.method=bogus", expect="run.method"),
        C("zo-set-links-one", *fresh, "--set", "scenario.n_links=1", expect="scenario.n_links"),
        C("zo-run-dir-is-file", "zo", "--run-dir", "{d}/f", prep=write("f", "x"), expect="not a folder"),
        C("zo-run-dir-under-file", "zo", "--run-dir", "{d}/f/run", prep=write("f", "x"), expect="is a file"),
        C("zo-run-dir-unwritable", "zo", "--run-dir", "{d}/ro/run", prep=unwritable("ro"), expect="cannot write",
          unwritable=True),
        C("zo-default-run-dir-under-file", "zo", prep=write("runs", "x"), expect="is a file"),
        C("zo-resume-and-config", "zo", "--resume", Z, "--config", "{zo_demo}", expect="--config"),
        C("zo-resume-ckpt-truncated", *resume, prep=cut(ZCK), expect="truncated"),
        C("zo-resume-ckpt-pickled-object", *resume, prep=ckpt("zo", _pickled_state), expect="pickled object"),
        C("zo-resume-ckpt-theta-wrong", *resume, prep=ckpt("zo", _zo_theta_wrong), expect="parameters"),
        C("zo-resume-ckpt-state-damaged", *resume, prep=ckpt("zo", _zo_state_damaged), expect="does not fit"),
        C("zo-resume-ckpt-no-trainer", *resume, prep=ckpt("zo", lambda st: {"iteration": 2}), expect="trainer"),
        C("zo-resume-config-cut-200", *resume, prep=cut("zo/config.yaml", 200), expect="missing"),
        C("zo-resume-config-binary", *resume, prep=write("zo/config.yaml", b"\x00\x01\x02"), expect="config"),
        C("zo-resume-set-hidden", *resume, "--set", "policy.hidden=[32]", expect="policy.hidden"),
        C("zo-resume-set-n-links", *resume, "--set", "scenario.n_links=7", expect="scenario.n_links"),
        C("zo-resume-set-method", *resume, "--set", "run.method=adam", expect="run.method"),
        C("zo-resume-set-backend", *resume, "--set", "run.backend=ray", expect="run.backend"),
        C("zo-resume-set-no-equals", *resume, "--set", "run.iterations", expect="dotted.key=value"),
        C("zo-resume-meta-bad", *resume, prep=write("zo/meta.json", '{"seed": '), expect="meta.json"),
        C("zo-resume-messages-bad", *resume, prep=edit_line("zo/messages.csv", 1, lambda s: "bogus" +
                                                              s[s.index(","):]), expect="message log"),
        C("zo-resume-trpo-folder", "zo", "--resume", T, "--no-progress", expect="unknown key"),
        C("zo-sweep-experiments-typo", *sweep, "--experiments", "fig2,fgi3", expect="fgi3"),
        C("zo-sweep-experiments-empty", *sweep, "--experiments", ",", expect="--experiments"),
        C("zo-sweep-seeds-zero", *sweep, "--seeds", "0", expect="--seeds"),
        C("zo-sweep-iterations-zero", "zo-sweep", "--out", "{d}/o", "--iterations", "0", expect="--iterations"),
        C("zo-sweep-scale-bogus", *sweep, "--scale", "huge", expect="--scale"),
        C("zo-sweep-memory", *sweep, "--set", "policy.hidden=[100000000]", expect="GiB", isolate=True),
        C("zo-sweep-config-malformed", *sweep, "--config", "{d}/c.yaml", prep=write("c.yaml", "run: : :\n"),
          expect="line"),
        C("zo-sweep-out-is-file", "zo-sweep", "--out", "{d}/f", prep=write("f", "x"), expect="not a folder"),
        C("zo-sweep-out-under-file", "zo-sweep", "--out", "{d}/f/o", prep=write("f", "x"), expect="is a file"),
        C("zo-sweep-out-unwritable", "zo-sweep", "--out", "{d}/ro/o", prep=unwritable("ro"), expect="cannot write",
          unwritable=True),
        C("zo-sweep-out-csv-is-folder", *sweep, "--experiments", "fig2", prep=mkdir("o/zo_fig2.csv"),
          expect="zo_fig2.csv"),
    ]


def _zo_theta_wrong(st: Any) -> Any:
    links = st["trainer"]["links"]
    links["agents"][0]["theta"] = {"__ndarray__": links["agents"][0]["theta"]["__ndarray__"][:3]}
    return st


def _zo_state_damaged(st: Any) -> Any:
    st["trainer"]["links"]["agents"][1]["seen"] = [[1]]
    return st


CASES: list[Case] = _trpo_cases() + _evaluate_cases() + _baselines_cases() + _zo_cases()


# ---------------------------------------------------------------------------------------------- running a case
@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


class ReachedWork(BaseException):
    """A bad command got past the checks to where the run starts (a BaseException: no handler may eat it)."""


@contextlib.contextmanager
def _no_work() -> Iterator[None]:
    """Replace what starts real work (backends, Ray, trainers' loops, the classical methods, sweeps) by a
    trap for the duration."""
    import coordinator.trpo.backend as tb
    import coordinator.zo.ray_links as rl
    import coordinator.zo.train as zt
    import deploy.commands.baselines as cb
    import deploy.commands.train as ct
    import deploy.sweeps as sw
    import radio.evaluation as ev

    def trap(*_a: Any, **_k: Any) -> Any:
        raise ReachedWork("the command got past its checks and started work")

    targets = [(tb, "make_backend"), (rl, "RayLinks"), (zt, "train"), (cb, "run_methods"), (ev, "run_methods"),
               (ct, "evaluate_run"), (sw, "run_experiment")]
    saved = [(m, n, getattr(m, n)) for m, n in targets]
    for m, n in targets:
        setattr(m, n, trap)
    try:
        yield
    finally:
        for m, n, v in saved:
            setattr(m, n, v)


def run_in_process(argv: Sequence[str], cwd: Path) -> Outcome:
    """``bsemu argv`` through :func:`deploy.cli.main` in this process, in ``cwd``, with work trapped."""
    from deploy.cli import main

    out, err = io.StringIO(), io.StringIO()
    here, env = os.getcwd(), os.environ.get("BSEMU_MEMORY_GB")
    os.chdir(cwd)
    os.environ["BSEMU_MEMORY_GB"] = MEMORY_GB
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _no_work():
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if isinstance(exc.code, str):
                    err.write(exc.code + "\n")
            except ReachedWork as exc:
                code = 1
                err.write(f"REACHED WORK: {exc}\n")
            except BaseException:  # noqa: BLE001 - what the table looks for
                code = 1
                traceback.print_exc(file=err)
    finally:
        os.chdir(here)
        if env is None:
            os.environ.pop("BSEMU_MEMORY_GB", None)
        else:
            os.environ["BSEMU_MEMORY_GB"] = env
    return Outcome(int(code), out.getvalue(), err.getvalue())


_CHILD = f"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({CHILD_AS_LIMIT}, {CHILD_AS_LIMIT}))
from tests.deploy.test_bad_input import run_in_process
from pathlib import Path
out = [run_in_process(argv, Path(cwd)).__dict__ for argv, cwd in json.load(sys.stdin)]
sys.stdout.write("\\n@@RESULTS@@" + json.dumps(out))
"""


def run_isolated(jobs: Sequence[tuple[Sequence[str], Path]]) -> list[Outcome]:
    """Run ``(argv, cwd)`` jobs in one child process under an address-space limit, each as
    :func:`run_in_process` does."""
    if not jobs:
        return []
    env = {**os.environ, "BSEMU_MEMORY_GB": MEMORY_GB, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps([[list(a), str(c)] for a, c in jobs]),
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if "@@RESULTS@@" not in r.stdout:
        msg = f"child ended with {r.returncode} before reporting: {r.stderr[-2000:]}"
        return [Outcome(1, "", "Traceback (child process)\n" + msg) for _ in jobs]
    return [Outcome(**o) for o in json.loads(r.stdout.split("@@RESULTS@@", 1)[1])]


# ---------------------------------------------------------------------------------------------- folders
def build_sources(root: Path) -> dict[str, Path]:
    """A tiny trained TRPO run and a tiny zeroth-order run (2 iterations, a checkpoint each), made once."""
    root.mkdir(parents=True, exist_ok=True)
    runs = {"trpo": ["train", "--config", str(DEMO), *TRPO_TINY], "zo": ["zo", *ZO_TINY]}
    procs = {}
    for name, argv in runs.items():
        if (root / name / "checkpoints" / "ckpt-00000002.pt").is_file():
            continue
        shutil.rmtree(root / name, ignore_errors=True)
        procs[name] = subprocess.Popen([sys.executable, "-m", "deploy.cli", *argv, "--run-dir", str(root / name),
                                        "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    for name, p in procs.items():
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"building the {name} run folder failed: {err}"
    return {name: root / name for name in runs}


def placeholders(d: Path) -> dict[str, str]:
    return {"d": str(d), "demo": str(DEMO), "zo_demo": str(ZO_DEMO), "trpo": str(d / "trpo"), "zo": str(d / "zo")}


def prepare(case: Case, d: Path, sources: dict[str, Path]) -> tuple[list[str], str | None]:
    """Make the case's folder; returns its command line, or (argv, why) when it must be skipped here."""
    d.mkdir(parents=True, exist_ok=True)
    for name, src in sources.items():
        if any("{" + name + "}" in a for a in case.argv):
            shutil.copytree(src, d / name)
    for p in case.prepare:
        p(d)
    argv = [a.format(**placeholders(d)) for a in case.argv]
    if case.unwritable and _writable_anyway(d):
        return argv, "chmod does not stop this user (root?) from writing"
    return argv, None


def _writable_anyway(d: Path) -> bool:
    """Whether some read-only (0o555) folder under ``d`` still takes a new file (root ignores modes)."""
    for p in [d, *d.rglob("*")]:
        if p.is_dir() and not p.stat().st_mode & 0o200:
            try:
                os.rmdir(tempfile.mkdtemp(dir=p))
                return True
            except OSError:
                return False
    return False


def snapshot(d: Path) -> dict[str, tuple]:
    """Every entry under ``d``: its kind, mode and (for files) a hash of its bytes."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(d):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(d))
            if stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[rel] = ("dir" if stat.S_ISDIR(st.st_mode) else "other", stat.S_IMODE(st.st_mode))
    return out


def restore_modes(d: Path) -> None:
    for p in [d, *d.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)


@dataclass
class Result:
    case: Case
    outcome: Outcome | None = None
    changed: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def first_line(self) -> str:
        return self.outcome.stderr.strip().splitlines()[0] if self.outcome and self.outcome.stderr.strip() else ""

    @property
    def traceback(self) -> bool:
        return self.outcome is not None and "Traceback" in self.outcome.stderr + self.outcome.stdout

    def problems(self) -> list[str]:
        """What is wrong with how the case ended (empty: it ended as it must)."""
        if self.skipped or self.outcome is None:
            return []
        o, c = self.outcome, self.case
        lines = o.stderr.strip().splitlines()
        bad = []
        if o.code != 2:
            bad.append(f"exit code {o.code}, expected 2")
        if self.traceback:
            bad.append("a traceback")
        if len(lines) != 1:
            bad.append(f"{len(lines)} lines on stderr, expected 1")
        if not self.first_line.startswith(f"bsemu {c.command}: error:"):
            bad.append(f"stderr does not start with 'bsemu {c.command}: error:'")
        if c.expect and c.expect not in o.stderr:
            bad.append(f"the message does not mention {c.expect!r}")
        if self.changed:
            bad.append(f"files changed or created: {self.changed[:5]}")
        return bad


def run_cases(cases: Sequence[Case], workdir: Path, sources: dict[str, Path]) -> list[Result]:
    """Prepare every case under ``workdir``, run it (isolated ones together in the memory-limited child),
    and compare its folder before and after."""
    results, before, jobs = [], {}, []
    for i, case in enumerate(cases):
        d = workdir / f"{i:03d}-{case.name}"
        argv, skip = prepare(case, d, sources)
        res = Result(case, skipped=skip)
        results.append(res)
        if skip:
            continue
        before[i] = (d, snapshot(d))
        if case.isolate:
            jobs.append((i, argv, d))
        else:
            res.outcome = run_in_process(argv, d)
    for (i, _, _), o in zip(jobs, run_isolated([(a, d) for _, a, d in jobs]), strict=True):
        results[i].outcome = o
    for i, (d, snap) in before.items():
        after = snapshot(d)
        results[i].changed = sorted(k for k in set(snap) | set(after) if snap.get(k) != after.get(k))
    for i in range(len(cases)):
        restore_modes(workdir / f"{i:03d}-{cases[i].name}")
    return results


# ---------------------------------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    return build_sources(tmp_path_factory.mktemp("bad-input-sources"))


@pytest.fixture(scope="module")
def isolated(tmp_path_factory, sources) -> dict[str, Result]:
    """The isolated (memory) cases, run together in one memory-limited child."""
    cases = [c for c in CASES if c.isolate]
    return {r.case.name: r for r in run_cases(cases, tmp_path_factory.mktemp("bad-input-isolated"), sources)}


def test_the_table_is_large_and_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 60
    assert {c.command for c in CASES} == {"train", "evaluate", "baselines", "zo", "zo-sweep"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, sources, tmp_path, request):
    if case.isolate:
        res = request.getfixturevalue("isolated")[case.name]
    else:
        res = run_cases([case], tmp_path, sources)[0]
    if res.skipped:
        pytest.skip(res.skipped)
    assert not res.problems(), f"{case.name}: {'; '.join(res.problems())}\n{res.outcome.stderr}"


def test_a_good_resume_still_runs_after_the_checks(sources, tmp_path):
    """The checks refuse what is wrong, not what is right: the same folders resume and evaluate (with the
    keys a resume may change), and the evaluation writes into its --out."""
    for name in ("trpo", "zo"):
        shutil.copytree(sources[name], tmp_path / name)
    r = subprocess.run([sys.executable, "-m", "deploy.cli", "train", "--resume", str(tmp_path / "trpo"),
                        "--no-progress", "--set", "run.iterations=3", "--set", "run.checkpoint_every=2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "deploy.cli", "zo", "--resume", str(tmp_path / "zo"), "--no-progress",
                        "--set", "run.iterations=3", "--set", "run.eval_slots=3"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = run_in_process(["evaluate", str(tmp_path / "trpo"), "--slots", "4", "--methods", "max_power", "--out",
                          str(tmp_path / "ev")], tmp_path)
    assert out.code == 1 and "REACHED WORK" in out.stderr      # the checks let it through to the work


def test_unwritable_folder_is_refused_even_where_chmod_cannot_stop_this_user(tmp_path, monkeypatch):
    """The write probe's failure (what a read-only folder gives a normal user) is one line, exit 2, for every
    command that writes: simulated by a probe that fails, so that it runs as root too."""
    import deploy.rundir as rundir

    def refuse(*_a: Any, **_k: Any) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rundir.tempfile, "mkdtemp", refuse)
    for argv in (["baselines", "--slots", "5", "--out", str(tmp_path / "o")],
                 ["train", "--config", str(DEMO), "--run-dir", str(tmp_path / "r")],
                 ["zo", "--run-dir", str(tmp_path / "r")],
                 ["zo-sweep", "--out", str(tmp_path / "o"), "--experiments", "fig2"]):
        before = snapshot(tmp_path)
        out = run_in_process(argv, tmp_path)
        assert out.code == 2 and out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith(f"bsemu {argv[0]}: error:") and "cannot write" in out.stderr
        assert snapshot(tmp_path) == before
