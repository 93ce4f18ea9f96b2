"""Faults at a live run: stray frames (of another iteration, kind or sender) sent with real ZeroMQ nodes at a
running backend's endpoints are counted and dropped, and the run's numbers stay those of an undisturbed run;
a BS actor killed in the middle of an iteration is named (which BS, its node and process).

Real Ray, real sockets; the attacker is a real :class:`protocol.RingNode` (or an air-port ``Hub``) in this
process. Without CURVE (one machine) a frame from a node id that does talk to the target moves that sender's
expected sequence number (:mod:`protocol.node`), so application-level strays are sent from ids that are in the
target's roster but silent towards it (the round-robin ring only runs b -> b+1), and frames claiming an id that
does talk are refused by the protocol (replayed) — both must leave the run untouched.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import numpy as np
import pytest
import torch

from bs_agent.trpo.actor import COORD_NODE
from bs_agent.trpo.ops import token_payload
from bs_agent.zo.host import LinkHost
from bs_agent.zo.messages import d_envelope
from coordinator.trpo.backend import make_backend
from coordinator.trpo.config import TrainConfig
from coordinator.trpo.ray_backend import stray_reason
from coordinator.trpo.trainer import Trainer
from coordinator.zo.config import ZOConfig, link_setups
from deploy.config import load_config
from protocol import Envelope, Kind, RingNode, airport

SMALL = ["policy.hidden=16", "policy.layers=2", "trpo.episodes=48", "trpo.cg_iters=4", "trpo.value_epochs=2",
         "run.scheme=partial"]
STRAY_CLASSES = {"WrongIteration", "UnexpectedKind", "UnexpectedSender", "MalformedPayload", "Duplicate"}


# ---------------------------------------------------------------------------------------------- no Ray
def test_coordinator_sorts_out_what_it_does_not_wait_for():
    """The FVP phase's filter at the coordinator: only this iteration's awaited answers of its agents pass."""
    ids, got, crit = [0, 1, 2], {1: "x"}, {2: "y"}
    env = Envelope(Kind.FVP, 0, COORD_NODE, 4, 0, {"fvp": np.zeros(3)})
    assert stray_reason(env, 4, ids, Kind.FVP, False, got, crit) is None
    assert stray_reason(env._replace(iteration=3), 4, ids, Kind.FVP, False, got, crit) == "WrongIteration"
    assert stray_reason(env._replace(sender=7), 4, ids, Kind.FVP, False, got, crit) == "UnexpectedSender"
    assert stray_reason(env._replace(sender=1), 4, ids, Kind.FVP, False, got, crit) == "Duplicate"
    assert stray_reason(env._replace(kind=Kind.METRICS), 4, ids, Kind.FVP, False, got, crit) == "UnexpectedKind"
    grad = env._replace(kind=Kind.GRADIENT)
    assert stray_reason(grad, 4, ids, Kind.FVP, False, got, crit) == "UnexpectedKind"      # no critic round rides
    assert stray_reason(grad, 4, ids, Kind.FVP, True, got, crit) is None
    assert stray_reason(grad._replace(sender=2), 4, ids, Kind.FVP, True, got, crit) == "Duplicate"


def _zo_cfg(clock: str = "logical") -> ZOConfig:
    return ZOConfig().replace(scenario={"n_links": 2},
                              algo={"b1": 5, "b2": 5, "update": "async" if clock == "real" else "sync"},
                              run={"clock": clock, "backend": "ray" if clock == "real" else "inproc"})


def _pair(clock: str = "logical") -> tuple[LinkHost, RingNode]:
    """Link 0's host and a real node playing its one neighbour, link 1, connected both ways."""
    host = LinkHost(link_setups(_zo_cfg(clock))[0])
    peer = RingNode(1)
    host.connect({1: peer.endpoint})
    peer.connect({0: host.node.endpoint})
    return host, peer


