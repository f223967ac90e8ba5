"""The engine's packages are layered like its pipeline: a package imports only packages below
it (``docs/DESIGN.md``), and no two modules import each other, directly or in a circle."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import nimosef_engine

ENGINE = Path(nimosef_engine.__file__).resolve().parent
# lower ranks are imported by higher ones, never the other way round
RANK = {"core": 0, "io": 1, "data": 2, "model": 2, "losses": 3, "fitting": 4, "sampling": 4,
        "motion": 5, "evaluation": 6, "refinement": 7, "training": 8, "pipeline": 9,
        "commands": 10, "cli": 11, "__main__": 12, "__init__": -1, "priors": -1}


def engine_imports() -> dict[str, set[str]]:
    """``{module: engine modules it imports}`` (dotted names, lazy imports included)."""
    graph = {}
    for path in sorted(ENGINE.rglob("*.py")):
        rel = path.relative_to(ENGINE).with_suffix("")
        name = ".".join(("nimosef_engine", *rel.parts)).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module \
                    and node.module.startswith("nimosef_engine"):
                for alias in node.names:  # `from nimosef_engine.data import acdc` is a module
                    sub = f"{node.module}.{alias.name}"
                    is_module = (ENGINE.parent / (sub.replace(".", "/") + ".py")).is_file()
                    found.add(sub if is_module else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("nimosef_engine")}
        graph[name] = found - {name}
    return graph


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_rank():
    assert {package(m) for m in engine_imports()} <= set(RANK)


def test_packages_import_only_packages_below_them():
    wrong = [f"{m} imports {t}" for m, targets in engine_imports().items() for t in targets
             if package(t) != package(m) and RANK[package(t)] >= RANK[package(m)]
             and RANK[package(t)] >= 0]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_between_modules():
    graph = engine_imports()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt in graph and nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_a_wrong_import(tmp_path, monkeypatch):
    """The rule bites: a core module importing the pipeline is reported."""
    fake = tmp_path / "nimosef_engine"
    (fake / "core").mkdir(parents=True)
    (fake / "pipeline").mkdir()
    (fake / "core" / "bad.py").write_text("from nimosef_engine.pipeline import job\n")
    (fake / "pipeline" / "job.py").write_text("from nimosef_engine.core import bad\n")
    monkeypatch.setattr(sys.modules[__name__], "ENGINE", fake)
    graph = engine_imports()
    assert graph["nimosef_engine.core.bad"] == {"nimosef_engine.pipeline.job"}
    bad = [m for m, ts in graph.items() for t in ts
           if RANK[package(t)] >= RANK[package(m)] and package(t) != package(m)]
    assert bad == ["nimosef_engine.core.bad"]
