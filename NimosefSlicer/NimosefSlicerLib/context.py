"""The scene and the module logics the Lib needs, from the Slicer app or built headless.

In the Slicer application, :meth:`SceneContext.from_slicer_app` takes ``slicer.mrmlScene`` and
the module logics. Without the app (pytest with the ``slicer-core`` wheel),
:func:`create_headless_context` builds a real MRML scene with the same logics registered, so
the same scene code runs in both places.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import slicer

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "Resources"
TERMINOLOGY_FILE = RESOURCES_DIR / "Terminologies" / "NimosefCardiac.term.json"


@dataclass
class SceneContext:
    """A scene plus the logics that scene code calls.

    ``sequences_logic`` updates proxy nodes of browsers; ``terminologies_logic`` (optional)
    knows the shipped cardiac terminology. ``keep_alive`` holds objects that must live as
    long as the scene (headless logics, cache folders).
    """

    scene: Any
    sequences_logic: Any
    terminologies_logic: Any | None = None
    app_logic: Any | None = None
    keep_alive: list = field(default_factory=list)

    @classmethod
    def from_slicer_app(cls) -> SceneContext:
        """The running application's scene and module logics."""
        terminologies = slicer.modules.terminologies.logic()
        load_terminology(terminologies)
        return cls(slicer.mrmlScene, slicer.modules.sequences.logic(), terminologies,
                   slicer.app.applicationLogic())


def load_terminology(terminologies_logic) -> str:
    """Load the shipped ``.term.json`` (LV / MYO / RV) once; returns its context name."""
    import json

    name = json.loads(TERMINOLOGY_FILE.read_text(encoding="utf-8"))[
        "SegmentationCategoryTypeContextName"]
    if name not in _loaded_terminology_names(terminologies_logic):
        loaded = terminologies_logic.LoadTerminologyFromFile(str(TERMINOLOGY_FILE))
        if not loaded:
            raise RuntimeError(f"cannot load terminology {TERMINOLOGY_FILE}")
    return name


def _loaded_terminology_names(terminologies_logic) -> list[str]:
    import vtk

    names = vtk.vtkStringArray()
    terminologies_logic.GetLoadedTerminologyNames(names)
    return [names.GetValue(i) for i in range(names.GetNumberOfValues())]


def create_headless_context(with_io: bool = True) -> SceneContext:
    """A real MRML scene with the Volumes, Sequences, Segmentations, Models, Tables, Plots,
    Markups, Colors and Terminologies logics registered, as the Slicer app sets it up.

    ``with_io`` adds the cache and data-IO managers that ``.mrb`` reading needs.
    Also sets ``slicer.mrmlScene`` so that ``slicer.util`` helpers work.
    """
    scene = slicer.vtkMRMLScene()
    crosshair = slicer.vtkMRMLCrosshairNode()
    crosshair.SetCrosshairName("default")
    scene.AddNode(crosshair)

    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    color_logic = app_logic.GetColorLogic()
    color_logic.SetMRMLScene(scene)
    color_logic.AddDefaultColorNodes()
    import vtk

    app_logic.SetSliceLogics(vtk.vtkCollection())
    app_logic.SetViewLogics(vtk.vtkCollection())
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)

    keep: list = [app_logic]
    logics = {}
    for name, cls in (("Colors", slicer.vtkSlicerColorLogic),
                      ("Volumes", slicer.vtkSlicerVolumesLogic),
                      ("Sequences", slicer.vtkSlicerSequencesLogic),
                      ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                      ("Models", slicer.vtkSlicerModelsLogic),
                      ("Tables", slicer.vtkSlicerTablesLogic),
                      ("Plots", slicer.vtkSlicerPlotsLogic),
                      ("Markups", slicer.vtkSlicerMarkupsLogic),
                      ("Terminologies", slicer.vtkSlicerTerminologiesModuleLogic),
                      ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(app_logic)
        if name == "Terminologies":
            logic.SetModuleShareDirectory(str(TERMINOLOGY_FILE.parent))
        # Slicer's default colour and terminology files are not in the wheel: silence the
        # "cannot load defaults" errors; our terminology is loaded below.
        vtk.vtkObject.GlobalWarningDisplayOff()
        logic.SetMRMLScene(scene)
        vtk.vtkObject.GlobalWarningDisplayOn()
        app_logic.SetModuleLogic(name, logic)
        logics[name] = logic
        keep.append(logic)

    if with_io:
        cache = tempfile.TemporaryDirectory(prefix="nimosef_mrml_cache_")
        remote_io = slicer.vtkMRMLRemoteIOLogic()
        remote_io.SetMRMLScene(scene)
        remote_io.SetMRMLApplicationLogic(app_logic)
        remote_io.GetCacheManager().SetRemoteCacheDirectory(cache.name)
        io_manager = slicer.vtkDataIOManagerLogic()
        io_manager.SetMRMLScene(scene)
        io_manager.SetMRMLApplicationLogic(app_logic)
        io_manager.SetAndObserveDataIOManager(remote_io.GetDataIOManager())
        remote_io.AddDataIOToScene()
        keep += [cache, remote_io, io_manager]

    slicer.mrmlScene = scene
    load_terminology(logics["Terminologies"])
    return SceneContext(scene, logics["Sequences"], logics["Terminologies"], app_logic, keep)