def _strays(peer: RingNode) -> list[str]:
    """Frames from link 0's neighbour that are not its next d message; returns the classes expected."""
    sends = [(Envelope(Kind.HEARTBEAT, 1, 0, 0, 0, {"note": 1}), "UnexpectedKind"),
             (d_envelope(1, 0, [(1, 0, 0.5), (0, 0, 0.1)], 10, graph=True), "UnexpectedKind"),
             (Envelope(Kind.SCALAR_D, 1, 0, 0, 0, {"d": "not a number", "slot": 10}), "MalformedPayload"),
             (Envelope(Kind.SCALAR_D, 1, 0, 0, 0, {"d": 0.5}), "MalformedPayload")]
    for env, _ in sends:
        peer.send(0, env)
    return [c for _, c in sends]


def test_link_host_drops_stray_frames_and_takes_its_neighbours_d():
    """receive_until (logical clock): a heartbeat, a d of the other kind, d messages without a usable payload and
    one of an iteration not next are counted and dropped (their rows out of the log); the real d^0 is taken as if
    it had come alone."""
    clean, cpeer = _pair()
    host, peer = _pair()
    try:
        real = d_envelope(1, 0, [(1, 0, 0.25)], 10, graph=False)
        cpeer.send(0, real)
        clean.receive_until({1: 0})
        want = _strays(peer) + ["WrongIteration"]
        peer.send(0, d_envelope(1, 3, [(1, 3, 0.5)], 10, graph=False))    # d^3 before d^0
        peer.send(0, real)
        host.receive_until({1: 0})
        assert host.node.stats.rejected == Counter(want) and host.strays == len(want)
        assert host.stats()["rejected"] == len(want)
        assert host.last_iter == clean.last_iter == {1: 0}
        assert host.agent.pending == clean.agent.pending and [e for _, e in clean.agent.pending] == [(1, 0, 0.25)]
        a, b = host.log.take(), clean.log.take()
        keep = [0, 1, 2, 3, 4, 6, 10]              # not seq (the peer numbered its strays too) nor the times
        assert a[:, keep].tolist() == b[:, keep].tolist() and len(a) == 1
    finally:
        for x in (host, clean, peer, cpeer):
            x.close()


def test_real_clock_receiver_drops_stray_frames():
    """The real clock's receiver thread: strays never reach the inbox (eq. (8) takes what is there)."""
    host, peer = _pair("real")
    try:
        host.start_receiver()
        want = _strays(peer)
        peer.send(0, d_envelope(1, 0, [(1, 0, 0.25)], 10, graph=False))
        deadline = time.monotonic() + 30
        while not host.inbox and time.monotonic() < deadline:      # (a bound, not a measurement)
            time.sleep(0.005)
        assert len(host.inbox) == 1 and host.inbox[0].kind == Kind.SCALAR_D
        assert host.node.stats.rejected == Counter(want)
        host.absorb()
        assert [e for _, e in host.agent.pending] == [(1, 0, 0.25)]
        kinds = {int(r[1]) for r in host.log.take()}
        assert kinds == {int(Kind.SCALAR_D)}                        # only the real d's row
    finally:
        host.close()
        peer.close()


