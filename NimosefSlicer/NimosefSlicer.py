"""NIMOSEF: segmentation and motion tracking of cardiac cine MRI in 3D Slicer.

The widget is thin: every scene change is done by ``NimosefSlicerLib`` (Qt-free, tested with
pytest against a real MRML scene), and the engine runs in a background PythonSlicer process.
"""

import importlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Annotated, Union

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = Path(__file__).resolve().parent
REQUIREMENTS = MODULE_DIR / "Resources" / "requirements.txt"
SAMPLE_CINE_ENV = "NIMOSEF_SAMPLE_CINE"
HOMEPAGE = "https://github.com/nimosef/NimosefSlicer"


class NimosefSlicer(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("NIMOSEF")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = ["Sequences", "Segmentations", "Terminologies"]
        self.parent.contributors = ["NimosefSlicer contributors"]
        self.parent.helpText = _(
            "Segment the left ventricle blood pool, myocardium and right ventricle of a "
            "short-axis cine MRI in every frame, track their motion, and compute volume "
            "curves, EDV, ESV, EF and myocardial mass with NIMOSEF (neural implicit motion "
            "and segmentation functions). <b>Research software, not a medical device: do "
            "not use it for diagnosis or treatment decisions.</b> "
            f'See the <a href="{HOMEPAGE}/blob/main/docs/SLICER_USER_GUIDE.md">user guide</a>.')
        self.parent.acknowledgementText = _(
            "NIMOSEF: J. Banus et al., Neural Implicit Motion and Segmentation Functions, "
            "MICCAI 2025. NISF: N. Stolt-Ans&oacute; et al., NISF: Neural Implicit "
            "Segmentation Functions, MICCAI 2023. Sample and training data: ACDC, O. Bernard "
            "et al., Deep Learning Techniques for Automatic MRI Cardiac Multi-Structures "
            "Segmentation and Diagnosis: Is the Problem Solved?, IEEE TMI 37(11), 2018.")


@parameterNodeWrapper
class NimosefSlicerParameterNode:
    """GUI state: the input cine (sequence or a volume it plays) and the run options."""

    # no "from __future__ import annotations" here: the wrapper reads these at class creation
    inputNode: Union[slicer.vtkMRMLSequenceNode, slicer.vtkMRMLScalarVolumeNode]  # noqa: UP007
    resFactorZ: Annotated[float, WithinRange(1, 4)] = 2
    device: Annotated[str, Choice(["auto", "cuda", "cpu"])] = "auto"
    quality: Annotated[str, Choice(["fast", "standard", "thorough"])] = "standard"
    refine: bool = True


class NimosefSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI: forwards to the logic, polls background jobs with a timer."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.job = None
        self.results = None
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(200)
        self.resampleTimer = qt.QTimer()
        self.resampleTimer.setSingleShot(True)
        self.resampleTimer.setInterval(600)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/NimosefSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = NimosefSlicerLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.loadCineButton.connect("clicked(bool)", self.onLoadCineButton)
        self.ui.exportCsvButton.connect("clicked(bool)", self.onExportCsvButton)
        self.ui.resolutionSlider.connect("valueChanged(double)", self.onResolutionChanged)
        self.pollTimer.connect("timeout()", self.onPollJob)
        self.resampleTimer.connect("timeout()", self.onResampleRequested)
        self.initializeParameterNode()
        self.updateResults(None)

    def cleanup(self) -> None:
        self.pollTimer.stop()
        self.resampleTimer.stop()
        if self.job is not None:
            self.job.cancel()
            self.job = None
        self.removeObservers()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self.updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None
            self.pollTimer.stop()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        self.updateResults(None)
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputNode:
            volume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSequenceNode")
            if volume:
                self._parameterNode.inputNode = volume

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self.updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                             self.updateButtons)
            self.updateButtons()

    def updateButtons(self, caller=None, event=None) -> None:
        running = self.job is not None
        hasInput = bool(self._parameterNode and self._parameterNode.inputNode)
        self.ui.applyButton.enabled = running or hasInput
        self.ui.applyButton.text = _("Cancel") if running else _("Segment && Track")
        self.ui.exportCsvButton.enabled = self.results is not None and not running
        self.ui.loadCineButton.enabled = not running

    # -------------------------------------------------------------------- actions
    def onLoadCineButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the cine."), waitCursor=True):
            path = qt.QFileDialog.getOpenFileName(
                slicer.util.mainWindow(), _("Load cine (4D NIfTI or NRRD)"), "",
                _("Cine (*.nii *.nii.gz *.nrrd *.seq.nrrd);;All files (*)"))
            if not path:
                path = qt.QFileDialog.getExistingDirectory(
                    slicer.util.mainWindow(), _("...or choose a DICOM cine folder"))
            if not path:
                return
            cine = self.logic.loadCine(path)
            self._parameterNode.inputNode = cine.sequence
            slicer.util.setSliceViewerLayers(background=cine.proxy, fit=True)

    def onApplyButton(self) -> None:
        if self.job is not None:
            with slicer.util.tryWithErrorDisplay(_("Failed to cancel."), waitCursor=True):
                self.job.cancel()
            self.finishJob(_("Cancelled; the scene was left as it was."))
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start NIMOSEF."), waitCursor=True):
            if not self.logic.ensureDependencies(askUser=True):
                return
            p = self._parameterNode
            self.job = self.logic.startSegmentTrack(p.inputNode, int(round(p.resFactorZ)),
                                                    p.device, p.quality,
                                                    self.ui.priorPathLineEdit.currentPath,
                                                    refine=p.refine)
            self.startPolling(_("Segment & Track started"))

    def onResolutionChanged(self, value: float) -> None:
        if self.results is not None and self.job is None:
            self.resampleTimer.start()  # re-sample once the slider stops moving

    def onResampleRequested(self) -> None:
        if self.results is None or self.job is not None:
            return
        factor = int(round(self.ui.resolutionSlider.value))
        if factor == self.results.res_factor_z:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to re-sample."), waitCursor=True):
            self.job = self.logic.startResample(self.results, factor)
            self.startPolling(_("Re-sampling at z factor {factor}").format(factor=factor))

    def onExportCsvButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to export the volume curves."),
                                             waitCursor=True):
            path = qt.QFileDialog.getSaveFileName(
                slicer.util.mainWindow(), _("Export volume curves"), "volume_curves.csv",
                _("CSV (*.csv)"))
            if path:
                written = self.logic.exportCurvesCsv(self.results, path)
                self.ui.statusLabel.text = _("Volume curves written to {path}").format(
                    path=written)

    # -------------------------------------------------------------------- background jobs
    def startPolling(self, message: str) -> None:
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self.ui.statusLabel.text = message
        self.updateButtons()
        self.pollTimer.start()

    def onPollJob(self) -> None:
        if self.job is None:
            self.pollTimer.stop()
            return
        for event in self.job.poll():
            self.ui.progressBar.value = int(100 * event.fraction)
            self.ui.statusLabel.text = f"{event.stage}: {event.message}".rstrip(": ")
        if not self.job.finished():
            return
        job, self.job = self.job, None
        self.pollTimer.stop()
        status = _("Failed: see the error message.")
        try:
            with slicer.util.tryWithErrorDisplay(_("NIMOSEF failed."), waitCursor=True):
                self.results = job.finish()
                self.updateResults(self.results)
                self.logic.showResults(self.results)
                status = _("Done.")
        finally:
            self.finishJob(status)

    def finishJob(self, message: str) -> None:
        self.job = None
        self.pollTimer.stop()
        self.ui.progressBar.hide()
        self.ui.statusLabel.text = message
        self.updateButtons()

    def updateResults(self, results) -> None:
        s = results.summary if results is not None else {}

        def fmt(key: str, unit: str) -> str:
            return f"{s[key]:.1f} {unit}" if key in s else "-"

        self.ui.edvLabel.text = fmt("LV_EDV_mL", "mL")
        self.ui.esvLabel.text = fmt("LV_ESV_mL", "mL")
        self.ui.efLabel.text = fmt("LV_EF_pct", "%")
        self.ui.massLabel.text = fmt("MYO_mass_g", "g")
        self.ui.progressBar.hide()
        self.updateButtons()


