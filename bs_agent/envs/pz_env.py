"""Paper 1's decentralized schemes as PettingZoo environments; the agents are the BSs ``bs_0 .. bs_{B-1}``
and an episode is one slot, as in training.

* :class:`RoundRobinEnv` (AEC, Algorithm 2, partially decentralized): the slot's BSs act one after another
  in a random order; each observes its local CSI, then the powers decided so far and the decided flags in
  its own relative order ([2*B*K + B] float32, the round-robin state of training, with the token's powers
  as float32 as on the wire) and acts its K power fractions; when the last BS has acted every BS gets
  the shared reward R (sum-rate, bit/s/Hz). ``rr_message`` picks what the token carries, as training's
  ``trpo.rr_message``: 'powers' (the default, paper 1's state above) or 'interference' (the same, plus the
  features of the running interference / noise at every user, which each BS adds to after it acts, before the
  flags: [3*B*K + B] float32; :class:`~bs_agent.trpo.state.InterferenceScale`, the INR as float32 as on the wire).
* :class:`DecentralizedEnv` (Parallel, Algorithm 3, fully decentralized): every BS observes its local CSI
  ([B*K] float32) and all act at once; every BS gets R.

``infos`` at the end of the slot hold ``sum_rate_mbps``, the powers applied ``p_w`` [L] W and ``slot``.
``state()`` is the central agent's view (every BS's normalised gains). Randomness: ``reset(seed=s)`` draws the
channels from ``numpy.random.default_rng(s)`` (the same slots as ``bsemu/Centralized-v0`` seeded with s) and
the round-robin orders from a second stream of the same seed; no global RNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv

from bs_agent.envs.slots import Slot, SlotSource, check_fractions
from bs_agent.trpo.state import RR_MESSAGES, InterferenceScale
from radio.problem import ProblemError


class _Streams:
    """The channel stream (``default_rng(seed)``) and the order stream (its first spawned child)."""

    def __init__(self) -> None:
        self.air: np.random.Generator | None = None
        self.order: np.random.Generator | None = None

    def seed(self, seed: int | None) -> bool:
        """(Re)seed when ``seed`` is given or nothing is seeded yet; True when a new seed was applied."""
        if seed is None and self.air is not None:
            return False
        ss = np.random.SeedSequence(seed)
        self.air, self.order = np.random.default_rng(ss), np.random.default_rng(ss.spawn(1)[0])
        return True


class _BSAgents:
    """What both environments share: agents, spaces, slots and streams."""

    metadata: dict[str, Any] = {"render_modes": [], "is_parallelizable": True}
    scheme = ""

    def _setup(self, scenario: str, gains: str | Path | None, render_mode: str | None, overrides: dict) -> None:
        if render_mode is not None:
            raise ValueError(f"render_mode: this environment renders nothing, got {render_mode!r}")
        self.render_mode = None
        self.source = SlotSource(scenario, gains, **overrides)
        self.possible_agents = [f"bs_{b}" for b in range(self.source.B)]
        self.agent_index = {a: b for b, a in enumerate(self.possible_agents)}
        self.agents: list[str] = []
        self.streams = _Streams()
        self.slot: Slot | None = None
        n_csi, L, B = self.source.B * self.source.K, self.source.L, self.source.B
        g_lo, g_hi = self.source.gain_bounds()
        low, high = np.full(n_csi, g_lo, np.float32), np.full(n_csi, g_hi, np.float32)
        if self.scheme == "partial":   # local CSI, then the powers so far and the flags, in [0, 1]
            self.scale = self.source.interference_scale() if self.rr_message == "interference" else None
            # rr_message='interference': the INR features between them, >= 0 and at most that of float32's max
            inr_hi = [] if self.scale is None else [np.full(L, self.scale.features(np.finfo(np.float32).max))]
            low = np.concatenate([low, np.zeros(L + B + len(inr_hi) * L, np.float32)])
            high = np.concatenate([high, np.ones(L, np.float32), *inr_hi, np.ones(B, np.float32)])
        # one space object per agent, returned as it is by observation_space / action_space (seeded apart)
        self.observation_spaces = {a: spaces.Box(low, high, dtype=np.float32) for a in self.possible_agents}
        self.action_spaces = {a: spaces.Box(0.0, 1.0, (self.source.K,), np.float32) for a in self.possible_agents}
        self.state_space = spaces.Box(g_lo, g_hi, (self.source.obs_dim("centralized"),), np.float32)

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Box:
        return self.action_spaces[agent]

    def _new_slot(self, seed: int | None) -> Slot:
        if self.streams.seed(seed):
            self.source.restart(self.streams.air)
        self.slot = self.source.draw(self.streams.air)
        return self.slot

    def state(self) -> np.ndarray:
        """The central agent's view of the current slot: every BS's normalised gains [K*B*B] float32."""
        if self.slot is None:
            raise RuntimeError(f"{type(self).__name__}: state() before reset()")
        return self.source.central_obs(self.slot)

    def render(self) -> None:
        return None

    def close(self) -> None:
        pass


class RoundRobinEnv(_BSAgents, AECEnv):
    """Algorithm 2's slot as an AEC game (see the module docstring). ``scenario``, ``gains`` and
    ``overrides`` as :class:`bs_agent.envs.gym_env.CentralizedEnv`; ``rr_message``: 'powers' | 'interference'.
    ``order`` [B]: the BS indices in the current slot's order; ``p_frac`` [L] and ``decided`` [B]: the token so
    far; ``inr`` [L] float32 (rr_message='interference', else None): its running interference / noise."""

    metadata = {**_BSAgents.metadata, "name": "bsemu_round_robin_v0"}
    scheme = "partial"

    def __init__(self, scenario: str = "3cell", gains: str | Path | None = None, render_mode: str | None = None,
                 rr_message: str = "powers", **overrides: Any) -> None:
        super().__init__()
        if rr_message not in RR_MESSAGES:
            raise ProblemError(f"rr_message: expected one of {', '.join(RR_MESSAGES)}, got {rr_message!r}")
        self.rr_message = rr_message
        self.scale: InterferenceScale | None = None
        self._setup(scenario, gains, render_mode, overrides)
        self.order = np.arange(self.source.B)
        self._step = 0
        self.p_frac = np.zeros(self.source.L)
        self.decided = np.zeros(self.source.B, dtype=bool)
        self.inr = None if self.scale is None else np.zeros(self.source.L, np.float32)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        slot = self._new_slot(seed)
        B = self.source.B
        self.order = self.streams.order.permutation(B)       # order[n] = the BS that acts at step n
        self._step = 0
        self.p_frac = np.zeros(self.source.L)
        self.decided = np.zeros(B, dtype=bool)
        self.inr = None if self.scale is None else np.zeros(self.source.L, np.float32)
        self.agents = self.possible_agents[:]
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: {"slot": slot.index} for a in self.agents}
        self.agent_selection = self.possible_agents[int(self.order[0])]

    def observe(self, agent: str) -> np.ndarray:
        """BS ``agent``'s round-robin state now: its local CSI, the powers decided so far (with rr_message=
        'interference' then the running interference's features) and the flags."""
        return self.source.round_robin_obs(self.slot, self.agent_index[agent], self.p_frac, self.decided, self.inr,
                                           self.scale)

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        b, K = self.agent_index[agent], self.source.K
        frac = check_fractions(action, K, agent)
        self._cumulative_rewards[agent] = 0.0
        self.p_frac[b * K:(b + 1) * K] = frac.astype(np.float32)    # the token travels as float32 (DESIGN §5)
        self.decided[b] = True
        if self.inr is not None:       # what this BS adds to the running interference, passed on as float32
            self.inr[:] = self.inr + self.source.added_inr(self.slot, b, self.p_frac[b * K:(b + 1) * K], self.scale)
        self._step += 1
        if self._step == self.source.B:                               # the last BS: the slot's powers are complete
            R, info = self.source.outcome(self.slot, self.p_frac)
            self.rewards = dict.fromkeys(self.agents, R)
            self.terminations = dict.fromkeys(self.agents, True)
            self.infos = {a: dict(info) for a in self.agents}
        else:
            self._clear_rewards()
            self.agent_selection = self.possible_agents[int(self.order[self._step])]
        self._accumulate_rewards()


