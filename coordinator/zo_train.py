"""Drivers of paper 2's experiments: Algorithm 1 (proposed) in logical time over the air, and the
two benchmarks, centralized first-order training with Adam and federated learning (FL).

Proposed (:class:`ZOProposed`). Link i's iteration k covers the slots
[o_i + kB, o_i + (k+1)B): theta_i^k for B1 slots, theta_i^k + mu u_i^k for B2. The driver runs the
air up to the next moment some link switches parameters or ends an iteration (never slot by slot),
hands each finishing link its own rates, lets the links exchange d (in memory or over ZeroMQ, see
:class:`InprocLinks` and ``coordinator.zo_ray.RayLinks``) and puts their new parameters in force.
At one slot t: every finishing link first forms and sends d, then messages due by t are delivered,
then they update — so equal offsets give eq. (7) exactly.

Every message exchanged (d's, CSI, parameters) is recorded in a :class:`protocol.log.MessageLog`
with its encoded size, so overheads compare like for like.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bs_agent.zo_agent import ZOHyper, ZOLinkAgent, utility
from bs_agent.zo_math import Entry
from bs_agent.zo_policy import MLPSpec, local_states
from coordinator import zo_config as zc
from coordinator.zo_air import Air, batch_sum_rate_torch, eval_gains, max_power_sum_rate, rollout_sum_rate
from coordinator.zo_config import ZOConfig
from protocol.codec import frame_size
from protocol.envelope import COORDINATOR, Envelope, Kind, now_ns
from protocol.links import LinkEmulator, LinkModel
from protocol.log import MessageLog

# ---------------------------------------------------------------- messages of the d exchange


def d_envelope(sender: int, k: int, entries: list[Entry], slot: int, graph: bool, run_id: str = "",
               seq: int = 0, t_send_ns: int = 0) -> Envelope:
    """The message carrying d_i^k (SCALAR_D) or, in graph mode, d_i^k plus relayed entries (RELAY_D).
    ``slot`` is the logical send time (the timestamp T of Sec. III-C is the iteration)."""
    if not graph:
        return Envelope(Kind.SCALAR_D, sender, -1, k, seq, {"d": float(entries[0][2]), "slot": int(slot)},
                        run_id, t_send_ns)
    return Envelope(Kind.RELAY_D, sender, -1, k, seq, {
        "origin": np.asarray([e[0] for e in entries], dtype=np.int64),
        "iter": np.asarray([e[1] for e in entries], dtype=np.int64),
        "d": np.asarray([e[2] for e in entries], dtype=np.float32),
        "slot": int(slot)}, run_id, t_send_ns)


def entries_of(env: Envelope) -> list[Entry]:
    """The (j, T, d) entries a d message carries."""
    if env.kind == Kind.SCALAR_D:
        return [(int(env.sender), int(env.iteration), float(env.payload["d"]))]
    p = env.payload
    return [(int(j), int(t), float(d)) for j, t, d in zip(p["origin"], p["iter"], p["d"], strict=False)]


def link_models(cfg: ZOConfig) -> LinkModel:
    a = cfg.algo
    return LinkModel(kind=a.delay_kind, delay=a.delay, jitter=a.jitter, drop_prob=a.drop_prob)


@dataclass
class Exchange:
    """Cumulative point-to-point traffic: messages, scalars (floats) and bytes on the wire."""

    messages: int = 0
    scalars: int = 0
    bytes: int = 0
    dropped: int = 0

    def add(self, n_msgs: int, n_scalars: int, n_bytes: int) -> None:
        self.messages += n_msgs
        self.scalars += n_scalars
        self.bytes += n_bytes


# ---------------------------------------------------------------- link backends


class LinksBackend(Protocol):
    def schedules(self) -> list[tuple[np.ndarray, np.ndarray]]: ...
    def step(self, links: list[int], t: int, rates: dict[int, np.ndarray]
             ) -> dict[int, tuple[np.ndarray, np.ndarray]]: ...
    def states(self) -> Any: ...
    def load_states(self, states: Any) -> None: ...
    def stats(self) -> list[dict[str, float]]: ...
    def settle(self, k: list[int]) -> None: ...
    def close(self) -> None: ...


def make_agents(cfg: ZOConfig) -> list[ZOLinkAgent]:
    nb = zc.neighbours(cfg)
    dm = zc.d_max(cfg, nb)
    sp = zc.specs(cfg)
    hy = zc.hyper(cfg)
    return [ZOLinkAgent(i, sp[i], hy, cfg.run.seed, cfg.algo.update, tuple(nb[i]), dm)
            for i in range(cfg.scenario.n_links)]


def make_agent(cfg: ZOConfig, i: int) -> ZOLinkAgent:
    """Link i's agent alone (built where it runs, e.g. inside its Ray actor): same as make_agents(cfg)[i]."""
    nb = zc.neighbours(cfg)
    return ZOLinkAgent(i, zc.specs(cfg)[i], zc.hyper(cfg), cfg.run.seed, cfg.algo.update, tuple(nb[i]),
                       zc.d_max(cfg, nb))


