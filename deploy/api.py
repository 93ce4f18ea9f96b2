"""bsemu from Python (a notebook, a script): paper 1's configs, training runs, evaluations and baselines,
the same objects and files as the ``bsemu`` command line::

    from deploy import api

    cfg = api.load_config("demo", run__iterations=20, run__backend="inproc")   # a packaged config, overridden
    run_dir, theta = api.train(cfg, progress=lambda m: print(m["iteration"], m["reward_mbps"]))
    api.evaluate(run_dir, slots=500)["methods"]["trpo_partial"]["mean_mbps"]   # beside max_power, wmmse, ...
    api.baselines("7cell", slots=200, methods=["max_power", "wmmse"])
    run = api.read_run(run_dir)                  # config, metrics columns, message and eval summaries
    run.metrics["reward_mbps"]
    api.message_stats(run_dir).per_kind["POWER_VECTOR"]["sent_bytes"]   # messages.csv per kind, per link

With ``run.tensorboard: true`` (the ``tensorboard`` extra) :func:`train` writes metrics.csv's scalars into the
run folder's ``tb/`` too, as ``bsemu train`` does (:mod:`deploy.tensorboard`).

Overrides are keywords: ``section__key=value`` (``run__iterations=20``), a section as a mapping
(``run={"iterations": 20}``) or dotted keys (``**{"run.iterations": 20}``); they are checked as ``--set`` is.
Errors are the command line's: :class:`~coordinator.config.ConfigError` and :class:`~radio.problem.ProblemError`
(both ``ValueError``), :class:`~deploy.errors.UsageError` (run folders), each one line.

Threads: the ``bsemu`` command caps numpy's BLAS at one thread before numpy loads (a threaded OpenBLAS made the
policies' small matmuls ~35x slower on 2 cores) and torch at one. A notebook has loaded numpy long before, so
:func:`train`, :func:`evaluate` and :func:`baselines` apply the same caps at call time (:func:`one_thread`:
the BLAS libraries numpy and scipy loaded, torch, and the environment variables processes started meanwhile
inherit, e.g. an embedded Ray's workers) and restore what was there when they return.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from coordinator.config import ConfigError
from coordinator.trpo.config import TrainConfig
from deploy.config import config_to_dict, from_dict, read_yaml
from deploy.reading import MessageStats, RunRecord, message_stats, read_run
from deploy.threads import blas_threads, one_thread

__all__ = ["configs", "load_config", "train", "evaluate", "baselines", "read_run", "message_stats", "one_thread",
           "blas_threads", "Trained", "RunRecord", "MessageStats"]

ZO_PREFIX = "zo_"      # paper 2's configs (`bsemu zo`), not loaded here


# ---------------------------------------------------------------------------------------------- configs
def _packaged() -> dict[str, Any]:
    """{name: resource} of the YAML configs shipped inside the package (deploy/configs/*.yaml)."""
    folder = importlib.resources.files("deploy") / "configs"
    return {Path(r.name).stem: r for r in folder.iterdir() if r.name.endswith(".yaml")}


def configs() -> list[str]:
    """Names of the packaged paper-1 configs :func:`load_config` takes ('demo', '3cell_centralized', ...)."""
    return sorted(n for n in _packaged() if not n.startswith(ZO_PREFIX))


def _read_config(name_or_path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """(YAML mapping, name) of a packaged config name or a YAML file."""
    p = Path(name_or_path)
    if isinstance(name_or_path, os.PathLike) or p.suffix in (".yaml", ".yml") or len(p.parts) > 1:
        return read_yaml(p), p.stem
    name = str(name_or_path)
    if name.startswith(ZO_PREFIX) and name in _packaged():
        raise ConfigError(f"config {name!r}: a paper-2 (zeroth-order) config, run by `bsemu zo`; deploy.api loads "
                          f"paper 1's configs: {', '.join(configs())}")
    if name not in configs():
        raise ConfigError(f"config {name!r}: expected a packaged config ({', '.join(configs())}) or a YAML file path")
    with importlib.resources.as_file(_packaged()[name]) as f:
        return read_yaml(f), name


def _apply(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with keyword overrides applied (``a__b=v``, ``a={"b": v}`` or ``**{"a.b": v}``)."""
    for key, value in overrides.items():
        dotted = key.replace("__", ".")
        if "." not in dotted and isinstance(value, Mapping):          # a whole section: merge its keys
            section = data.get(dotted)
            data[dotted] = _apply(dict(section) if isinstance(section, Mapping) else {},
                                  {str(k): v for k, v in value.items()})
            continue
        *path, last = dotted.split(".")
        node = data
        for part in path:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{dotted}: {part!r} is a value, not a section")
            node = nxt
        node[last] = list(value) if isinstance(value, tuple) else value
    return data


def load_config(name_or_path: str | os.PathLike = "demo", **overrides: Any) -> TrainConfig:
    """A paper-1 run configuration: a packaged config by name (:func:`configs`; found inside the installed
    package) or a YAML file, plus keyword overrides, validated as ``bsemu train --config ... --set ...`` does
    (types, ranges, choices, the cross-field checks and the memory budget)."""
    from deploy.commands.train import check_config

    data, _ = _read_config(name_or_path)
    cfg = from_dict(TrainConfig, _apply(data, overrides))
    check_config(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------- train
class Trained(NamedTuple):
    """What :func:`train` returns: the run folder and the final policy parameters (flat, float)."""

    run_dir: Path
    theta: np.ndarray


def train(cfg: TrainConfig | str | os.PathLike, run_dir: str | os.PathLike | None = None,
          progress: Callable[[dict[str, float]], Any] | None = None, address: str | None = None,
          name: str | None = None) -> Trained:
    """Train paper 1's policy as ``bsemu train`` does: a new run folder (``run_dir``, default
    ``runs/<time>-<name>``: the config's name, or e.g. ``trpo_partial``) with config.yaml, meta.json,
    metrics.csv, the message log and its summary, checkpoints, curves.png and, when ``run.eval_slots > 0``,
    the held-out evaluation in ``eval/``. ``progress(metrics)`` is called after every iteration with its
    metrics row (``iteration``, ``reward_mbps``, ``kl``, ...). ``cfg`` may be a name or path
    (:func:`load_config` without overrides). ``address``: a Ray cluster for ``run.backend: ray`` (default
    RAY_ADDRESS, else an embedded local Ray). Returns ``(run_dir, theta)``."""
    from deploy import tensorboard as tb
    from deploy.commands.train import check_config
    from deploy.rundir import RunDir, default_run_dir
    from deploy.runs import Run

    if not isinstance(cfg, TrainConfig):
        name = name or _read_config(cfg)[1]
        cfg = load_config(cfg)
    tb.checked(check_config)(cfg)
    name = name or cfg.method_name
    rd = RunDir.create(run_dir if run_dir is not None else default_run_dir(name), config_to_dict(cfg),
                       cfg.run.seed, name, keep=cfg.run.keep_checkpoints)
    with one_thread():
        theta = _train_into(Run(cfg, rd, name, None), progress, address)
    return Trained(rd.path, theta)


def _train_into(run: Any, progress: Callable[[dict[str, float]], Any] | None, address: str | None) -> np.ndarray:
    """``bsemu train``'s loop (:func:`deploy.commands.train.train_loop`) on a fresh run folder, then its
    evaluation (see :func:`train`). A divergence or a dead actor raises :class:`RuntimeError` with the line
    the command prints (the run folder keeps its rows and checkpoints)."""
    from deploy.commands.train import evaluate_run, train_loop

    cfg, rd = run.cfg, run.rd
    out = train_loop(run, address, progress)
    if out.diverged is not None:
        rd.update_meta(end_iteration=out.diverged.iteration)
        raise RuntimeError(f"{rd.path}: {out.diverged}")
    if out.died is not None:
        raise RuntimeError(f"{rd.path}: {out.died['name']} died; continue with: bsemu train --resume {rd.path}")
    if cfg.run.eval_slots > 0:
        evaluate_run(cfg, out.trainer.theta, rd.path / "eval", n=cfg.run.eval_slots, seed=cfg.run.seed + 1,
                     methods=cfg.run.eval_methods)
    rd.update_meta(end_iteration=out.trainer.iteration)
    return out.trainer.theta.detach().numpy().copy()


# ---------------------------------------------------------------------------------------------- evaluate
def _policy_of(run: Any, cfg: TrainConfig | str | os.PathLike | None) -> tuple[TrainConfig, Any]:
    """(config, theta) of a run folder, a :class:`Trained`, or parameters with their ``cfg``."""
    from deploy.commands.train import check_checkpoint, check_config
    from deploy.errors import UsageError
    from deploy.rundir import RunDir
    from deploy.runs import read_run_config

    if isinstance(run, Trained):
        run = run.run_dir
    if isinstance(run, (str, os.PathLike)):
        rd = RunDir.open(run)
        run_cfg = read_run_config(rd, TrainConfig, check_config)
        ck = rd.load_latest_checkpoint()
        if ck is None:
            raise UsageError(f"run dir {rd.path}: no checkpoint to evaluate (checkpoints/ckpt-*.pt)")
        check_checkpoint(run_cfg, ck, rd.latest_checkpoint_file())
        return run_cfg, ck["theta"]
    if cfg is None:
        raise ConfigError("evaluate(theta): the policy's config is needed too (cfg=...), or pass a run folder")
    cfg = cfg if isinstance(cfg, TrainConfig) else load_config(cfg)
    import torch

    from coordinator.trpo.config import network_sizes

    theta = torch.as_tensor(np.asarray(run, dtype=np.float32))
    n_theta = network_sizes(cfg)[0]
    if theta.ndim != 1 or theta.numel() != n_theta:
        raise ConfigError(f"theta: expected a flat vector of {n_theta} parameters (policy.hidden, policy.layers, "
                          f"scenario and run.scheme of cfg), got shape {tuple(theta.shape)}")
    return cfg, theta


def evaluate(run: Any, slots: int | None = None, methods: Sequence[str] | None = None, seed: int | None = None,
             cfg: TrainConfig | str | None = None, gains: str | os.PathLike | None = None,
             p_max_dbm: float | None = None, out: str | os.PathLike | None = None) -> dict[str, Any]:
    """A trained policy (its deterministic mean action) on held-out channels beside the classical methods, as
    ``bsemu evaluate`` does. ``run``: a run folder (its latest checkpoint), a :class:`Trained`, or flat
    parameters theta with their ``cfg``. ``slots`` realizations (default the config's ``run.eval_slots``, else
    1000) drawn with ``seed`` (default ``run.seed + 1``, the draw of the run's own final evaluation), or the
    channels of a ``gains`` file; ``p_max_dbm`` evaluates at another Pmax (Fig. 14); ``methods`` default to the
    config's ``run.eval_methods`` (the optimum only for networks of at most 8 links). Returns the summary
    (``summary.json``'s content: ``methods`` -> name -> ``mean_mbps``, ``mean_bps_hz``, ...); with ``out`` the
    files of ``bsemu evaluate`` are written there too."""
    from coordinator.trpo.config import METHODS
    from deploy.commands.train import evaluate_run

    cfg, theta = _policy_of(run, cfg)
    names = tuple(cfg.run.eval_methods if methods is None else methods)
    bad = [m for m in names if m not in METHODS]
    if bad:
        raise ConfigError(f"methods: unknown {', '.join(map(str, bad))}; expected names from {', '.join(METHODS)}")
    n = int(slots or cfg.run.eval_slots or 1000)
    if not 1 <= n <= 10_000_000:
        raise ConfigError(f"slots: expected an integer in [1, 10000000], got {slots}")
    seed = cfg.run.seed + 1 if seed is None else int(seed)
    problem = None
    if gains is not None:
        if p_max_dbm is not None:
            raise ConfigError("p_max_dbm with gains: the file gives the channels and their p_max_w; give one of them")
        problem = _gains_problem(gains, cfg)
    with one_thread(), _output_dir(out) as folder:
        return evaluate_run(cfg, theta, folder, n=n, seed=seed, methods=names, problem=problem, p_max_dbm=p_max_dbm)


def _gains_problem(gains: str | os.PathLike, cfg: TrainConfig) -> Any:
    from coordinator.trpo.config import scenario_of
    from deploy.commands.baselines import PROBLEM_COPIES
    from deploy.config import memory_budget_bytes
    from radio.gainsfile import load_gains
    from radio.problem import ProblemError

    problem = load_gains(gains, max_bytes=memory_budget_bytes() // PROBLEM_COPIES)
    sc = scenario_of(cfg)
    if (problem.cells, problem.users_per_cell) != (sc.cells, sc.K):
        raise ProblemError(f"gains file {gains}: {problem.cells} cells x {problem.users_per_cell} users (its cells and "
                           f"users_per_cell; without them L x 1), the policy was trained on {sc.cells} x {sc.K}")
    return problem


@contextlib.contextmanager
def _output_dir(out: str | os.PathLike | None) -> Iterator[Path]:
    """``out`` (checked as the command line checks --out), or a temporary folder removed afterwards."""
    import tempfile

    from deploy.rundir import check_output_dir

    if out is not None:
        yield check_output_dir(out, "out")
        return
    with tempfile.TemporaryDirectory(prefix="bsemu-api-") as tmp:
        yield Path(tmp)


# ---------------------------------------------------------------------------------------------- baselines
def baselines(scenario: str = "3cell", slots: int = 1000, seed: int = 0, methods: Sequence[str] | None = None,
              users_per_cell: int | None = None, links: int = 5, sum_power_dbm: float | None = None,
              gains: str | os.PathLike | None = None, eps: float = 1e-4, single: int = 0,
              out: str | os.PathLike | None = None) -> dict[str, Any]:
    """The classical methods (max-power, random, WMMSE, FP, direct FP, the certified optimum) on ``slots``
    realizations of ``scenario`` ('3cell' | '7cell' | '19cell' | 'links') or on a ``gains`` file — the numbers
    of ``bsemu baselines`` with the same arguments (same seeds). ``methods`` default to all (the optimum only up
    to 8 links; larger networks get the certified bracket, ``summary['bracket']``); ``single`` realizations are
    also solved one at a time for the per-realization time. Returns the summary (``summary.json``'s content);
    with ``out`` its files are written there too."""
    from deploy import plots
    from deploy.commands.baselines import DEFAULT_METHODS, _check_args, _problem, output_files
    from deploy.errors import UsageError
    from deploy.rundir import check_output_dir, check_output_files
    from radio.channels import SCENARIOS
    from radio.evaluation import MAX_OPTIMUM_LINKS, classical_methods, run_methods, summarize, write_outputs

    if gains is None and scenario not in SCENARIOS:
        raise ConfigError(f"scenario: expected one of {', '.join(SCENARIOS)}, got {scenario!r}")
    names = list(DEFAULT_METHODS if methods is None else methods)
    # the command's own argument checks and channel draw (same seeds, so the same numbers as `bsemu baselines`)
    args = argparse.Namespace(scenario=None if gains is not None else scenario, gains=gains, slots=slots, seed=seed,
                              users_per_cell=users_per_cell, links=links, sum_power_dbm=sum_power_dbm,
                              methods=",".join(names), single=single, eps=eps, out=None)
    try:
        names = _check_args(args)
        if out is not None:
            check_output_files(check_output_dir(out, "out"), output_files(names, "summary.png"), "out")
    except UsageError as exc:          # '--users-per-cell: ...' -> 'users_per_cell: ...'
        raise ConfigError(re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), str(exc))) from None
    with one_thread():
        problem, context = _problem(args)
        if "optimum" in names and problem.L > MAX_OPTIMUM_LINKS:
            if methods is not None:
                from radio.problem import ProblemError

                raise ProblemError(f"methods: the certified optimum supports at most {MAX_OPTIMUM_LINKS} links, got "
                                   f"L = {problem.L} (the other methods get a certified bracket)")
            names.remove("optimum")
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
        results = run_methods(problem, classical_methods(rng, eps=eps), names, single=single)
        upper = None
        if "optimum" not in results:
            from radio.optimum import bracket

            lower, upper = bracket(problem)
            context["bracket"] = {"lower_mean_bps_hz": float(np.mean(lower)),
                                  "upper_mean_bps_hz": float(np.mean(upper))}
        summary = summarize(problem, results, context, upper_bound=upper)
    if out is not None:
        write_outputs(Path(out), summary, results)
        plots.method_bars(summary, Path(out) / "summary.png")
    return summary