class DecentralizedEnv(_BSAgents, ParallelEnv):
    """Algorithm 3's slot as a parallel game (see the module docstring); arguments as :class:`RoundRobinEnv`."""

    metadata = {**_BSAgents.metadata, "name": "bsemu_decentralized_v0"}
    scheme = "full"

    def __init__(self, scenario: str = "3cell", gains: str | Path | None = None, render_mode: str | None = None,
                 **overrides: Any) -> None:
        if "rr_message" in overrides:
            raise ProblemError("rr_message: the round-robin message exists in round_robin_env only (Algorithm 2); "
                               "parallel_env's BSs exchange nothing")
        self._setup(scenario, gains, render_mode, overrides)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        slot = self._new_slot(seed)
        self.agents = self.possible_agents[:]
        obs = {a: self.source.local_obs(slot, b) for b, a in enumerate(self.agents)}
        return obs, {a: {"slot": slot.index} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents or self.slot is None:
            raise RuntimeError("DecentralizedEnv: step() before reset(), or after the slot's end (call reset())")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"actions: every BS acts at once; missing {', '.join(missing)}")
        K = self.source.K
        frac = np.concatenate([check_fractions(actions[a], K, a) for a in self.agents])
        R, info = self.source.outcome(self.slot, frac)
        obs = {a: self.source.local_obs(self.slot, b) for b, a in enumerate(self.agents)}
        out = (obs, dict.fromkeys(self.agents, R), dict.fromkeys(self.agents, True),
               dict.fromkeys(self.agents, False), {a: dict(info) for a in self.agents})
        self.agents = []
        return out
