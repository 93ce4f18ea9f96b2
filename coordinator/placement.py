"""Where a run's actors go (``run.placement``), and where they went.

* ``spread`` (default): actor i on the i-th alive node, round-robin over the nodes in a fixed order
  (sorted by address, then node id), so that every node gets one before any gets two; on one machine,
  everything on it;
* ``pack``: every actor on the driver's node;
* an explicit map ``"0:10.0.0.2,1:#1,cu:5317df9d"``: actor → node, the node named by its IP, by ``#k`` (the
  k-th node in the fixed order) or by a prefix of its Ray node id; actors not named are spread.

Actors are pinned with ``NodeAffinitySchedulingStrategy(node_id, soft=False)`` (they ask for no CPU, so
Ray's resource accounting would otherwise place them by chance). A name that matches no alive node, or
several, is a :class:`ConfigError` naming it and listing the nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coordinator.config import ConfigError
from coordinator.config import config_field as _f

MODES = ("spread", "pack")


# ---------------------------------------------------------------------------------------------- run.* fields
# where a run's actors go, whether its sockets use CURVE, and what happens when one dies: the same keys, with the
# same meaning, in the train, zo and execute configs (each names its own actors)
SECURE_CHOICES = ("auto", "on", "off", True, False)


def placement_field(actors: str, actor: str) -> Any:
    """``run.placement`` of a config whose ray backend starts ``actors`` (named in a map as ``actor``)."""
    return _f("spread", f"where the {actors} go: spread (round-robin over the cluster's nodes) | pack (the driver's "
                        f"node) | 'ACTOR:NODE,...' (ACTOR {actor}, NODE an IP, #k or a node-id prefix; the others "
                        "spread)")


def max_restarts_field(actor: str) -> Any:
    """``run.max_restarts``: restarts of the run's actors from the last checkpoint when ``actor`` dies."""
    return _f(0, f"ray backend: when {actor} dies, restart the run's actors and continue from the last checkpoint, "
                 "at most this many times (0: stop with one line naming it and the resume command)", range=(0, 1000))


def secure_field(extra: str = "") -> Any:
    """``run.secure``: CURVE on the run's ZeroMQ nodes (``extra``: what it means for this config's actors)."""
    return _f("auto", "CURVE on every ZeroMQ node of the run with per-run keys (DESIGN §6b): auto (on whenever a "
                      "socket binds more than loopback: the actors span nodes or the run joined a cluster by address, "
                      "or the cluster has a node on another host; off on one machine) | on | off (YAML reads on / "
                      "off as true / false: the same)" + extra, choices=SECURE_CHOICES)


@dataclass(frozen=True)
class Node:
    node_id: str
    ip: str


def alive_nodes() -> list[Node]:
    """The cluster's alive nodes in the fixed order of ``spread`` (address, then node id)."""
    import ray

    nodes = [Node(n["NodeID"], n["NodeManagerAddress"]) for n in ray.nodes() if n.get("Alive")]
    return sorted(nodes, key=lambda n: (n.ip, n.node_id))


def check_placement(text: str) -> None:
    """Syntax of a ``run.placement`` value (the nodes are checked when the run starts)."""
    if text in MODES:
        return
    for item in text.split(","):
        key, sep, node = item.partition(":")
        if not sep or not key.strip() or not node.strip():
            raise ConfigError(f"run.placement: expected spread, pack or 'ACTOR:NODE,...' (NODE an IP, #k or a node-id "
                              f"prefix), got {text!r}")


def _resolve(spec: str, nodes: Sequence[Node], item: str) -> Node:
    spec = spec.strip()
    if spec.startswith("#"):
        try:
            return nodes[int(spec[1:])]
        except (ValueError, IndexError):
            pass
        found: list[Node] = []
    else:
        found = [n for n in nodes if n.ip == spec] or [n for n in nodes if n.node_id.startswith(spec)]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(f"#{k} {n.ip} {n.node_id[:8]}" for k, n in enumerate(nodes))
    what = "matches several nodes" if found else "matches no alive node"
    raise ConfigError(f"run.placement: {item!r} {what}; alive nodes: {listed}")


def plan(placement: str, actors: Sequence[str]) -> dict[str, Node]:
    """The node of every actor (named as in the map: a BS index, a link index, ``cu``)."""
    import ray

    check_placement(placement)
    nodes = alive_nodes()
    if placement == "pack":
        here = ray.get_runtime_context().get_node_id()
        node = next((n for n in nodes if n.node_id == here), nodes[0])
        return {a: node for a in actors}
    pinned: dict[str, Node] = {}
    if placement != "spread":
        for item in placement.split(","):
            key, _, spec = item.partition(":")
            if key.strip() not in actors:
                raise ConfigError(f"run.placement: {item!r} names no actor of this run (actors: {', '.join(actors)})")
            pinned[key.strip()] = _resolve(spec, nodes, item)
    rest = [a for a in actors if a not in pinned]
    return {**pinned, **{a: nodes[k % len(nodes)] for k, a in enumerate(rest)}}


def actor_options(where: Node) -> dict[str, Any]:
    """Ray actor options that pin an actor to ``where``."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=where.node_id, soft=False)}


def spans_nodes(where: dict[str, Node]) -> bool:
    """Whether the actors (and so their sockets) are on more than one node."""
    return len({n.node_id for n in where.values()}) > 1


def describe(where: dict[str, Node]) -> dict[str, dict[str, str]]:
    """For meta.json: actor → {node, ip}."""
    return {a: {"node": n.node_id, "ip": n.ip} for a, n in where.items()}
