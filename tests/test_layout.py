"""The package layout's import rules (DESIGN §1), read from the source with ast (nothing imported):

1. no import cycle between the project's modules;
2. dependencies point one way: deploy -> coordinator -> bs_agent -> radio, and coordinator, bs_agent ->
   protocol; only deploy imports deploy;
3. zmq is imported only under protocol/;
4. radio/ imports neither ray, zmq, torch.distributed nor protocol;
5. a BS (or link) process runs bs_agent code only: bs_agent imports bs_agent, protocol and radio;
6. no production module is over 600 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests import ROOT

PACKAGES = ("radio", "protocol", "bs_agent", "coordinator", "deploy")
ALLOWED = {                          # the project packages each package may import (besides itself)
    "radio": set(),
    "protocol": set(),
    "bs_agent": {"protocol", "radio"},
    "coordinator": {"bs_agent", "protocol", "radio"},
    "deploy": {"coordinator", "bs_agent", "protocol", "radio"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def _imports(mod: str, path: Path, mods: dict[str, Path]) -> list[str]:
    """Absolute names of everything ``mod`` imports (relative imports resolved)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = mod.split(".")
                keep = len(parts) - node.level + (1 if path.name == "__init__.py" else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
            out += subs or [base]
    return out


def _project_edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for name in _imports(m, path, mods):
            parts = name.split(".")
            for k in range(len(parts), 0, -1):
                cand = ".".join(parts[:k])
                if cand in mods and cand != m and not m.startswith(cand + "."):   # a package's own __init__
                    edges[m].add(cand)
                    break
    return edges


def test_dependencies_point_one_way_and_transports_stay_in_protocol():
    mods = _modules()
    bad = []
    for m, path in mods.items():
        top = m.split(".")[0]
        for name in _imports(m, path, mods):
            head = name.split(".")[0]
            if head in PACKAGES and head != top and head not in ALLOWED[top]:
                bad.append(f"{m} imports {name}")
            if head == "zmq" and top != "protocol":
                bad.append(f"{m} imports zmq outside protocol/")
            if top == "radio" and (head in ("ray", "zmq") or name.startswith("torch.distributed")):
                bad.append(f"radio module {m} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    mods = _modules()
    edges = _project_edges(mods)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_production_module_over_600_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for p in _modules().values()
            if (n := p.read_text().count("\n")) > 600]
    assert not long, long


def test_the_rules_catch_what_they_forbid(tmp_path):
    """The checker itself: a cycle and a forbidden import in a made-up tree are found."""
    mods = {"bs_agent.a": tmp_path / "a.py", "bs_agent.b": tmp_path / "b.py", "radio.c": tmp_path / "c.py"}
    mods["bs_agent.a"].write_text("from bs_agent.b import x\n")
    mods["bs_agent.b"].write_text("import bs_agent.a\nfrom coordinator.trpo import y\n")
    mods["radio.c"].write_text("import zmq\n")
    edges = _project_edges(mods)
    assert edges["bs_agent.a"] == {"bs_agent.b"} and edges["bs_agent.b"] == {"bs_agent.a"}
    assert "coordinator.trpo" in _imports("bs_agent.b", mods["bs_agent.b"], mods)
    assert _imports("radio.c", mods["radio.c"], mods) == ["zmq"]
