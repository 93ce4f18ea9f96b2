"""Paper 1's centralized agent (Algorithm 1) as a Gymnasium environment: ``bsemu/Centralized-v0``.

One slot per episode (N = 1, as in training): ``reset`` draws the slot's channels, the observation is the
central agent's state — every BS's normalised downlink gains, [K*B*B] float32, exactly the vector the
centralized policy of :mod:`coordinator.trpo` sees — the action is the L = B*K power fractions p / Pmax in
[0, 1], and ``step`` ends the episode with the reward R = sum-rate in bit/s/Hz (eq. (1a)); ``info`` holds
``sum_rate_mbps``, the powers applied ``p_w`` [L] in W and ``slot`` (the gains file's row, or None).

    env = gymnasium.make("bs_agent.envs:bsemu/Centralized-v0", scenario="7cell")   # or import bs_agent.envs
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Randomness: the slots are drawn from ``self.np_random`` (Gymnasium's seeded numpy Generator), so
``reset(seed=s)`` gives the channels ``Scenario.user_bs_gains(1, numpy.random.default_rng(s))``, the same
slots as the PettingZoo environments of :mod:`bs_agent.envs.pz_env` seeded with ``s``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from bs_agent.envs.slots import Slot, SlotSource, check_fractions


class CentralizedEnv(gymnasium.Env):
    """The central agent's one-slot episode (see the module docstring). ``scenario``: '3cell' | '7cell' |
    '19cell'; ``overrides``: :class:`~radio.channels.Scenario` fields (``users_per_cell``, ``alpha``,
    ``p_max_dbm``, ``bs_sum_power_dbm``, ...); ``gains``: an .npz gains file whose realizations are cycled
    through instead of drawn (its cells x users_per_cell must match the scenario's)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, scenario: str = "3cell", gains: str | Path | None = None, render_mode: str | None = None,
                 **overrides: Any) -> None:
        if render_mode is not None:
            raise ValueError(f"render_mode: this environment renders nothing, got {render_mode!r}")
        self.render_mode = None
        self.source = SlotSource(scenario, gains, **overrides)
        n_obs, L = self.source.obs_dim("centralized"), self.source.L
        lo, hi = self.source.gain_bounds()
        self.observation_space = spaces.Box(lo, hi, (n_obs,), np.float32)
        self.action_space = spaces.Box(0.0, 1.0, (L,), np.float32)
        self.slot: Slot | None = None          # the current slot (None before reset and after its step)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.source.restart(self.np_random)
        self.slot = self.source.draw(self.np_random)
        return self.source.central_obs(self.slot), {"slot": self.slot.index}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.slot is None:
            raise RuntimeError("bsemu/Centralized-v0: step() before reset(), or after the slot's end (one slot per "
                               "episode: call reset())")
        frac = check_fractions(action, self.source.L, "action")     # (a refused action leaves the slot open)
        slot, self.slot = self.slot, None
        R, info = self.source.outcome(slot, frac)
        return self.source.central_obs(slot), R, True, False, info

    def __repr__(self) -> str:
        src = self.source
        where = f"gains file ({src.n_file_slots} slots)" if src.file is not None else "drawn slots"
        return f"CentralizedEnv({src.scenario.kind}, B={src.B}, K={src.K}, {where})"
