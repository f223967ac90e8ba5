"""The module loads in every Slicer that may open it and fails with one message where it cannot
run; the Lib and the engine stay within the Python the supported Slicers ship.

No Python 3.9 interpreter can be installed on this machine (Debian 12 packages 3.11 only; no
uv), so these are static checks with ``ast``: ``ast.parse(feature_version=...)`` for syntax,
plus a walk for what parses under an old grammar but fails when the code runs there: PEP 604
``X | Y`` evaluated at definition time (annotations without ``from __future__ import
annotations``, ``isinstance`` tuples), and calls whose keywords are newer than the target.
The version gate itself is exercised with a fake ``sys.version_info``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_PY = REPO / "NimosefSlicer" / "NimosefSlicer.py"
LIB = REPO / "NimosefSlicer" / "NimosefSlicerLib"
ENGINE = REPO / "nimosef_engine"
OLDEST_SLICER_PYTHON = (3, 9)  # Slicer <= 5.8: the module file must load there
SUPPORTED_PYTHON = (3, 10)  # the engine's requires-python; Slicer >= 5.10 ships 3.12

# keyword arguments added after 3.9 (what the code base could plausibly use)
NEW_KEYWORDS_310 = {("zip", "strict"), ("dataclass", "slots"), ("dataclass", "kw_only"),
                    ("dataclass", "match_args")}


def _has_future_annotations(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
               and any(a.name == "annotations" for a in n.names) for n in tree.body)


def _annotations(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for a in args.posonlyargs + args.args + args.kwonlyargs + \
                    [x for x in (args.vararg, args.kwarg) if x]:
                if a.annotation is not None:
                    yield a.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _pep604_unions(expr: ast.AST) -> list[ast.BinOp]:
    return [n for n in ast.walk(expr) if isinstance(n, ast.BinOp)
            and isinstance(n.op, ast.BitOr)]


def problems_for(path: Path, version: tuple[int, int]) -> list[str]:
    """What would fail when ``path`` is imported by Python ``version``."""
    source = path.read_text(encoding="utf-8")
    out = []
    try:
        tree = ast.parse(source, filename=str(path), feature_version=version)
    except SyntaxError as exc:
        return [f"{path.name}:{exc.lineno}: syntax newer than Python {version}: {exc.msg}"]
    if version < (3, 10):
        if not _has_future_annotations(tree):
            for ann in _annotations(tree):
                for union in _pep604_unions(ann):
                    out.append(f"{path.name}:{union.lineno}: 'X | Y' annotation is evaluated "
                               f"at definition time on Python {version}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in ("isinstance", "issubclass") and len(node.args) == 2 and \
                    _pep604_unions(node.args[1]):
                out.append(f"{path.name}:{node.lineno}: isinstance with 'X | Y'")
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else \
                    getattr(node.func, "attr", "")
                for kw in node.keywords:
                    if (name, kw.arg) in NEW_KEYWORDS_310:
                        out.append(f"{path.name}:{node.lineno}: {name}({kw.arg}=) is 3.10+")
    return out


def test_the_checker_catches_what_it_claims(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x: str | None) -> int | None:\n    return zip([1], [2], strict=True)\n"
                   "match = 1\nisinstance(1, int | str)\n", encoding="utf-8")
    found = problems_for(bad, (3, 9))
    assert len(found) == 4, found  # two annotations, zip(strict=), isinstance
    syntax = tmp_path / "syntax.py"
    syntax.write_text("match 1:\n    case 1:\n        pass\n", encoding="utf-8")
    assert "syntax newer" in problems_for(syntax, (3, 9))[0]
    good = tmp_path / "good.py"
    good.write_text("from __future__ import annotations\ndef f(x: str | None) -> None: ...\n",
                    encoding="utf-8")
    assert problems_for(good, (3, 9)) == []


def test_module_file_loads_under_the_oldest_slicer_python():
    assert problems_for(MODULE_PY, OLDEST_SLICER_PYTHON) == []


@pytest.mark.parametrize("path", sorted(LIB.glob("*.py")) + sorted(ENGINE.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_lib_and_engine_compile_for_the_supported_python(path):
    assert problems_for(path, SUPPORTED_PYTHON) == []


def _gate_function():
    """``unsupportedMessage`` and the constants it reads, from the module's source (the
    module itself imports qt and the app, which do not exist here)."""
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    wanted = {"MIN_SLICER", "MIN_PYTHON", "unsupportedMessage"}
    body = [n for n in tree.body
            if (isinstance(n, ast.FunctionDef) and n.name in wanted)
            or (isinstance(n, ast.Assign) and {getattr(t, "id", "") for t in n.targets} & wanted)]
    namespace: dict = {}
    code = "import sys\nfrom typing import Optional\n" + "\n".join(ast.unparse(n) for n in body)
    exec(compile(code, str(MODULE_PY), "exec"), namespace)  # noqa: S102 - our own source
    return namespace


def test_old_python_gets_one_clear_message_and_supported_python_none():
    gate = _gate_function()
    message = gate["unsupportedMessage"]((3, 9, 10))
    assert message is not None and "\n" not in message
    assert f"Slicer {gate['MIN_SLICER']} or later" in message and "3.9.10" in message
    assert gate["unsupportedMessage"]((3, 10, 0)) is None
    assert gate["unsupportedMessage"]((3, 12, 4)) is None
    assert gate["unsupportedMessage"]() is None  # this interpreter (3.11)


def test_module_checks_the_version_before_it_needs_the_lib():
    """Module and Widget return after the message on old Python, before anything imports the
    Lib (which needs 3.10); the Lib is imported only inside functions."""
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
            assert not any(n.startswith(("NimosefSlicerLib", "nimosef_engine")) for n in names)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for cls, method in (("NimosefSlicer", "__init__"), ("NimosefSlicerWidget", "setup")):
        fn = next(f for f in classes[cls].body if isinstance(f, ast.FunctionDef)
                  and f.name == method)
        source = ast.unparse(fn)
        gate = source.index("unsupportedMessage()")
        assert "return" in source[gate:], f"{cls}.{method} does not stop after the message"
        later_lib = [m.start() for m in re.finditer("NimosefSlicerLib|registerSampleData|"
                                                    "loadUI", source)]
        assert all(pos > gate for pos in later_lib), f"{cls}.{method} uses the Lib first"


def test_guide_cmake_and_module_state_the_same_minimum_slicer():
    gate = _gate_function()
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    guide = (REPO / "docs" / "SLICER_USER_GUIDE.md").read_text(encoding="utf-8")
    assert f'NIMOSEF_MINIMUM_SLICER_VERSION "{gate["MIN_SLICER"]}"' in cmake
    assert f"Slicer {gate['MIN_SLICER']} or later" in guide
    assert "5.8 or later" not in guide
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    major, minor = gate["MIN_PYTHON"]
    assert f'requires-python = ">={major}.{minor}"' in pyproject
