"""Configuration of the execution phase (``bsemu execute``): the slots, the wall clock, the links' delay /
jitter / loss (optionally per link class: BS <-> BS, BS <-> central unit), deadlines and fallbacks."""

from __future__ import annotations

from dataclasses import dataclass, field

from bs_agent.realtime import PRIORITY_RANGE
from bs_agent.trpo.execution import FALLBACKS, WAITS
from coordinator.config import ConfigError
from coordinator.config import config_field as _f
from coordinator.placement import check_placement, placement_field, secure_field
from coordinator.trpo.config import ScenarioConfig
from protocol.links import LinkModel

JITTERS = ("uniform", "exponential")
LINK_CLASSES = ("bs_bs", "bs_cu")


@dataclass(frozen=True)
class LinkClassConfig:
    """Overrides of the links' model for one class of links (null: as ``links``)."""

    delay_ms: float | None = _f(None, "fixed one-way delay in ms", range=(0.0, 1e4))
    jitter_ms: float | None = _f(None, "jitter in ms: uniform width or exponential mean", range=(0.0, 1e4))
    jitter: str | None = _f(None, "jitter distribution", choices=JITTERS)
    loss: float | None = _f(None, "probability that a message is lost", range=(0.0, 1.0))


@dataclass(frozen=True)
class LinksConfig:
    """Every execution message's link: delay + jitter (a distribution), loss, drawn per link from the run's
    seed by the receiving node's emulator (:class:`protocol.LinkEmulator`, real clock: a deadline queue)."""

    delay_ms: float = _f(0.0, "fixed one-way delay in ms, every link", range=(0.0, 1e4))
    jitter_ms: float = _f(0.0, "jitter in ms: uniform width or exponential mean", range=(0.0, 1e4))
    jitter: str = _f("uniform", "jitter distribution", choices=JITTERS)
    loss: float = _f(0.0, "probability that a message is lost", range=(0.0, 1.0))
    bs_bs: LinkClassConfig = field(default_factory=LinkClassConfig)   # round-robin hops
    bs_cu: LinkClassConfig = field(default_factory=LinkClassConfig)   # uploads and assignments

    def model(self, link_class: str) -> LinkModel:
        """The :class:`LinkModel` of a class of links (delays in seconds, the real clock's unit)."""
        over = getattr(self, link_class)

        def pick(name: str) -> object:
            v = getattr(over, name)
            return getattr(self, name) if v is None else v

        delay, jitter, loss = float(pick("delay_ms")), float(pick("jitter_ms")), float(pick("loss"))
        kind = "fixed" if jitter == 0 else str(pick("jitter"))
        return LinkModel(kind=kind, delay=delay / 1e3, jitter=jitter / 1e3, drop_prob=loss)

    def ideal(self) -> bool:
        """No delay, jitter or loss on any link."""
        return all(self.model(c) == LinkModel() for c in LINK_CLASSES)


@dataclass(frozen=True)
class ExecRunConfig:
    """The slots of the execution phase."""

    slots: int = _f(1000, "slots to run", range=(1, 10_000_000))
    slot_ms: float = _f(2.0, "slot period in ms (each slot's deadline: its powers applied at its end)",
                        range=(0.01, 1e5))
    clock: str = _f("real", "real: slots paced on the wall clock with deadlines and fallbacks | logical: no "
                            "deadline, every node waits for its inputs (or their loss), slots in lockstep",
                    choices=("real", "logical"))
    seed: int | None = _f(None, "seed of the slots' channels and orders (null: the trained run's seed + 1, as "
                                "`bsemu evaluate`; for a --method, 1)", range=(0, 2**63 - 1))
    fallback: str = _f("last", "what a node does without its input by the deadline: last (the last vector / "
                               "CSI received) | undecided (predecessors undecided; the mean gain for missing CSI)",
                       choices=FALLBACKS)
    wait: str = _f("block", "how a node waits for an input (real clock): block (in the socket; the core idles and "
                            "wakes on the frame) | spin (polls, yielding the core at every poll: a BS with a core "
                            "of its own; with run.priority at most 500 µs per input, then it blocks)", choices=WAITS)
    priority: int = _f(0, "real-time priority of every node's slot loop and socket threads (the BSs, the central unit "
                              "and the air): 0 the normal time-sharing policy | 1-99 SCHED_FIFO at that priority, "
                              "as a deployed BS runs (needs root or CAP_SYS_NICE)",
                       range=PRIORITY_RANGE)
    decision_margin_us: float = _f(100.0, "a node waiting for an input gives up this long before the slot's end "
                                          "and decides on what it has", range=(0.0, 1e8))
    warmup_slots: int = _f(20, "first slots left out of the latency statistics (caches, first sends)",
                           range=(0, 1_000_000))
    lead_ms: float = _f(50.0, "real clock: the first slot starts this long after the nodes are ready",
                        range=(0.0, 1e5))
    placement: str = placement_field("actors", "a BS index or cu")
    secure: str | bool = secure_field()


@dataclass(frozen=True)
class ExecuteConfig:
    """Everything `bsemu execute` needs besides the trained policy (or the method)."""

    run: ExecRunConfig = field(default_factory=ExecRunConfig)
    links: LinksConfig = field(default_factory=LinksConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)   # --method only (a run folder has its own)


def check_execute(cfg: ExecuteConfig) -> None:
    """Cross-field checks; raises :class:`ConfigError` naming the keys."""
    check_placement(cfg.run.placement)
    if cfg.run.clock == "logical":
        for c in LINK_CLASSES:
            m = cfg.links.model(c)
            if m.delay or m.jitter:
                raise ConfigError(f"links delay / jitter ({c}: {m.delay * 1e3:g} / {m.jitter * 1e3:g} ms) need "
                                  "run.clock=real: the logical clock has no deadlines, so a delay changes nothing")
    if cfg.run.warmup_slots >= cfg.run.slots:
        raise ConfigError(f"run.warmup_slots ({cfg.run.warmup_slots}) must be below run.slots ({cfg.run.slots})")
    if cfg.run.decision_margin_us * 1e-3 >= cfg.run.slot_ms:
        raise ConfigError(f"run.decision_margin_us ({cfg.run.decision_margin_us:g}) must be below run.slot_ms "
                          f"({cfg.run.slot_ms:g} ms)")
