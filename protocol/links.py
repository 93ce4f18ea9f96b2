"""Per-link delay and loss emulation, in logical time (slots) or real time (nanoseconds).

Each directed link (sender → receiver) has a :class:`LinkModel` and its own
``numpy.random.Generator`` derived from the run's root seed (:func:`link_rng`), so what a link
injects depends only on (root seed, sender, receiver, purpose) and on how many messages that
link carried before — never on other links, on timing, or on any global RNG.

Per message the emulator draws, in this order, ``u ~ U[0, 1)`` (dropped iff ``u < drop_prob``)
and a delay:

=============  =====================================  =========================================
model          real clock (seconds → integer ns)      logical clock (integer slots)
=============  =====================================  =========================================
fixed          ``delay``                              ``delay``
uniform        ``delay + jitter · U[0, 1)``           uniform integer in ``[delay, delay+jitter]``
exponential    ``delay + Exp(mean=jitter)``           ``delay + floor(Exp(mean=jitter))`` (geometric)
=============  =====================================  =========================================

A link is FIFO unless ``reorder=True``: a FIFO message is never released before the previous
message of the same link, so its *effective* delay (``LinkDecision.delay``, what the log records)
is ``max(drawn delay, previous due − now)``. With ``reorder=True`` the drawn delay is used as is
and later messages may overtake earlier ones.

Held messages wait in a deadline heap; :meth:`LinkEmulator.pop_due` releases every message whose
due time has come, in a deterministic order (logical: due slot, sender, receiver, link order).
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from .errors import ConfigError

Clock = Literal["logical", "real"]
_MODEL_KINDS = ("fixed", "uniform", "exponential")
_ID_OFFSET = 2**32  # spawn keys must be ≥ 0: negative ids (BROADCAST, COORDINATOR) map to 2**32 + id


def _key(x: int | str) -> int:
    if isinstance(x, str):
        return zlib.crc32(x.encode())
    return int(x) % _ID_OFFSET if x < 0 else int(x)


def link_rng(root_seed: int, sender: int, receiver: int, purpose: int | str = "link") -> np.random.Generator:
    """Generator of one link for one purpose:
    ``SeedSequence(entropy=root_seed, spawn_key=(sender, receiver, purpose))``.

    Negative node ids map to ``2**32 + id``; a str purpose maps to its CRC-32.
    """
    ss = np.random.SeedSequence(entropy=root_seed, spawn_key=(_key(sender), _key(receiver), _key(purpose)))
    return np.random.Generator(np.random.PCG64(ss))


@dataclass(frozen=True)
class LinkModel:
    """Delay/loss model of one directed link.

    Attributes:
        kind: ``"fixed"``, ``"uniform"`` or ``"exponential"`` (see the module table).
        delay: base delay; seconds on the real clock, slots on the logical clock.
        jitter: uniform width or exponential mean, same unit as ``delay``.
        drop_prob: probability in [0, 1] that a message is dropped.
        reorder: ``False`` keeps the link FIFO; ``True`` lets later messages overtake.
    """

    kind: str = "fixed"
    delay: float = 0.0
    jitter: float = 0.0
    drop_prob: float = 0.0
    reorder: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _MODEL_KINDS:
            raise ConfigError(f"link model kind {self.kind!r} not in {_MODEL_KINDS}")
        for name in ("delay", "jitter"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"link model {name}={v!r} must be a finite number ≥ 0")
        if not isinstance(self.drop_prob, (int, float)) or not 0.0 <= self.drop_prob <= 1.0:
            raise ConfigError(f"drop_prob={self.drop_prob!r} must be in [0, 1]")

    @property
    def deterministic(self) -> bool:
        """True when no random draw is needed (fixed delay, no loss)."""
        return (self.kind == "fixed" or self.jitter == 0) and self.drop_prob == 0

    def check_logical(self) -> None:
        """Raise :class:`ConfigError` unless delays are whole slots (required on the logical clock)."""
        if self.delay != int(self.delay) or (self.kind == "uniform" and self.jitter != int(self.jitter)):
            raise ConfigError(f"logical-clock link needs integer delay/jitter in slots: {self}")


NO_DELAY = LinkModel()


class LinkDecision(NamedTuple):
    """What the emulator injected into one message.

    Attributes:
        delay: effective injected delay: slots (logical clock) or ns (real clock).
        dropped: the message was dropped (never released).
        due: release time: slot (logical) or ``time.monotonic_ns()`` value (real).
    """

    delay: int
    dropped: bool
    due: int


class _Link:
    __slots__ = ("model", "rng", "last_due", "count")

    def __init__(self, model: LinkModel, rng: np.random.Generator | None) -> None:
        self.model = model
        self.rng = rng
        self.last_due = -(2**62)
        self.count = 0


class LinkEmulator:
    """Decides per message (delay, dropped) and holds messages until due.

    Args:
        models: one :class:`LinkModel` for every link, or a mapping ``(sender, receiver) → model``
            (links not in it get ``default``).
        root_seed: the run's root seed (per-link generators via :func:`link_rng`).
        clock: ``"logical"`` (``now``/``due`` in slots) or ``"real"`` (``now``/``due`` in ns of
            ``time.monotonic_ns()``; model delays given in seconds).
        default: model of links absent from ``models`` (no delay, no loss if omitted).
        purpose: the purpose part of each link's spawn key.

    Not thread-safe; one emulator per receiving node (or per in-process backend).
    """

    def __init__(
        self,
        models: LinkModel | Mapping[tuple[int, int], LinkModel],
        root_seed: int,
        clock: Clock = "logical",
        default: LinkModel = NO_DELAY,
        purpose: int | str = "link",
    ) -> None:
        if clock not in ("logical", "real"):
            raise ConfigError(f"clock {clock!r} must be 'logical' or 'real'")
        if not isinstance(root_seed, (int, np.integer)) or root_seed < 0:
            raise ConfigError(f"root_seed {root_seed!r} must be an int ≥ 0")
        self.clock: Clock = clock
        self.root_seed = int(root_seed)
        self.purpose = purpose
        self._uniform_model = models if isinstance(models, LinkModel) else None
        self._models: Mapping[tuple[int, int], LinkModel] = {} if self._uniform_model else dict(models)
        self._default = default
        if clock == "logical":
            for m in (default, *self._models.values(), self._uniform_model or default):
                m.check_logical()
        self._links: dict[tuple[int, int], _Link] = {}
        self._heap: list[tuple[Any, ...]] = []
        self._counter = 0
        self.submitted = 0
        self.dropped = 0
        self.released = 0

    def model(self, sender: int, receiver: int) -> LinkModel:
        """The model of link sender → receiver."""
        if self._uniform_model is not None:
            return self._uniform_model
        return self._models.get((sender, receiver), self._default)

    def _link(self, sender: int, receiver: int) -> _Link:
        link = self._links.get((sender, receiver))
        if link is None:
            m = self.model(sender, receiver)
            rng = None if m.deterministic else link_rng(self.root_seed, sender, receiver, self.purpose)
            link = self._links[(sender, receiver)] = _Link(m, rng)
        return link

    def _draw(self, link: _Link) -> tuple[int, bool]:
        """Draw (delay in clock units, dropped) for the next message of ``link``."""
        m, rng = link.model, link.rng
        if rng is None:
            d = m.delay
            return (int(d) if self.clock == "logical" else round(d * 1e9)), False
        dropped = bool(rng.random() < m.drop_prob)
        if self.clock == "logical":
            if m.kind == "uniform":
                return int(rng.integers(int(m.delay), int(m.delay + m.jitter), endpoint=True)), dropped
            if m.kind == "exponential" and m.jitter > 0:
                return int(m.delay) + math.floor(rng.exponential(m.jitter)), dropped
            return int(m.delay), dropped
        if m.kind == "uniform":
            d = m.delay + m.jitter * rng.random()
        elif m.kind == "exponential":
            d = m.delay + (rng.exponential(m.jitter) if m.jitter > 0 else 0.0)
        else:
            d = m.delay
        return round(d * 1e9), dropped

    def decide(self, sender: int, receiver: int, now: int) -> LinkDecision:
        """Draw the fate of the next message on sender → receiver, sent (arrived) at ``now``,
        without holding anything (for callers that keep messages themselves)."""
        link = self._link(sender, receiver)
        delay, dropped = self._draw(link)
        link.count += 1
        self.submitted += 1
        if dropped:
            self.dropped += 1
            return LinkDecision(delay, True, now + delay)
        due = now + delay
        if not link.model.reorder and due < link.last_due:
            due = link.last_due
        link.last_due = due
        return LinkDecision(due - now, False, due)

    def submit(self, item: Any, sender: int, receiver: int, now: int) -> LinkDecision:
        """Decide the fate of ``item`` and, unless dropped, hold it until its due time."""
        dec = self.decide(sender, receiver, now)
        if not dec.dropped:
            self._counter += 1
            if self.clock == "logical":  # deterministic order, independent of arrival interleaving
                key: tuple[Any, ...] = (dec.due, sender, receiver, self._links[(sender, receiver)].count)
            else:
                key = (dec.due, self._counter)
            heapq.heappush(self._heap, (key, item, dec))
        return dec

    def pop_due(self, now: int) -> list[tuple[Any, LinkDecision]]:
        """Release every held item with ``due ≤ now``, in release order."""
        heap, out = self._heap, []
        while heap and heap[0][0][0] <= now:
            _, item, dec = heapq.heappop(heap)
            out.append((item, dec))
        self.released += len(out)
        return out

    def pop_one(self, now: int) -> tuple[Any, LinkDecision] | None:
        """Release the first held item with ``due ≤ now``, or ``None``."""
        heap = self._heap
        if heap and heap[0][0][0] <= now:
            _, item, dec = heapq.heappop(heap)
            self.released += 1
            return item, dec
        return None

    def next_due(self) -> int | None:
        """Due time of the earliest held item (clock units), or ``None`` if nothing is held."""
        return self._heap[0][0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)

    def state(self) -> dict[str, Any]:
        """Plain-type state (ints, lists, the generators' states) for a checkpoint, with nothing held:
        what each link has drawn so far (its generator, its last due time, its message count)."""
        if self._heap:
            raise ConfigError(f"link emulator: {len(self._heap)} messages held; checkpoint when none is in flight")
        links = [[s, r, None if ln.rng is None else ln.rng.bit_generator.state, ln.last_due, ln.count]
                 for (s, r), ln in self._links.items()]
        return {"links": links, "counters": [self._counter, self.submitted, self.dropped, self.released]}

    def load_state(self, st: Mapping[str, Any]) -> None:
        """Restore :meth:`state` (on an emulator built with the same models, seed and clock)."""
        self._links, self._heap = {}, []
        for s, r, rng_state, last_due, count in st["links"]:
            link = self._link(int(s), int(r))
            if rng_state is not None and link.rng is not None:
                link.rng.bit_generator.state = rng_state
            link.last_due, link.count = int(last_due), int(count)
        self._counter, self.submitted, self.dropped, self.released = (int(x) for x in st["counters"])


__all__ = ["Clock", "LinkModel", "LinkDecision", "LinkEmulator", "link_rng", "NO_DELAY"]
