"""The BS agents' problem as environments for RL libraries, over the same radio core and the same state
features (:mod:`bs_agent.trpo.state`) as training (DESIGN §1):

    gymnasium.make("bs_agent.envs:bsemu/Centralized-v0", scenario="3cell")   Algorithm 1, the central agent
    bs_agent.envs.round_robin_env(scenario="3cell")                          Algorithm 2, PettingZoo AEC
    bs_agent.envs.round_robin_env(scenario="3cell", rr_message="interference")   ... with trpo.rr_message's variant
    bs_agent.envs.parallel_env(scenario="3cell")                             Algorithm 3, PettingZoo Parallel

Each takes ``scenario`` ('3cell' | '7cell' | '19cell'), :class:`~radio.channels.Scenario` overrides as
keywords (``users_per_cell=4``, ``bs_sum_power_dbm=43``, ...) and ``gains="FILE.npz"`` (a user's own
channels, cycled through). An episode is one slot; the reward is the sum-rate in bit/s/Hz.

gymnasium and pettingzoo are optional (``pip install 'bsemu[envs]'``): this package imports without them
and names the missing one when an environment is asked for. ``bsemu/Centralized-v0`` is registered when
this package is imported with gymnasium present: ``gymnasium.make("bs_agent.envs:bsemu/Centralized-v0")``
imports it (gymnasium >= 1.0 has no plugin loading); the ``gymnasium.envs`` entry point of the package
(:func:`register_envs`) registers it at ``import gymnasium`` in gymnasium < 1.0, which loads plugins.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

ENV_ID = "bsemu/Centralized-v0"
CENTRALIZED_ENTRY_POINT = "bs_agent.envs.gym_env:CentralizedEnv"
INSTALL_HINT = "pip install 'bsemu[envs]' (or: pip install -c constraints.txt gymnasium pettingzoo)"

__all__ = ["ENV_ID", "register_envs", "round_robin_env", "parallel_env", "CentralizedEnv", "RoundRobinEnv",
           "DecentralizedEnv"]


def _require(module: str, what: str) -> Any:
    """Import an optional dependency, or raise ImportError naming it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"bs_agent.envs: {what} needs {module.split('.')[0]}, which is not installed "
                          f"({exc}); {INSTALL_HINT}") from None


def register_envs() -> None:
    """Register ``bsemu/Centralized-v0`` with gymnasium (once; the package's ``gymnasium.envs`` entry point)."""
    registration = _require("gymnasium.envs.registration", ENV_ID)
    if ENV_ID not in registration.registry:
        registration.register(id=ENV_ID, entry_point=CENTRALIZED_ENTRY_POINT)


def round_robin_env(scenario: str = "3cell", gains: str | Path | None = None, rr_message: str = "powers",
                    **overrides: Any) -> Any:
    """Algorithm 2 (partially decentralized, round-robin) as a PettingZoo AEC environment
    (:class:`bs_agent.envs.pz_env.RoundRobinEnv`). ``rr_message``: what the round-robin token carries, as the
    trainer's ``trpo.rr_message``: 'powers' (paper 1's state) or 'interference' (plus the running interference
    at every user, :class:`bs_agent.trpo.state.InterferenceScale`)."""
    _require("pettingzoo", "round_robin_env")
    from bs_agent.envs.pz_env import RoundRobinEnv

    return RoundRobinEnv(scenario, gains, rr_message=rr_message, **overrides)


def parallel_env(scenario: str = "3cell", gains: str | Path | None = None, **overrides: Any) -> Any:
    """Algorithm 3 (fully decentralized) as a PettingZoo Parallel environment
    (:class:`bs_agent.envs.pz_env.DecentralizedEnv`)."""
    _require("pettingzoo", "parallel_env")
    from bs_agent.envs.pz_env import DecentralizedEnv

    return DecentralizedEnv(scenario, gains, **overrides)


def __getattr__(name: str) -> Any:
    """The environment classes, imported on first use (their libraries are optional)."""
    where = {"CentralizedEnv": ("gymnasium", "bs_agent.envs.gym_env"),
             "RoundRobinEnv": ("pettingzoo", "bs_agent.envs.pz_env"),
             "DecentralizedEnv": ("pettingzoo", "bs_agent.envs.pz_env")}
    if name not in where:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    lib, module = where[name]
    _require(lib, name)
    return getattr(importlib.import_module(module), name)


if importlib.util.find_spec("gymnasium") is not None:    # registered where gymnasium is; silent where it is not
    register_envs()