class NimosefSlicerLogic(ScriptedLoadableModuleLogic):
    """No GUI: dependency checks, engine jobs and scene updates through NimosefSlicerLib."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return NimosefSlicerParameterNode(super().getParameterNode())

    @staticmethod
    def context():
        from NimosefSlicerLib.context import SceneContext

        return SceneContext.from_slicer_app()

    @staticmethod
    def pythonExecutable() -> str:
        """PythonSlicer: the engine runs with Slicer's Python and packages."""
        import shutil

        name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
        candidate = Path(slicer.app.slicerHome) / "bin" / name
        return str(candidate) if candidate.exists() else (shutil.which("PythonSlicer") or name)

    @staticmethod
    def engineParent() -> str:
        """The folder holding the embedded ``nimosef_engine`` package (next to this file)."""
        return str(MODULE_DIR)

    # -------------------------------------------------------------------- dependencies
    @staticmethod
    def missingRequirements() -> list[str]:
        """Requirements (from Resources/requirements.txt) that are not importable."""
        import importlib.util

        modules = {"nibabel": "nibabel", "pyarrow": "pyarrow", "pandas": "pandas",
                   "scipy": "scipy", "pyyaml": "yaml", "tqdm": "tqdm", "matplotlib": "matplotlib"}
        missing = []
        for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
            req = line.split("#")[0].strip()
            if not req:
                continue
            name = req.split(">")[0].split("=")[0].split("<")[0].strip().lower()
            if importlib.util.find_spec(modules.get(name, name)) is None:
                missing.append(req)
        return missing

    def ensureDependencies(self, askUser: bool = True) -> bool:
        """Torch through the PyTorch extension, the rest from requirements.txt, on first use.

        Returns False when the user declines; raises ValueError when PyTorch is missing.
        """
        try:
            import PyTorchUtils  # noqa: F401  (from the PyTorch extension)
        except ImportError:
            raise ValueError(_("This module needs the PyTorch extension: install 'PyTorch' "
                               "from the Extensions Manager and restart Slicer.")) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            if askUser and not slicer.util.confirmOkCancelDisplay(
                    _("NIMOSEF needs PyTorch. Install it now (a large download)?")):
                return False
            torchLogic.installTorch(askConfirmation=False)
        missing = self.missingRequirements()
        if missing:
            if askUser and not slicer.util.confirmOkCancelDisplay(
                    _("NIMOSEF needs these Python packages: {packages}. Install them now?")
                    .format(packages=", ".join(missing))):
                return False
            if hasattr(slicer, "packaging") and hasattr(slicer.packaging, "pip_ensure"):
                slicer.packaging.pip_ensure(missing)
            else:
                slicer.util.pip_install(["-r", str(REQUIREMENTS)])
        return True

    # -------------------------------------------------------------------- jobs
    def loadCine(self, path: str):
        from NimosefSlicerLib.cine import load_cine_file

        return load_cine_file(self.context(), path)

    def startSegmentTrack(self, inputNode, resFactorZ: int = 2, device: str = "auto",
                          quality: str = "standard", priorPath: str | None = None,
                          workDir: str | None = None, refine: bool = True):
        """Export the cine and start the engine in the background; returns the job to poll.

        Raises ValueError for a bad input node or options.
        """
        from NimosefSlicerLib.cine import find_cine
        from NimosefSlicerLib.runner import SegmentTrackOptions
        from NimosefSlicerLib.workflow import SegmentTrackJob

        ctx = self.context()
        cine = find_cine(ctx, inputNode)
        options = SegmentTrackOptions(int(resFactorZ), device, quality, priorPath or None,
                                      refine=bool(refine))
        workDir = workDir or tempfile.mkdtemp(prefix="NIMOSEF_",
                                              dir=slicer.app.temporaryPath)
        job = SegmentTrackJob(ctx, cine, options, self.pythonExecutable(), self.engineParent(),
                              workDir)
        return job.start()

    def startResample(self, results, resFactorZ: int):
        """Re-sample at a new z factor, the frame on screen first (shown as soon as it is
        ready), then the whole cine."""
        from NimosefSlicerLib.workflow import ResampleJob

        current = results.cine.browser.GetSelectedItemNumber()
        return ResampleJob(self.context(), results, int(resFactorZ), self.pythonExecutable(),
                           self.engineParent(), preview_frame=max(0, int(current))).start()

    def process(self, inputNode, resFactorZ: int = 2, device: str = "auto",
                quality: str = "standard", priorPath: str | None = None,
                progressCallback=None, logCallback=None, refine: bool = True):
        """Blocking Segment & Track (scripts, self-test). ``progressCallback(event)``."""
        job = self.startSegmentTrack(inputNode, resFactorZ, device, quality, priorPath,
                                     refine=refine)
        job.process.wait(progressCallback)
        if logCallback:
            for line in job.process.log:
                logCallback(line)
        results = job.finish()
        self.showResults(results)
        return results

    def exportCurvesCsv(self, results, path: str) -> str:
        from NimosefSlicerLib.curves import export_table_csv

        if results is None:
            raise ValueError(_("Run Segment & Track first."))
        return str(export_table_csv(results.table, path))

    @staticmethod
    def showResults(results) -> None:
        """Cine in the background, segmentation overlaid, plot in the layout."""
        slicer.util.setSliceViewerLayers(background=results.cine.proxy, fit=True)
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None:
            layoutManager.setLayout(
                slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView)
            slicer.modules.plots.logic().ShowChartInLayout(results.chart)
            layoutManager.threeDWidget(0).threeDView().resetFocalPoint()
        slicer.modules.sequences.setToolBarActiveBrowserNode(results.cine.browser)


