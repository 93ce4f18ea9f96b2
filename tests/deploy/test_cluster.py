"""deploy/cluster (the on-premises recipe: scripts and the `ray up` YAML) and `bsemu cluster-check`
through a subprocess: bad addresses fail fast in one line, a real 2-node cluster checks out."""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests import ROOT
from tests.coordinator.test_cluster import closed_port, two_node_cluster

RECIPE = ROOT / "deploy" / "cluster"
RAY_BIN = Path(sys.executable).parent / "ray"


def bsemu(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m deploy.cli ARGS``; ``timeout`` is a hang guard, not a speed bound (the speeds are in
    benchmarks/failfast.py): a command still running after it fails the test, naming the command."""
    try:
        return subprocess.run([sys.executable, "-m", "deploy.cli", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`bsemu {' '.join(args)}` still running after {timeout:g} s (hung?); stderr so far: "
                    f"{(exc.stderr or b'')[-2000:]!r}")


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(extra)
    return env


def assert_one_line_exit_2(r: subprocess.CompletedProcess, says: str) -> None:
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bsemu cluster-check: error: ") and says in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


# ------------------------------------------------------------------------------------------ the ray up YAML
def test_cluster_yaml_is_a_valid_on_prem_config():
    """Loads with yaml.safe_load, has what an on-premises bsemu cluster needs, and passes Ray's own cluster
    config schema after Ray's own preparation (what `ray up` runs before it starts anything)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((RECIPE / "cluster.yaml").read_text())
    for key in ("cluster_name", "provider", "auth", "file_mounts", "setup_commands", "head_start_ray_commands",
                "worker_start_ray_commands"):
        assert key in cfg, key
    assert cfg["provider"]["type"] == "local"
    assert cfg["provider"]["head_ip"] == "HEAD_IP" and cfg["provider"]["worker_ips"] == ["WORKER_IP_1"]
    assert {"ssh_user", "ssh_private_key"} <= set(cfg["auth"])
    assert any("pip install" in c and "-c constraints.txt -e ." in c for c in cfg["setup_commands"])
    assert "~/.bsemu/ray_auth_token" in cfg["file_mounts"]  # the one token, handed to every node
    assert any("head.sh" in c for c in cfg["head_start_ray_commands"])
    assert any("worker.sh $RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    assert prepared["max_workers"] == 1 and prepared["head_node_type"] in prepared["available_node_types"]
    bad = copy.deepcopy(cfg)
    bad["setup_command"] = cfg["setup_commands"]  # a misspelt key is refused by the schema
    with pytest.raises(Exception, match="setup_command"):
        validate_config(prepare_config(bad))


# ------------------------------------------------------------------------------------------ the scripts
def test_scripts_parse_and_refuse_bad_use(tmp_path):
    for name in ("env.sh", "token.sh", "head.sh", "worker.sh"):
        assert subprocess.run(["bash", "-n", str(RECIPE / name)]).returncode == 0, name
    r = subprocess.run([str(RECIPE / "worker.sh")], capture_output=True, text=True, env=clean_env())
    assert r.returncode == 2 and "usage: worker.sh HEAD_IP:PORT" in r.stderr
    r = subprocess.run([str(RECIPE / "worker.sh"), "10.0.0.1:6379"], capture_output=True, text=True,
                       env=clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(tmp_path / "none")))
    assert r.returncode == 2 and "no token at" in r.stderr


def test_head_script_writes_one_token_and_the_ray_start_line(tmp_path):
    """Dry run (BSEMU_RAY=echo prints the `ray start` command instead of running it): the token is
    written once (64 hex digits, owner-only), kept on a second run, and the ports come from env.sh."""
    token = tmp_path / "t" / "token"
    env = clean_env(RAY_AUTH_TOKEN_PATH=str(token), BSEMU_RAY="echo", BSEMU_RAY_PORT="16379")
    env.pop("RAY_AUTH_MODE", None)  # the recipe's default: token
    r = subprocess.run([str(RECIPE / "head.sh"), "--block"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    first = token.read_text()
    assert len(first) == 64 and int(first, 16) >= 0
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    cmd = r.stdout.split()
    assert cmd[:2] == ["start", "--head"] and "--port=16379" in cmd and "--block" in cmd
    assert "--include-dashboard=false" in cmd and "--node-manager-port=6380" in cmd
    r = subprocess.run([str(RECIPE / "head.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and token.read_text() == first
    r = subprocess.run([str(RECIPE / "worker.sh"), "10.0.0.1:16379"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.split()[:2] == ["start", "--address=10.0.0.1:16379"]


# ------------------------------------------------------------------------------------------ cluster-check
def test_cluster_check_wrong_address_fails_fast_in_one_line(tmp_path):
    """A closed port: exit 2 and one line naming the address, from bsemu's own address check (ray.init alone
    would retry for over a minute; how fast it fails: benchmarks/failfast.py), and nothing written."""
    out = tmp_path / "check.json"
    address = f"127.0.0.1:{closed_port()}"
    r = bsemu("cluster-check", "--address", address, "--json", str(out), env=clean_env())
    assert_one_line_exit_2(r, f"Ray address {address}: connection refused")
    assert not out.exists()


@pytest.mark.parametrize("args,says", [(["--address", "ray://head:10001"], "Ray Client) is not supported"),
                                       (["--address", "head"], "expected HOST:PORT"),
                                       ([], "no cluster to check: give --address"),
                                       (["--address", "127.0.0.1:6379", "--rounds", "-1"], "--rounds -1"),
                                       (["--address", "127.0.0.1:6379", "--timeout", "0"], "--timeout 0")])
def test_cluster_check_bad_input(args, says):
    assert_one_line_exit_2(bsemu("cluster-check", *args, env=clean_env()), says)


@pytest.mark.ray
def test_cluster_check_cli_on_two_nodes(tmp_path):
    """The table on stdout (a row per node, a ZeroMQ column per node) and the same as JSON, exit 0."""
    out = tmp_path / "check.json"
    with two_node_cluster() as cluster:
        r = bsemu("cluster-check", "--address", cluster.address, "--json", str(out), env=clean_env())
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["ok"] and data["problems"] == [] and data["one_host"]
    ids = [n["node_id"] for n in data["nodes"]]
    assert len(ids) == 2 and all(n["alive"] for n in data["nodes"])
    assert {(p["src"], p["dst"]) for p in data["pairs"] if p["ok"]} == {(ids[0], ids[1]), (ids[1], ids[0])}
    for n in data["nodes"]:
        assert abs(n["offset_ns"]) <= n["offset_rtt_ns"] // 2 + 1
    lines = r.stdout.splitlines()
    assert lines[1].split()[:3] == ["node", "ip", "alive"] and f"zmq -> {ids[1][:8]}" in lines[1]
    assert [ln.split()[0] for ln in lines[2:4]] == [i[:8] for i in ids]
    assert not any("FAILED" in ln for ln in lines[2:4])


# ------------------------------------------------------------------------------------------ the recipe itself
def _ports(n: int) -> list[int]:
    """n distinct TCP ports free right now (bound on 0, released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_env(temp: Path, token: Path, ports: list[int], worker_base: int) -> dict:
    names = ("BSEMU_NODE_MANAGER_PORT", "BSEMU_OBJECT_MANAGER_PORT", "BSEMU_RUNTIME_ENV_PORT",
             "BSEMU_AGENT_GRPC_PORT", "BSEMU_AGENT_HTTP_PORT", "BSEMU_METRICS_PORT", "BSEMU_DASHBOARD_PORT")
    env = clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), BSEMU_RAY=str(RAY_BIN),
                    BSEMU_TEMP_DIR=str(temp), BSEMU_MIN_WORKER_PORT=str(worker_base),
                    BSEMU_MAX_WORKER_PORT=str(worker_base + 99), **dict(zip(names, map(str, ports), strict=True)))
    return env


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`ray start --block` in its own session: stopping it stops this node's Ray processes, and only them."""
    with log.open("w") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_started(proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while "Ray runtime started" not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to `ray start --block` alone: it drains its node and stops that node's Ray processes (a few
    seconds; signalling the whole group would stop the GCS under it and make it wait ~30 s). Whatever of its
    session is still there after a minute gets SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session only (start_new_session=True)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _left_behind(temp: Path) -> list[str]:
    """Processes whose command line still names ``temp`` (Ray's processes of our nodes)."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(temp) in cmd:
                found.append(f"{p.name}: {cmd[:120]}")
    return found


@pytest.mark.slow
@pytest.mark.ray
def test_recipe_forms_a_two_node_cluster_that_checks_out():
    """deploy/cluster/head.sh and worker.sh as the README says (token authentication, a fresh token file
    via RAY_AUTH_TOKEN_PATH), each node with its own temp dir and ports on this machine; cluster-check
    against it passes, a driver without the token is refused in one line; nothing is left running."""
    temp = Path(tempfile.mkdtemp(prefix="bsc", dir="/tmp"))  # short: Ray's socket paths live under it
    token = temp / "token"
    gcs, *ports = _ports(15)
    base = random.Random().randrange(20000, 29000, 100)
    head_env = _node_env(temp / "h", token, ports[:7], base)
    head_env["BSEMU_RAY_PORT"] = str(gcs)
    worker_env = _node_env(temp / "w", token, ports[7:14], base + 100)
    procs = []
    try:
        procs.append(_start([str(RECIPE / "head.sh"), "--block", "--num-cpus=1"], head_env, temp / "head.log"))
        _wait_started(procs[0], temp / "head.log")
        address = f"127.0.0.1:{gcs}"
        procs.append(_start([str(RECIPE / "worker.sh"), address, "--block", "--num-cpus=1"], worker_env,
                            temp / "worker.log"))
        _wait_started(procs[1], temp / "worker.log")
        driver = clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
        for _ in range(20):  # the worker registers with the GCS shortly after it started
            r = bsemu("cluster-check", "--address", address, env=driver)
            if r.returncode != 0 or "2 alive node(s)" in r.stdout:
                break
            time.sleep(1)
        assert r.returncode == 0, r.stderr
        rows = r.stdout.splitlines()[2:4]
        assert "2 alive node(s) of 2" in r.stdout and len(rows) == 2 and not any("FAILED" in ln for ln in rows)
        print(r.stdout)  # how long it took: benchmarks/failfast.py
        wrong = temp / "wrong"
        wrong.write_text("0" * 64)
        r = bsemu("cluster-check", "--address", address, env=clean_env(RAY_AUTH_MODE="token",
                                                                       RAY_AUTH_TOKEN_PATH=str(wrong)))
        assert_one_line_exit_2(r, "refused this process's authentication token")
    finally:
        for proc in reversed(procs):
            _stop(proc)
        deadline = time.monotonic() + 30
        while (left := _left_behind(temp)) and time.monotonic() < deadline:
            time.sleep(1)
        shutil.rmtree(temp, ignore_errors=True)
    assert left == []