def wire_seq(k: int) -> int:
    """Sequence number of d^k on a link of the ray backend's protocol.RingNode (seq 0 of every link
    is the start barrier's HELLO), so that the in-process log counts the same bytes as the wire."""
    return k + 1


class InprocLinks:
    """All links as plain objects in this process; d messages move in memory through the protocol's
    link emulator (seeded delay / loss) and are logged like socket traffic."""

    def __init__(self, cfg: ZOConfig, log: MessageLog, exchange: Exchange):
        self.cfg = cfg
        self.agents = make_agents(cfg)
        self.hyper: ZOHyper = self.agents[0].hyper
        self.graph = cfg.algo.update == "graph"
        self.log = log
        self.exchange = exchange
        self.emulator = LinkEmulator(link_models(cfg), cfg.run.seed, "logical")

    def schedules(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [a.schedule() for a in self.agents]

    def step(self, links: list[int], t: int, rates: dict[int, np.ndarray]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        b1 = self.hyper.b1
        sent: dict[int, tuple[int, list[Entry]]] = {}
        for i in links:                                        # Algorithm 1 steps 5-6
            ag = self.agents[i]
            u = utility(rates[i], self.hyper)
            sent[i] = (ag.k, ag.end_iteration(u[:b1], u[b1:]))
        for i in links:                                        # the exchange
            k, entries = sent[i]
            env = d_envelope(i, k, entries, t, self.graph, seq=wire_seq(k), t_send_ns=now_ns())
            base = frame_size(env._replace(receiver=0))        # as a RingNode frames it, to receiver r
            for r in self.agents[i].neighbours:
                nbytes = base if r < 128 else frame_size(env._replace(receiver=r))   # msgpack fixint < 128
                self.log.record_sent(env, nbytes, receiver=r)
                self.exchange.add(1, len(entries), nbytes)
                dec = self.emulator.decide(i, r, t)
                if dec.dropped:
                    self.log.record_dropped(env, nbytes, receiver=r, t_ns=now_ns(), delay_slots=dec.delay)
                    self.exchange.dropped += 1
                    continue
                self.log.record_received(env, nbytes, receiver=r, t_recv_ns=now_ns(), delay_slots=dec.delay)
                self.agents[r].deliver(entries, dec.due)
        return {i: self.agents[i].update(t) for i in links}    # Algorithm 1 step 7

    def states(self) -> dict[str, Any]:
        return {"agents": [a.state() for a in self.agents], "emulator": copy.deepcopy(self.emulator)}

    def load_states(self, states: dict[str, Any]) -> None:
        for a, s in zip(self.agents, states["agents"], strict=False):
            a.load_state(s)
        self.emulator = copy.deepcopy(states["emulator"])

    def stats(self) -> list[dict[str, float]]:
        return [dict(a.stats) for a in self.agents]

    def settle(self, k: list[int]) -> None:
        """Nothing in flight: every message's fate was decided when it was sent."""

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- the proposed method


class LinkProgress:
    """What both drivers of Algorithm 1 (logical and real clock) expose from ``k`` and ``sched``."""

    k: list[int]
    sched: list

    @property
    def iteration(self) -> int:
        """Iterations completed by every link."""
        return min(self.k)

    def thetas(self) -> list[np.ndarray]:
        """theta_i^k of every link (unperturbed)."""
        return [s[0] for s in self.sched]


class ZOProposed(LinkProgress):
    """Algorithm 1 for all links over the air in logical time (any :class:`LinksBackend`)."""

    def __init__(self, cfg: ZOConfig, links: LinksBackend, exchange: Exchange):
        zc.validate(cfg)
        self.cfg = cfg
        self.links = links
        self.exchange = exchange
        self.N = cfg.scenario.n_links
        self.b1, self.b2 = cfg.algo.b1, cfg.algo.b2
        self.B = self.b1 + self.b2
        self.offsets = zc.offsets(cfg)
        self.specs: list[MLPSpec] = zc.specs(cfg)
        sched = links.schedules()
        self.sched = list(sched)
        self.air = Air(zc.scenario(cfg), self.specs, [s[0] for s in sched], cfg.run.seed)
        self.k = [0] * self.N
        self.switched = [False] * self.N
        self.hist = np.empty((0, self.N))      # rates of slots [hist_t0, air.t)
        self.hist_t0 = 0
        self.last_sum_rate = float("nan")

    def _next_event(self) -> int:
        t = None
        for i in range(self.N):
            o, k = self.offsets[i], self.k[i]
            cand = o + (k + 1) * self.B if self.switched[i] else o + k * self.B + self.b1
            t = cand if t is None else min(t, cand)
        return int(t)

    def _rates(self, i: int, t_end: int) -> np.ndarray:
        t0 = t_end - self.B
        return self.hist[t0 - self.hist_t0: t_end - self.hist_t0, i]

    def step(self) -> None:
        """Advance to the next event and process every link's event at that slot."""
        t = self._next_event()
        r = self.air.advance(t)
        self.hist = np.concatenate([self.hist, r])
        keep = 2 * self.B
        if self.hist.shape[0] > keep:
            cut = self.hist.shape[0] - keep
            self.hist = self.hist[cut:]
            self.hist_t0 += cut
        ending = [i for i in range(self.N) if self.switched[i] and self.offsets[i] + (self.k[i] + 1) * self.B == t]
        if ending:
            new = self.links.step(ending, t, {i: self._rates(i, t) for i in ending})
            for i in ending:
                self.sched[i] = new[i]
                self.k[i] += 1
                self.switched[i] = False
                self.air.set_theta(i, new[i][0])
        for i in range(self.N):
            if not self.switched[i] and self.offsets[i] + self.k[i] * self.B + self.b1 == t:
                self.air.set_theta(i, self.sched[i][1])             # theta_i^k + mu u_i^k in force
                self.switched[i] = True

    def run_iteration(self) -> None:
        """Run until every link has completed one more iteration."""
        target = self.iteration + 1
        while self.iteration < target:
            self.step()
        n = min(self.hist.shape[0], self.B)
        self.last_sum_rate = float(self.hist[-n:].sum(axis=1).mean())

    def finish(self) -> None:
        """End of training: messages still in flight are received and logged (ray backend)."""
        self.links.settle(list(self.k))

    # ---- checkpoint ----
    def state(self) -> dict[str, Any]:
        self.links.settle(list(self.k))       # messages in flight become part of the receivers' state
        return {"air": self.air.state(), "links": self.links.states(), "k": list(self.k),
                "switched": list(self.switched), "hist": self.hist.copy(), "hist_t0": self.hist_t0,
                "sched": [(a.copy(), b.copy()) for a, b in self.sched], "exchange": vars(self.exchange).copy()}

    def load_state(self, st: dict[str, Any]) -> None:
        self.air.load_state(st["air"])
        self.links.load_states(st["links"])
        self.k = list(st["k"])
        self.switched = list(st["switched"])
        self.hist = np.asarray(st["hist"]).copy()
        self.hist_t0 = int(st["hist_t0"])
        self.sched = [(np.asarray(a).copy(), np.asarray(b).copy()) for a, b in st["sched"]]
        for k, v in st["exchange"].items():
            setattr(self.exchange, k, v)

    def diagnostics(self) -> dict[str, float]:
        st = self.links.stats()
        return {"d_mean": float(np.mean([s["d"] for s in st])),
                "zo_grad_norm": float(np.mean([s["grad_norm"] for s in st])),
                "applied_d": float(np.mean([s["applied"] for s in st])),
                "stale_d": float(sum(s["stale"] for s in st)),
                "duplicate_d": float(sum(s["duplicates"] for s in st))}


# ---------------------------------------------------------------- first-order benchmarks


def adam_lr(cfg: ZOConfig, k: int) -> float:
    """Learning rate of the first-order baselines at iteration k: adam_lr, or with ``adam_lr_end`` > 0
    the geometric decay adam_lr (adam_lr_end / adam_lr)^(k / K), K = run.iterations."""
    b = cfg.baseline
    if b.adam_lr_end <= 0:
        return b.adam_lr
    return b.adam_lr * (b.adam_lr_end / b.adam_lr) ** (min(k, cfg.run.iterations) / max(cfg.run.iterations, 1))


class FirstOrder:
    """Centralized training with the exact gradient of the sum-rate through all policies (Adam),
    or FL (``fl=True``): every link takes Adam steps on its own block of that gradient and every I
    iterations uploads theta_i to a server that returns the average (all links then share it).

    Both consume the same channel process (B slots per iteration) as Algorithm 1 and log their
    traffic: centralized — each receiver's gains row per slot (CSI_UPLOAD, [B, N] float32) and the
    parameters back (PARAMETERS); FL — FL_UPLOAD / FL_AVERAGE of theta every I iterations.
    """

    def __init__(self, cfg: ZOConfig, log: MessageLog, exchange: Exchange, fl: bool = False):
        import torch

        zc.validate(cfg)
        self.cfg = cfg
        self.fl = fl
        self.log = log
        self.exchange = exchange
        self.N = cfg.scenario.n_links
        self.B = cfg.algo.b1 + cfg.algo.b2
        self.specs = zc.specs(cfg)
        agents = make_agents(cfg)          # same theta^0 as the proposed method
        init = [a.theta for a in agents]
        if fl:
            init = [np.mean(init, axis=0)] * self.N
        self.params = [torch.tensor(th, dtype=torch.float64, requires_grad=True) for th in init]
        self.opt = torch.optim.Adam(self.params, lr=cfg.baseline.adam_lr)
        self.air = Air(zc.scenario(cfg), self.specs, init, cfg.run.seed)
        self.iteration = 0
        self.last_sum_rate = float("nan")
        self._size_cache: dict[tuple[int, int], int] = {}

    def thetas(self) -> list[np.ndarray]:
        return [p.detach().numpy().copy() for p in self.params]

    def _send(self, kind: Kind, sender: int, receiver: int, n_floats: int, shape: tuple[int, ...]) -> None:
        key = (int(kind), n_floats)
        env = Envelope(kind, sender, receiver, self.iteration, self.iteration,
                       {"x": np.zeros(shape, dtype=np.float32)})
        if key not in self._size_cache:
            self._size_cache[key] = frame_size(env)
        nbytes = self._size_cache[key]
        self.log.record_sent(env, nbytes)
        self.log.record_received(env, nbytes, t_recv_ns=0)
        self.exchange.add(1, n_floats, nbytes)

    def run_iteration(self) -> None:
        import torch

        if not self.fl:
            for i in range(self.N):            # each receiver uploads its gains row for every slot
                self._send(Kind.CSI_UPLOAD, i, COORDINATOR, self.B * self.N, (self.B, self.N))
        # the air with the current policies: powers in force slot by slot, and each link's inputs
        for g, (_sp, ix) in enumerate(self.air.groups):
            self.air.stacks[g] = np.stack([self.params[i].detach().numpy() for i in ix])
        P = np.empty((self.B, self.N))
        p_before = self.air.p_prev.copy()
        rates = self.air.advance(self.air.t + self.B, powers_out=P)
        G = self.air.last_gains                                               # [B, N, N]
        p_in = np.concatenate([p_before[None], P[:-1]])
        S = local_states(G, p_in, self.cfg.scenario.noise_w, np.full(self.N, self.cfg.scenario.p_max_w),
                         self.specs[0].inputs, self.specs[0].caused)
        if self.cfg.baseline.adam_lr_end > 0:
            for grp in self.opt.param_groups:
                grp["lr"] = adam_lr(self.cfg, self.iteration)
        sr = batch_sum_rate_torch(self.specs, self.params, torch.from_numpy(G), torch.from_numpy(S),
                                  self.cfg.scenario.noise_w, self.cfg.scenario.p_max_w)
        self.opt.zero_grad()
        (-sr).backward()
        self.opt.step()
        self.last_sum_rate = float(rates.sum(axis=1).mean())
        self.iteration += 1
        if not self.fl:
            for i in range(self.N):
                n = self.specs[i].n_params
                self._send(Kind.PARAMETERS, COORDINATOR, i, n, (n,))
        elif self.iteration % self.cfg.baseline.fl_interval == 0:
            for i in range(self.N):
                n = self.specs[i].n_params
                self._send(Kind.FL_UPLOAD, i, COORDINATOR, n, (n,))
            with torch.no_grad():
                avg = torch.stack([p.detach() for p in self.params]).mean(dim=0)
                for p in self.params:
                    p.copy_(avg)
            for i in range(self.N):
                n = self.specs[i].n_params
                self._send(Kind.FL_AVERAGE, COORDINATOR, i, n, (n,))

    def state(self) -> dict[str, Any]:
        return {"params": self.thetas(), "opt": self.opt.state_dict(), "air": self.air.state(),
                "iteration": self.iteration,
                "exchange": vars(self.exchange).copy()}

    def load_state(self, st: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for p, v in zip(self.params, st["params"], strict=False):
                p.copy_(torch.from_numpy(np.asarray(v)))
        self.opt.load_state_dict(st["opt"])
        self.air.load_state(st["air"])
        self.iteration = int(st["iteration"])
        for k, v in st["exchange"].items():
            setattr(self.exchange, k, v)

    def diagnostics(self) -> dict[str, float]:
        return {}

    def finish(self) -> None:
        """Nothing in flight."""


# ---------------------------------------------------------------- one run, any method


class Evaluator:
    """Sum-rate of the unperturbed policies on fixed held-out channel sequences, and max power."""

    def __init__(self, cfg: ZOConfig):
        self.cfg = cfg
        self.G = eval_gains(zc.scenario(cfg), cfg.run.seed, cfg.run.eval_sequences, cfg.run.eval_slots)
        self.specs = zc.specs(cfg)
        self.max_power = max_power_sum_rate(self.G, cfg.scenario.noise_w, cfg.scenario.p_max_w)

    def __call__(self, thetas: list[np.ndarray]) -> float:
        return rollout_sum_rate(self.specs, thetas, self.G, self.cfg.scenario.noise_w, self.cfg.scenario.p_max_w)


def make_trainer(cfg: ZOConfig, log: MessageLog, exchange: Exchange, links: LinksBackend | None = None):
    """The trainer of ``cfg.run.method`` (links backend defaults to in-process)."""
    if cfg.run.method == "proposed" and cfg.run.clock == "real":
        from coordinator.zo_realtime import RealTimeProposed

        if links is None:
            raise zc.ZOConfigError("run.clock=real needs run.backend=ray (links as actors on the wall clock)")
        return RealTimeProposed(cfg, links, exchange)  # type: ignore[arg-type]
    if cfg.run.method == "proposed":
        return ZOProposed(cfg, links if links is not None else InprocLinks(cfg, log, exchange), exchange)
    return FirstOrder(cfg, log, exchange, fl=cfg.run.method == "fl")


def train(cfg: ZOConfig, trainer, evaluator: Evaluator, iterations: int,
          on_row: Callable[[dict[str, Any]], None] | None = None,
          on_checkpoint: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run ``trainer`` until ``iterations`` and report metric rows; returns the last row."""
    B = cfg.algo.b1 + cfg.algo.b2
    row: dict[str, Any] = {}
    t0 = time.perf_counter()
    while trainer.iteration < iterations:
        trainer.run_iteration()
        it = trainer.iteration
        if it % cfg.run.eval_every == 0 or it == iterations:
            ex = trainer.exchange
            row = {"iteration": it, "samples": it * B, "sum_rate": evaluator(trainer.thetas()),
                   "max_power": evaluator.max_power, "train_sum_rate": trainer.last_sum_rate,
                   "messages": ex.messages, "scalars": ex.scalars, "bytes": ex.bytes, "dropped": ex.dropped,
                   **trainer.diagnostics(), "seconds": time.perf_counter() - t0}
            if on_row is not None:
                on_row(row)
        if on_checkpoint is not None and (it % cfg.run.checkpoint_every == 0 or it == iterations):
            on_checkpoint(it)
    trainer.finish()
    if row and hasattr(trainer, "unreceived"):      # real clock: d never received within the drain
        row["unreceived_d"] = float(trainer.unreceived)
    return row