def sampleCinePath() -> Path | None:
    """The sample cine: ``$NIMOSEF_SAMPLE_CINE``, or the source tree's test data."""
    from NimosefSlicerLib.scenarios import SAMPLE_CINE

    candidates = [os.environ.get(SAMPLE_CINE_ENV, ""), str(MODULE_DIR.parent / SAMPLE_CINE)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


class NimosefSlicerTest(ScriptedLoadableModuleTest):
    """Runs the whole workflow on the sample cine with the scenario checks pytest uses."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_NimosefSlicer_workflow()

    def test_NimosefSlicer_workflow(self):
        from NimosefSlicerLib import scenarios
        from NimosefSlicerLib.curves import read_volume_curves
        from NimosefSlicerLib.runner import SegmentTrackOptions

        path = sampleCinePath()
        if path is None:
            self.skipTest(f"sample cine not found: set {SAMPLE_CINE_ENV}")
        logic = NimosefSlicerLogic()
        self.assertTrue(logic.ensureDependencies(askUser=False))
        ctx = logic.context()
        work = Path(tempfile.mkdtemp(prefix="NIMOSEF_test_", dir=slicer.app.temporaryPath))
        self.delayDisplay("Loading the sample cine")
        cine = scenarios.load_and_check_cine(ctx, path)
        scenarios.check_export_roundtrip(cine, work / "exported.nii.gz")
        self.delayDisplay("Segment & Track (fast)")
        results, events = scenarios.run_segment_track(
            ctx, cine, SegmentTrackOptions(quality="fast"), logic.pythonExecutable(),
            logic.engineParent(), work / "run")
        scenarios.check_progress(events)
        scenarios.check_results(ctx, results)
        logic.showResults(results)
        self.delayDisplay("z-resolution 3")
        scenarios.check_resample(ctx, results, 3, logic.pythonExecutable(),
                                 logic.engineParent())
        csv = logic.exportCurvesCsv(results, str(work / "curves.csv"))
        written = read_volume_curves(csv)
        self.assertEqual(len(written["LV_mL"]), cine.n_frames)
        self.delayDisplay("Test passed")


def reloadLib() -> None:
    """Developer helper: reload the Lib modules (``importlib``, not ``imp``)."""
    import NimosefSlicerLib

    for name in list(vars(NimosefSlicerLib)):
        module = getattr(NimosefSlicerLib, name)
        if hasattr(module, "__spec__") and getattr(module, "__name__", "").startswith(
                "NimosefSlicerLib."):
            importlib.reload(module)
    logging.info("NimosefSlicerLib reloaded")