# ---------------------------------------------------------------------------------------------- live Ray runs
def _attack_trpo(be, sent: dict[str, Counter], done: threading.Event, finish: threading.Event) -> None:
    """Wait for an FVP phase, then send strays at every agent (from the BS after it: in the roster, silent towards
    it) and at the coordinator (claiming agent 0 with old sequence numbers; and an id nobody has)."""
    while be._serving is None and not finish.is_set():
        time.sleep(0.001)
    it, nodes = be._iteration, []
    try:
        M, B, L = 48, 3, 6
        for b in range(B):
            s = (b + 1) % B
            n = RingNode(s)
            n.connect({b: be.endpoints[b]})
            nodes.append(n)
            for env in (Envelope(Kind.POWER_VECTOR, s, b, it, 0, token_payload(np.zeros((M, L)), np.zeros((M, B)))),
                        Envelope(Kind.FVP_REQUEST, s, b, it, 0, {"v": np.zeros(4, np.float32)}),
                        Envelope(Kind.PARAMETERS, s, b, it + 7, 0, {"theta": np.zeros(4, np.float32)}),
                        Envelope(Kind.HEARTBEAT, s, b, it, 0, {"note": 1}),
                        Envelope(Kind.METRICS, s, b, it, 0, {"surrogate": 0.0, "kl": 0.0})):
                n.send(b, env)
                sent[f"bs{b}"]["any"] += 1
        spoof, nobody = RingNode(0), RingNode(77)
        nodes += [spoof, nobody]
        spoof.connect({COORD_NODE: be.endpoints[COORD_NODE]})
        nobody.connect({COORD_NODE: be.endpoints[COORD_NODE]})
        for _ in range(2):
            spoof.send(COORD_NODE, Envelope(Kind.FVP, 0, COORD_NODE, it - 1, 0, {"fvp": np.zeros(4, np.float32)}))
            sent["coordinator"]["ReplayedMessage"] += 1
        nobody.send(COORD_NODE, Envelope(Kind.FVP, 77, COORD_NODE, it, 0, {"fvp": np.zeros(4, np.float32)}))
        sent["coordinator"]["UnknownSender"] += 1
        done.set()
        finish.wait(600)                 # (closing now, linger 0, could discard frames not yet on the wire)
    finally:
        done.set()
        for n in nodes:
            n.close()


@pytest.mark.ray
def test_stray_frames_at_a_live_trpo_run_are_counted_and_dropped(ray_session):
    """Strays at every BS's node and at the coordinator's during an iteration's FVP phase: the run goes on, each
    is counted where it landed (the BSs: by stray class, in whichever loop read it; the coordinator: refused by the
    protocol), and parameters and logged messages equal those of an undisturbed run of as many iterations."""
    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, None, SMALL + ["run.backend=ray"])
    be = make_backend(cfg)
    sent: dict[str, Counter] = {k: Counter() for k in ("bs0", "bs1", "bs2", "coordinator")}
    done, finish = threading.Event(), threading.Event()
    th = threading.Thread(target=_attack_trpo, args=(be, sent, done, finish))
    try:
        tr = Trainer(cfg, be)
        ms = [tr.step()]
        th.start()
        while not done.is_set():                            # the strays go out during one of these iterations
            ms.append(tr.step())
        want = {k: sum(c.values()) for k, c in sent.items()}
        for _ in range(20):                                 # until every node has read past them
            ms.append(tr.step())
            dropped = be.dropped_frames()
            if {k: sum(dropped[k].values()) for k in want} == want:
                break
        theta, phi = tr.theta.clone(), tr.phi.detach().clone()
    finally:
        finish.set()
        th.join()
        be.close()
    for b in range(3):
        got = dropped[f"bs{b}"]
        assert sum(got.values()) == sent[f"bs{b}"]["any"] == 5 and set(got) <= STRAY_CLASSES, got
    assert dropped["coordinator"] == dict(sent["coordinator"])
    ref = load_config(TrainConfig, None, SMALL + ["run.backend=inproc"])
    rt = Trainer(ref, make_backend(ref))
    rms = [rt.step() for _ in ms]
    assert torch.equal(theta, rt.theta) and torch.equal(phi, rt.phi.detach())
    msgs = [{k: v for k, v in m.items() if k.startswith("msgs_")} for m in ms]
    assert msgs == [{k: v for k, v in m.items() if k.startswith("msgs_")} for m in rms]
    assert [m["reward"] for m in ms] == [m["reward"] for m in rms]


