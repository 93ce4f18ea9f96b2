"""Fail fast: how long bsemu takes to give up on a Ray or a peer that is not there, and how long the cluster
check takes on a real cluster -- the figures tests/coordinator/test_cluster.py and tests/deploy/test_cluster.py
used to bound with wall-clock assertions (now they assert only the behaviour, with hang guards).

    python benchmarks/failfast.py [--reps 3] [--skip-cluster] [--skip-recipe]

Cases, each run ``--reps`` times, printed as p50 and max seconds with the load average (1 min) after the row:

* ``check_address`` on a closed port of 127.0.0.1 (``coordinator.session``; the test's goal: < 2 s);
* ``ray_session()`` with ``RAY_ADDRESS`` at a closed port: refused before Ray is initialised (goal < 3 s;
  ``ray.init`` alone retries for over a minute);
* ``NodeProbe.probe`` towards a peer nobody serves (reach timeout 0.3 s, serve 0.5 s; goal < 3 s);
* ``bsemu cluster-check --address`` a closed port, through a subprocess (goal < 10 s), beside ``bsemu
  cluster-check --help`` in the same process set-up (the interpreter and CLI import floor), and their ratio;
* on a 2-node ``ray.cluster_utils.Cluster`` of this machine (head + 1 node, 1 CPU each, as the tests):
  ``bsemu cluster-check`` through a subprocess (goal <= 10 s) and ``check_cluster(rounds=4)`` in this process
  (goal ~1-3 s);
* on the on-premises recipe (``deploy/cluster/head.sh`` + ``worker.sh``, token authentication, as the slow test
  ``test_recipe_forms_a_two_node_cluster_that_checks_out``): ``bsemu cluster-check`` with the token, and with a
  wrong token, refused in one line (the test bounded it at 20 s).

Every run is checked for the outcome its test asserts (the error, exit 2, unfinished == [2], report.ok); a run
that ends otherwise stops the benchmark. Both cluster nodes share this machine's cores, which other work may
load: read the figures beside their load average.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# run as a script, sys.path[0] is benchmarks/, whose protocol.py would shadow the protocol package
sys.path[:1] = [str(Path(__file__).resolve().parents[1])]

from coordinator.cluster import check_cluster  # noqa: E402
from coordinator.session import SessionError, check_address, ray_session  # noqa: E402
from tests.coordinator.test_cluster import closed_port, probe_absent_peer, two_node_cluster  # noqa: E402
from tests.deploy import test_cluster as cli  # noqa: E402

HEADER = f"{'case':<58} {'goal':>8} {'p50 s':>7} {'max s':>7}  load"


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def timed(fn: Callable[[], object], reps: int) -> list[float]:
    """Seconds of each of ``reps`` calls of ``fn`` (which checks its own outcome)."""
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def row(case: str, goal: str, times: list[float]) -> float:
    p50 = statistics.median(times)
    print(f"{case:<58} {goal:>8} {p50:7.3f} {max(times):7.3f}  {load()}", flush=True)
    return p50


def expect_refused(fn: Callable[[], object], says: str) -> None:
    try:
        fn()
    except SessionError as exc:
        if says not in str(exc):
            raise RuntimeError(f"refused, but not with {says!r}: {exc}") from None
        return
    raise RuntimeError(f"not refused (expected {says!r})")


def cli_refused(args: list[str], env: dict, says: str) -> None:
    r = cli.bsemu("cluster-check", *args, env=env)
    cli.assert_one_line_exit_2(r, says)


def cli_ok(address: str, env: dict) -> None:
    r = cli.bsemu("cluster-check", "--address", address, env=env)
    if r.returncode != 0 or "2 alive node(s) of 2" not in r.stdout:
        raise RuntimeError(f"cluster-check did not pass (exit {r.returncode}): {r.stdout[-1500:]}{r.stderr[-1500:]}")


# ---------------------------------------------------------------- no Ray at all
def ray_address_refused() -> None:
    """ray_session() with RAY_ADDRESS at a closed port (this process has not initialised Ray)."""
    import ray

    old = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = f"127.0.0.1:{closed_port()}"
    try:
        expect_refused(ray_session, "(from RAY_ADDRESS): connection refused")
    finally:
        if old is None:
            os.environ.pop("RAY_ADDRESS")
        else:
            os.environ["RAY_ADDRESS"] = old
    if ray.is_initialized():
        raise RuntimeError("ray_session initialised Ray on a refused address")


def probe_gives_up() -> None:
    res = probe_absent_peer()
    if res["unfinished"] != [2] or res["pairs"][2].get("ok"):
        raise RuntimeError(f"the probe did not give up on the absent peer: {res}")


def local_section(reps: int) -> None:
    import ray  # noqa: F401  imported (not initialised) before timing, as in the test: the import is not the check
    row("check_address, closed port (in process)", "< 2", timed(
        lambda: expect_refused(lambda: check_address("127.0.0.1", closed_port()), "connection refused"), reps))
    row("ray_session(), RAY_ADDRESS at a closed port (in process)", "< 3", timed(ray_address_refused, reps))
    row("NodeProbe.probe, absent peer (reach 0.3 s + serve 0.5 s)", "< 3", timed(probe_gives_up, reps))
    env = cli.clean_env()
    floor = row("bsemu cluster-check --help (subprocess: the CLI floor)", "-", timed(
        lambda: cli.bsemu("cluster-check", "--help", env=env).check_returncode(), reps))
    dead = row("bsemu cluster-check --address closed port (subprocess)", "< 10", timed(
        lambda: (lambda a: cli_refused(["--address", a], env, f"Ray address {a}: connection refused"))(
            f"127.0.0.1:{closed_port()}"), reps))
    print(f"{'  ratio closed port / --help (p50)':<58} {'':>8} {dead / floor:7.2f}x")


# ---------------------------------------------------------------- a 2-node ray.cluster_utils.Cluster
def cluster_section(reps: int) -> None:
    print("\n2-node Ray cluster of this machine (ray.cluster_utils.Cluster: head + 1 node, 1 CPU each)", flush=True)
    t0 = time.perf_counter()
    with two_node_cluster() as cluster:
        print(f"  (cluster up in {time.perf_counter() - t0:.1f} s, {load()})", flush=True)
        env = cli.clean_env()
        row("bsemu cluster-check, 2 nodes (subprocess)", "<= 10", timed(lambda: cli_ok(cluster.address, env), reps))
        session = ray_session(cluster.address)
        try:
            def check() -> None:
                report = check_cluster(cluster.address, rounds=4)
                if not report.ok or len(report.nodes) != 2:
                    raise RuntimeError(f"check_cluster did not pass: {report.problems}")

            row("check_cluster(rounds=4), 2 nodes (in process)", "~1-3", timed(check, reps))
        finally:
            session.close()


# ---------------------------------------------------------------- the on-premises recipe, token authentication
def recipe_section(reps: int) -> None:
    """head.sh + worker.sh on this machine as the slow test starts them (own temp dirs and ports, a fresh token)."""
    print("\non-premises recipe (deploy/cluster/head.sh + worker.sh, token authentication, 1 CPU each)", flush=True)
    temp = Path(tempfile.mkdtemp(prefix="bsf", dir="/tmp"))  # short: Ray's socket paths live under it
    token = temp / "token"
    gcs, *ports = cli._ports(15)
    base = random.Random().randrange(20000, 29000, 100)
    head_env = cli._node_env(temp / "h", token, ports[:7], base)
    head_env["BSEMU_RAY_PORT"] = str(gcs)
    worker_env = cli._node_env(temp / "w", token, ports[7:14], base + 100)
    address = f"127.0.0.1:{gcs}"
    procs = []
    t0 = time.perf_counter()
    try:
        procs.append(cli._start([str(cli.RECIPE / "head.sh"), "--block", "--num-cpus=1"], head_env,
                                temp / "head.log"))
        cli._wait_started(procs[0], temp / "head.log")
        procs.append(cli._start([str(cli.RECIPE / "worker.sh"), address, "--block", "--num-cpus=1"], worker_env,
                                temp / "worker.log"))
        cli._wait_started(procs[1], temp / "worker.log")
        driver = cli.clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
        for _ in range(20):  # untimed: until the worker has registered with the GCS
            r = cli.bsemu("cluster-check", "--address", address, env=driver)
            if r.returncode != 0 or "2 alive node(s)" in r.stdout:
                break
            time.sleep(1)
        print(f"  (nodes up in {time.perf_counter() - t0:.1f} s, {load()})", flush=True)
        row("bsemu cluster-check, recipe's 2 nodes, token (subprocess)", "-", timed(lambda: cli_ok(address, driver),
                                                                                   reps))
        wrong = temp / "wrong"
        wrong.write_text("0" * 64)
        bad = cli.clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(wrong))
        row("bsemu cluster-check, wrong token refused (subprocess)", "< 20", timed(
            lambda: cli_refused(["--address", address], bad, "refused this process's authentication token"), reps))
    finally:
        for proc in reversed(procs):
            cli._stop(proc)
        deadline = time.monotonic() + 30
        while (left := cli._left_behind(temp)) and time.monotonic() < deadline:
            time.sleep(1)
        shutil.rmtree(temp, ignore_errors=True)
    if left:
        print(f"  left running: {left}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="runs of each case (>= 1)")
    ap.add_argument("--skip-cluster", action="store_true", help="no ray.cluster_utils.Cluster section")
    ap.add_argument("--skip-recipe", action="store_true", help="no head.sh / worker.sh section")
    a = ap.parse_args()
    if a.reps < 1:
        ap.error(f"--reps {a.reps}: expected an integer >= 1")
    print(f"fail fast: {a.reps} run(s) per case; goals are the bounds the tests used to assert\n")
    print(HEADER)
    local_section(a.reps)
    if not a.skip_cluster:
        cluster_section(a.reps)
    if not a.skip_recipe:
        recipe_section(a.reps)


if __name__ == "__main__":
    main()
