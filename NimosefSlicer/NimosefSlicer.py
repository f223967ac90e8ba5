"""NIMOSEF: segmentation and motion tracking of cardiac cine MRI in 3D Slicer.

The widget is thin: every scene change is done by ``NimosefSlicerLib`` (Qt-free, tested with
pytest against a real MRML scene), and the engine runs in a background PythonSlicer process.

This file must load in every Slicer that may open it, also those older than the ones it
supports (Slicer <= 5.8 ships Python 3.9): there it shows one message instead of a traceback.
So it uses no syntax or annotation newer than Python 3.9 (``Optional``, not ``X | None``:
the parameter node wrapper evaluates annotations; tests/slicer/test_python_compat.py checks),
and imports the Lib, which needs Python 3.10, only after the version check.
"""

import importlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional, Union

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
HOMEPAGE = "https://github.com/nimosef/NimosefSlicer"
MIN_SLICER = "5.10"  # the first Slicer with Python >= 3.10 (it ships 3.12)
MIN_PYTHON = (3, 10)  # the engine's requires-python
GUI_STEP_MS = 0  # results import: one step per event-loop turn


def unsupportedMessage(versionInfo=None) -> Optional[str]:  # noqa: UP045 (Python 3.9)
    """The one message shown where this Slicer's Python is too old for NIMOSEF, else None."""
    v = tuple(versionInfo if versionInfo is not None else sys.version_info)[:3]
    if v[:2] >= MIN_PYTHON:
        return None
    return (f"NIMOSEF needs 3D Slicer {MIN_SLICER} or later (Python "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later); this Slicer runs Python "
            f"{'.'.join(str(x) for x in v)}. Install a current Slicer from "
            "https://download.slicer.org and NimosefSlicer from its Extensions Manager.")


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
            "Segmentation and Diagnosis: Is the Problem Solved?, IEEE TMI 37(11), 2018. "
            "ACDC data and the weights trained on them: research, non-commercial use only.")
        message = unsupportedMessage()
        if message:
            self.parent.helpText = f"<b>{message}</b>"
            return
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """The demo cine (ACDC patient090, shipped in the extension) in Sample Data > Cardiac."""
    try:
        import SampleData
    except ImportError:  # no Sample Data module (e.g. a custom application)
        return
    from NimosefSlicerLib.sampledata import sample_source

    SampleData.SampleDataLogic.registerCustomSampleDataSource(**sample_source())


@parameterNodeWrapper
class NimosefSlicerParameterNode:
    """GUI state: the input cine (sequence or a volume it plays) and the run options."""

    # no "from __future__ import annotations" here: the wrapper reads these at class creation
    inputNode: Union[slicer.vtkMRMLSequenceNode, slicer.vtkMRMLScalarVolumeNode]  # noqa: UP007
    resFactorZ: Annotated[float, WithinRange(1, 4)] = 2
    device: Annotated[str, Choice(["auto", "cuda", "cpu"])] = "auto"
    quality: Annotated[str, Choice(["fast", "standard", "thorough"])] = "standard"
    refine: bool = True
    keepOutputs: bool = False


class NimosefSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI: forwards to the logic, polls background jobs with a timer. Nothing here holds
    the GUI for long: jobs run in another process, cancel returns at once, and the results
    come into the scene one short step per timer tick (NimosefSlicerLib.workflow)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.job = None
        self.results = None
        self.longestGuiStepS = 0.0  # longest single import step of the last run (s)
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(200)
        self.importTimer = qt.QTimer()
        self.importTimer.setInterval(GUI_STEP_MS)
        self.resampleTimer = qt.QTimer()
        self.resampleTimer.setSingleShot(True)
        self.resampleTimer.setInterval(600)
        self.inputFilterTimer = qt.QTimer()
        self.inputFilterTimer.setSingleShot(True)
        self.inputFilterTimer.setInterval(100)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        message = unsupportedMessage()
        if message:  # an older Slicer: one clear message, nothing else
            label = qt.QLabel(message)
            label.wordWrap = True
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/NimosefSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = NimosefSlicerLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodesChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeRemovedEvent, self.onNodesChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.loadCineButton.connect("clicked(bool)", self.onLoadCineButton)
        self.ui.loadDicomFolderButton.connect("clicked(bool)", self.onLoadDicomFolderButton)
        self.ui.exportCsvButton.connect("clicked(bool)", self.onExportCsvButton)
        self.ui.trackPointsButton.connect("clicked(bool)", self.onTrackPointsButton)
        self.ui.pointsSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.ui.resolutionSlider.connect("valueChanged(double)", self.onResolutionChanged)
        self.pollTimer.connect("timeout()", self.onPollJob)
        self.importTimer.connect("timeout()", self.onImportStep)
        self.resampleTimer.connect("timeout()", self.onResampleRequested)
        self.inputFilterTimer.connect("timeout()", self.updateInputFilter)
        self.initializeParameterNode()
        self.updateResults(None)
        self.updateInputFilter()

    def cleanup(self) -> None:
        for timer in (self.pollTimer, self.importTimer, self.resampleTimer,
                      self.inputFilterTimer):
            timer.stop()
        if self.job is not None:
            self.job.cancel()
            self.job = None
        self.removeObservers()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)

    def enter(self) -> None:
        if self.logic is not None:
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
            self.importTimer.stop()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        self.results = None
        self.updateResults(None)
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onNodesChanged(self, caller, event) -> None:
        self.inputFilterTimer.start()  # once per burst of node changes

    def updateInputFilter(self) -> None:
        """Offer only usable cines: hide NIMOSEF results, label maps, single volumes."""
        from NimosefSlicerLib.cine import input_candidates

        _, hidden = input_candidates(self.logic.context())
        self.ui.inputSelector.sortFilterProxyModel().hiddenNodeIDs = hidden

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputNode:
            from NimosefSlicerLib.cine import input_candidates

            good, _ = input_candidates(self.logic.context())
            if good:
                self._parameterNode.inputNode = slicer.mrmlScene.GetNodeByID(good[0])

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
        self.ui.trackPointsButton.enabled = (
            not running and self.results is not None and "motion" in self.results.sequences
            and self.ui.pointsSelector.currentNode() is not None)
        self.ui.loadCineButton.enabled = not running
        self.ui.loadDicomFolderButton.enabled = not running

    def appendLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    # -------------------------------------------------------------------- actions
    def onLoadCineButton(self) -> None:
        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(), _("Load cine (4D NIfTI or NRRD)"), "",
            _("Cine (*.nii *.nii.gz *.nrrd *.seq.nrrd);;All files (*)"))
        if path:  # cancelled: nothing else opens
            self.loadCine(path)

    def onLoadDicomFolderButton(self) -> None:
        path = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(), _("Choose a DICOM cine folder"))
        if path:
            self.loadCine(path)

    def loadCine(self, path: str) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the cine."), waitCursor=True):
            if not self.logic.ensureDependencies(askUser=True, log=self.appendLog):
                return
            cine = self.logic.loadCine(path)
            self._parameterNode.inputNode = cine.sequence
            slicer.util.setSliceViewerLayers(background=cine.proxy, fit=True)
            self.appendLog(_("Loaded {path}").format(path=path))

    def onApplyButton(self) -> None:
        if self.job is not None:
            with slicer.util.tryWithErrorDisplay(_("Failed to cancel."), waitCursor=True):
                start = time.perf_counter()
                self.job.cancel()  # returns at once; the folder goes once the engine stops
                self.appendLog(_("Cancelled ({ms:.0f} ms); the engine is stopping and its work "
                                 "folder will be removed.").format(
                                     ms=1000 * (time.perf_counter() - start)))
            self.finishJob(_("Cancelled; the scene was left as it was."))
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start NIMOSEF."), waitCursor=True):
            if not self.logic.ensureDependencies(askUser=True, log=self.appendLog):
                return
            p = self._parameterNode
            self.job = self.logic.startSegmentTrack(p.inputNode, int(round(p.resFactorZ)),
                                                    p.device, p.quality,
                                                    self.ui.priorPathLineEdit.currentPath,
                                                    refine=p.refine,
                                                    keepOutputs=p.keepOutputs)
            self.appendLog(_("Work folder: {path}").format(path=self.job.work_dir))
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

    def onTrackPointsButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to track the points."), waitCursor=True):
            tracked = self.logic.trackPoints(self.results, self.ui.pointsSelector.currentNode())
            self.ui.statusLabel.text = _("Tracked {n} points: '{name}' plays with the cine, "
                                         "'{table}' holds the trajectories.").format(
                n=len(tracked.labels), name=tracked.proxy.GetName(),
                table=tracked.table.GetName())

    # -------------------------------------------------------------------- background jobs
    def startPolling(self, message: str) -> None:
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self.ui.statusLabel.text = message
        self.appendLog(message)
        self.updateButtons()
        self.pollTimer.start()

    def onPollJob(self) -> None:
        if self.job is None:
            self.pollTimer.stop()
            return
        for event in self.job.poll():
            self.ui.progressBar.value = int(100 * event.fraction)
            self.ui.statusLabel.text = f"{event.stage}: {event.message}".rstrip(": ")
        for line in self.job.process.new_log_lines():
            self.appendLog(line)
        if not self.job.finished():
            return
        self.pollTimer.stop()
        if hasattr(self.job, "import_step"):  # Segment & Track: import in steps
            self.ui.statusLabel.text = _("Importing the results...")
            self.longestGuiStepS = 0.0
            self.importTimer.start()
            return
        job, self.job = self.job, None
        self.completeJob(job.finish)

    def onImportStep(self) -> None:
        if self.job is None:
            self.importTimer.stop()
            return
        start = time.perf_counter()
        try:
            done = self.job.import_step()
        except Exception as exc:
            self.importTimer.stop()
            self.job = None
            error = exc

            def fail():
                raise error

            self.completeJob(fail)  # shows the error: one message
            return
        self.longestGuiStepS = max(self.longestGuiStepS, time.perf_counter() - start)
        if done:
            self.importTimer.stop()
            job, self.job = self.job, None
            self.completeJob(lambda: job.results)

    def completeJob(self, getResults) -> None:
        status = _("Failed: see the error message and the log.")
        try:
            with slicer.util.tryWithErrorDisplay(_("NIMOSEF failed."), waitCursor=True):
                self.results = getResults()
                self.updateResults(self.results)
                self.logic.showResults(self.results)
                status = _("Done.")
                self.appendLog(_("Results imported; longest GUI step {ms:.0f} ms.").format(
                    ms=1000 * self.longestGuiStepS))
        finally:
            self.appendLog(status)
            self.finishJob(status)

    def finishJob(self, message: str) -> None:
        self.job = None
        self.pollTimer.stop()
        self.importTimer.stop()
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
        from NimosefSlicerLib.results import quality_text

        self.ui.qualityLabel.text = quality_text(s)
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
    def unmetRequirements() -> list:
        """Requirements of Resources/requirements.txt that are missing or too old."""
        from NimosefSlicerLib import deps

        return deps.unmet(deps.read_requirements(REQUIREMENTS))

    @staticmethod
    def torchExtensionLogic():
        """The PyTorch extension's logic, or None when that extension is not installed."""
        try:
            import PyTorchUtils
        except ImportError:
            return None
        return PyTorchUtils.PyTorchUtilsLogic()

    def ensureDependencies(self, askUser: bool = True, log=None) -> bool:
        """Bring every requirement to its minimum version, after one confirmation.

        torch through the PyTorch extension when it is installed, else pip from PyPI; the
        others with ``slicer.packaging.pip_ensure`` (5.12+, told not to ask again) or
        ``slicer.util.pip_install``. Returns False when the user declines; raises ValueError
        with one clear message when the installation fails (offline: says so)."""
        from NimosefSlicerLib import deps

        log = log or logging.info
        missing = self.unmetRequirements()
        if not missing:
            return True
        torchLogic = self.torchExtensionLogic()
        if askUser and not slicer.util.confirmOkCancelDisplay(
                deps.confirmation_text(missing, torchLogic is not None)):
            log(_("Installation declined: NIMOSEF cannot run without these packages."))
            return False
        torch, others = deps.split_torch(missing)
        try:
            if torch is not None:
                log(_("Installing {req}...").format(req=torch.requirement.text))
                if torchLogic is not None:
                    torchLogic.installTorch(
                        askConfirmation=False,
                        torchVersionRequirement=f">={torch.requirement.minimum}")
                else:
                    slicer.util.pip_install(deps.pip_args([torch]))
            if others:
                log(_("Installing {reqs}...").format(
                    reqs=" ".join(u.requirement.text for u in others)))
                self._pipInstall(deps.pip_args(others), [u.requirement.text for u in others])
        except Exception as exc:
            raise ValueError(deps.install_failure_message(missing, str(exc),
                                                          deps.index_reachable())) from None
        still = self.unmetRequirements()
        if still:
            raise ValueError(_("Still missing after the installation: {reqs}. Restart Slicer "
                               "and try again.").format(
                                   reqs=", ".join(u.describe() for u in still)))
        log(_("All Python requirements are met."))
        return True

    @staticmethod
    def _pipInstall(args: list, requirements: list) -> None:
        """``slicer.packaging.pip_ensure`` without its own prompt (we asked), else pip_install."""
        import inspect

        ensure = getattr(getattr(slicer, "packaging", None), "pip_ensure", None)
        if ensure is None:
            slicer.util.pip_install(args)
            return
        from packaging.requirements import Requirement

        params = inspect.signature(ensure).parameters
        kwargs = {k: v for k, v in (("prompt_install", False), ("requester", "NIMOSEF"),
                                    ("skip_in_testing", False)) if k in params}
        ensure([Requirement(r) for r in requirements], **kwargs)

    # -------------------------------------------------------------------- jobs
    def loadCine(self, path: str):
        from NimosefSlicerLib.cine import load_cine_file

        return load_cine_file(self.context(), path)

    def startSegmentTrack(self, inputNode, resFactorZ: int = 2, device: str = "auto",
                          quality: str = "standard",
                          priorPath: Optional[str] = None,  # noqa: UP045 (Python 3.9)
                          workDir: Optional[str] = None,  # noqa: UP045 (Python 3.9)
                          refine: bool = True, keepOutputs: bool = False):
        """Export the cine and start the engine in the background; returns the job to poll.

        Without ``workDir`` the job works in a new folder under Slicer's temporary folder and
        removes it after success, failure or cancel, unless ``keepOutputs``. Raises
        ValueError for a bad input node or options."""
        from NimosefSlicerLib.cine import find_cine
        from NimosefSlicerLib.runner import SegmentTrackOptions
        from NimosefSlicerLib.workflow import SegmentTrackJob

        ctx = self.context()
        cine = find_cine(ctx, inputNode)
        options = SegmentTrackOptions(int(resFactorZ), device, quality, priorPath or None,
                                      refine=bool(refine))
        job = SegmentTrackJob(ctx, cine, options, self.pythonExecutable(), self.engineParent(),
                              workDir, keep_outputs=bool(keepOutputs),
                              temp_dir=slicer.app.temporaryPath)
        return job.start()

    def startResample(self, results, resFactorZ: int):
        """Re-sample at a new z factor, the frame on screen first (shown as soon as it is
        ready), then the whole cine."""
        from NimosefSlicerLib.workflow import ResampleJob

        current = results.cine.browser.GetSelectedItemNumber()
        return ResampleJob(self.context(), results, int(resFactorZ), self.pythonExecutable(),
                           self.engineParent(), preview_frame=max(0, int(current)),
                           temp_dir=slicer.app.temporaryPath).start()

    def process(self, inputNode, resFactorZ: int = 2, device: str = "auto",
                quality: str = "standard",
                priorPath: Optional[str] = None,  # noqa: UP045 (Python 3.9)
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

    def trackPoints(self, results, pointList):
        """Points placed on the end-diastolic frame, followed through the cycle (a point list
        in the cine's browser and a trajectory table). Raises ValueError when it cannot."""
        from NimosefSlicerLib.tracking import track_points

        return track_points(self.context(), results, pointList)

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


class NimosefSlicerTest(ScriptedLoadableModuleTest):
    """The light test always runs (build machines: no torch, no network, seconds): the scene
    code on the small real result shipped in Resources/TestResult, with the checks pytest
    uses. The whole workflow (engine run on the shipped demo cine) runs too when the engine's
    requirements are installed; otherwise it says so and passes (nothing to test there)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_NimosefSlicer_light()
        self.setUp()
        self.test_NimosefSlicer_workflow()

    def test_NimosefSlicer_light(self):
        from NimosefSlicerLib import scenarios

        self.delayDisplay("Importing the shipped test result")
        report = scenarios.light_self_test(NimosefSlicerLogic.context(), MODULE_DIR)
        self.delayDisplay(f"Light test passed: {report}")

    def test_NimosefSlicer_workflow(self):
        from NimosefSlicerLib import scenarios
        from NimosefSlicerLib.cine import load_sequence_file
        from NimosefSlicerLib.curves import read_volume_curves
        from NimosefSlicerLib.runner import SegmentTrackOptions
        from NimosefSlicerLib.sampledata import SAMPLE_FILE

        logic = NimosefSlicerLogic()
        missing = logic.unmetRequirements()
        if missing:
            logging.info("NIMOSEF whole-workflow test not run: the engine's requirements are "
                         "not installed (%s)", ", ".join(u.describe() for u in missing))
            return
        import tempfile

        ctx = logic.context()
        work = Path(tempfile.mkdtemp(prefix="NIMOSEF_test_", dir=slicer.app.temporaryPath))
        self.delayDisplay("Loading the sample cine")
        cine = load_sequence_file(ctx, SAMPLE_FILE)
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
        import shutil

        shutil.rmtree(work, ignore_errors=True)
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
