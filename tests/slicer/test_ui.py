"""Every widget the module's Python names exists in the .ui file with the expected class, and
the parameter-node bindings match the parameter node's fields."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2] / "NimosefSlicer"
MODULE_PY = MODULE_DIR / "NimosefSlicer.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "NimosefSlicer.ui"

EXPECTED_CLASSES = {
    "inputSelector": "qMRMLNodeComboBox",
    "loadCineButton": "QPushButton",
    "loadDicomFolderButton": "QPushButton",
    "logTextEdit": "QPlainTextEdit",
    "priorPathLineEdit": "ctkPathLineEdit",
    "deviceComboBox": "QComboBox",
    "qualityComboBox": "QComboBox",
    "resolutionSlider": "ctkSliderWidget",
    "applyButton": "QPushButton",
    "progressBar": "QProgressBar",
    "statusLabel": "QLabel",
    "edvLabel": "QLabel",
    "esvLabel": "QLabel",
    "efLabel": "QLabel",
    "massLabel": "QLabel",
    "qualityLabel": "QLabel",
    "exportCsvButton": "QPushButton",
    "pointsSelector": "qMRMLNodeComboBox",
    "trackPointsButton": "QPushButton",
}


def ui_widgets() -> dict[str, ET.Element]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def names_used_in_python() -> set[str]:
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    used = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "self"):
            used.add(node.attr)
    return used


def parameter_fields() -> dict[str, ast.AST]:
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef)
               and n.name == "NimosefSlicerParameterNode")
    return {s.target.id: s for s in cls.body if isinstance(s, ast.AnnAssign)}


def test_every_widget_named_in_python_is_in_the_ui_with_its_class():
    used = names_used_in_python()
    assert used, "the module names no widget: parsing is broken"
    widgets = ui_widgets()
    unknown = used - set(EXPECTED_CLASSES)
    assert not unknown, f"widgets used in NimosefSlicer.py without an expected class: {unknown}"
    for name in sorted(used):
        assert name in widgets, f"self.ui.{name} is not in {UI_FILE.name}"
        assert widgets[name].get("class") == EXPECTED_CLASSES[name], \
            f"{name} is a {widgets[name].get('class')}, expected {EXPECTED_CLASSES[name]}"


def test_parameter_bindings_match_the_parameter_node():
    fields = parameter_fields()
    bound = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = name
    assert set(bound) <= set(fields), f"bound to unknown parameters: {set(bound) - set(fields)}"
    assert {"inputNode", "resFactorZ", "device", "quality", "refine"} <= set(bound)
    widgets = ui_widgets()
    assert widgets[bound["refine"]].get("class") == "QCheckBox"
    assert ast.unparse(fields["refine"].annotation) == "bool"
    checked = {p.get("name"): p for p in widgets[bound["refine"]].findall("property")}
    assert checked["checked"].find("bool").text == "true"  # on, as the engine's default
    for param, combo in (("device", "deviceComboBox"), ("quality", "qualityComboBox")):
        items = [i.find("property/string").text for i in widgets[combo].findall("item")]
        choices = re.findall(r"['\"](\w+)['\"]", ast.unparse(fields[param].annotation))
        assert items == choices, f"{combo} items {items} != Choice {choices}"
    slider = {p.get("name"): p for p in widgets["resolutionSlider"].findall("property")}
    assert float(slider["minimum"].find("double").text) == 1.0
    assert float(slider["maximum"].find("double").text) == 4.0
    assert "WithinRange(1, 4)" in ast.unparse(fields["resFactorZ"].annotation)


def test_lib_never_imports_qt():
    for path in (MODULE_DIR / "NimosefSlicerLib").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for n in names:
                assert n.split(".")[0] not in ("qt", "ctk", "PythonQt"), f"{path.name}: {n}"


def test_engine_never_imports_slicer():
    engine = MODULE_DIR.parent / "nimosef_engine"
    for path in engine.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for n in names:
                assert n.split(".")[0] not in ("slicer", "qt", "vtkmodules.qt"), \
                    f"{path}: imports {n}"


def test_cmake_lists_every_lib_file_and_resource():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    for path in sorted((MODULE_DIR / "NimosefSlicerLib").glob("*.py")):
        assert f"${{MODULE_NAME}}Lib/{path.name}" in cmake, f"{path.name} not in CMakeLists"
    for path in sorted((MODULE_DIR / "Resources").rglob("*")):
        if path.is_file():
            rel = path.relative_to(MODULE_DIR).as_posix().replace("NimosefSlicer", "${MODULE_NAME}")
            assert rel in cmake, f"{rel} not in CMakeLists RESOURCES"