@pytest.mark.ray
def test_stray_frames_at_a_live_zo_run_are_counted_and_dropped(ray_session):
    """Frames at every link's node (a neighbour's id with an old sequence number, an unknown id) and well-formed
    air-port commands no actor can serve (links it does not host, the other clock, a SETTLE of the wrong size), sent
    between iterations: counted, dropped, and the trajectories equal the in-process backend's."""
    from coordinator.messages import RunMessages
    from coordinator.zo.links import Exchange
    from coordinator.zo.ray_links import RayLinks
    from coordinator.zo.train import make_trainer

    cfg = ZOConfig().replace(scenario={"n_links": 3}, algo={"b1": 5, "b2": 5})
    ex, log = Exchange(), RunMessages()
    links = RayLinks(cfg, log, ex)
    nodes: list = []
    try:
        tr = make_trainer(cfg, log, ex, links)
        for _ in range(2):
            tr.run_iteration()
        for i, ep in links.endpoints.items():
            j = (i + 1) % 3
            old, nobody = RingNode(j), RingNode(50)
            old.connect({i: ep})
            nobody.connect({i: ep})
            old.send(i, d_envelope(j, 0, [(j, 0, 9.0)], 0, graph=False))      # seq 0: the HELLO's, long gone
            nobody.send(i, d_envelope(50, 1, [(50, 1, 9.0)], 0, graph=False))
            nodes += [old, nobody]
        for ep in links.port_endpoints:
            hub = airport.Hub()
            hub.connect({0: ep})
            hub.send(0, airport.STEP, 0, [99], np.zeros(10))                   # a link no actor hosts
            hub.send(0, airport.STEP_REAL, 0, [0, 1, 2], np.zeros(30))         # the other clock
            hub.send(0, airport.SETTLE, 0, [], np.zeros(7))                    # one k per link of the run: 3
            nodes.append(hub)
        want = {f"link{i}": {"ReplayedMessage": 1, "UnknownSender": 1} for i in range(3)}
        want.update({f"air{a}": {"command": 3} for a in range(len(links.port_endpoints))})
        iterations = 2
        while iterations < 300:                 # until every link has read past them (connections take a moment)
            tr.run_iteration()
            iterations += 1
            dropped = links.dropped_frames()
            if all(dropped.get(k) == v for k, v in want.items()):
                break
        tr.finish()
        thetas = tr.thetas()
    finally:
        links.close()
        for n in nodes:
            n.close()
    for i in range(3):
        assert dropped[f"link{i}"] == {"ReplayedMessage": 1, "UnknownSender": 1}, dropped
    for a in range(len(links.port_endpoints)):
        assert dropped[f"air{a}"] == {"command": 3}, dropped
    ex_ref = Exchange()
    ref = make_trainer(cfg, RunMessages(), ex_ref)
    for _ in range(iterations):
        ref.run_iteration()
    ref.finish()
    assert all(np.array_equal(x, y) for x, y in zip(thetas, ref.thetas(), strict=True))
    assert (ex.messages, ex.bytes, ex.dropped) == (ex_ref.messages, ex_ref.bytes, ex_ref.dropped)


@pytest.mark.ray
def test_a_bs_actor_killed_mid_iteration_is_named(ray_session):
    """SIGKILL to a BS actor's process while the agents serve the FVP phase: the step raises Ray's actor error at
    once (not after a timeout), the backend names the BS, its node and its process, and closes without hanging."""
    import ray

    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, None, SMALL + ["run.backend=ray"])
    be = make_backend(cfg)
    try:
        where = be.meta()["placement"]
        pid = where["bs1"]["pid"]
        tr = Trainer(cfg, be)
        tr.step()

        def kill() -> None:
            while be._serving is None:
                time.sleep(0.001)
            os.kill(pid, signal.SIGKILL)

        th = threading.Thread(target=kill)
        th.start()
        with pytest.raises(ray.exceptions.RayActorError) as err:
            for _ in range(3):
                tr.step()
        th.join()
        who = be.dead_actor(err.value)
        assert who == {"name": "BS 1", "node": where["bs1"]["node"], "ip": where["bs1"]["ip"], "pid": str(pid)}
        assert be.dead_actor(RuntimeError("not an actor error")) is None
    finally:
        be.close()
