"""The module's jobs as non-blocking objects: Segment & Track, and z-resample.

A job exports what the engine needs, starts the engine process, is polled (by a Qt timer in
the app, by :meth:`EngineJob.run` in tests and the self-test), and only on success changes
the scene. A cancel stops the process tree without blocking the caller and then removes the
job's work folder: the scene is left exactly as it was. A job that made its own work folder
removes it after success and failure too, unless asked to keep the engine's outputs.

In the app nothing here blocks the GUI for long: :meth:`EngineJob.poll` and
:meth:`EngineJob.cancel` return at once, and :meth:`SegmentTrackJob.import_step` brings the
results in piece by piece (the files are read in a worker thread).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from .cine import CineNodes, export_cine_to_nifti
from .results import (
    OUTPUT_DIR,
    NimosefResults,
    ResultsImport,
    show_superres_preview,
    update_superres,
)
from .runner import (
    EngineError,
    EngineProcess,
    ProgressEvent,
    SegmentTrackOptions,
    engine_command,
    engine_env,
    resample_args,
    segment_track_args,
)

ProgressCallback = Callable[[ProgressEvent], None]


class EngineJob:
    """A running engine command plus what to do with its output."""

    def __init__(self, args: list[str], python: str, engine_parent: str | Path | None,
                 work_dir: Path, owns_work_dir: bool):
        self.work_dir = Path(work_dir)
        self.owns_work_dir = owns_work_dir
        self.process = EngineProcess(engine_command(python, *args), engine_env(engine_parent),
                                     cwd=self.work_dir)
        self.last_event: ProgressEvent | None = None

    def start(self) -> EngineJob:
        self.process.start()
        return self

    def poll(self) -> list[ProgressEvent]:
        events = self.process.poll()
        for event in events:
            self.handle_event(event)
        return events

    def handle_event(self, event: ProgressEvent) -> None:
        """Called for every progress event, before the caller sees it."""
        self.last_event = event

    def finished(self) -> bool:
        return self.process.finished()

    def cancel(self) -> None:
        """Stop the engine and its children (returns at once); the work folder goes once they
        are gone. The scene is untouched. :meth:`wait_stopped` blocks until then."""
        self.process.cancel(on_stopped=self.cleanup)

    def wait_stopped(self, timeout_s: float = 30.0) -> bool:
        return self.process.wait_stopped(timeout_s)

    def cleanup(self) -> None:
        if self.owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def check_success(self) -> None:
        """Raise EngineError (and clean up) unless the engine exited with status 0."""
        code = self.process.returncode
        if self.process.cancelled:
            raise EngineError("cancelled")
        if code != 0:
            message = self.process.error_message()
            self.cleanup()
            raise EngineError(message)

    def run(self, progress_callback: ProgressCallback | None = None,
            timeout_s: float | None = None):
        """Blocking: start if needed, wait, then :meth:`finish`."""
        if self.process.process is None:
            self.start()

        def forward(event: ProgressEvent) -> None:
            self.handle_event(event)
            if progress_callback is not None:
                progress_callback(event)

        self.process.wait(forward, timeout_s)
        return self.finish()

    def finish(self):
        raise NotImplementedError


class SegmentTrackJob(EngineJob):
    """Export the cine, run ``segment-track``, import the results synchronised to the cine.

    ``work_dir`` None: the job makes its own work folder under ``temp_dir`` and removes it on
    success (after the import), failure and cancel, unless ``keep_outputs``; then the engine's
    output folder stays (``results.output_dir``). A given ``work_dir`` is never removed."""

    def __init__(self, ctx, cine: CineNodes, options: SegmentTrackOptions,
                 python: str | None = None, engine_parent: str | Path | None = None,
                 work_dir: str | Path | None = None, name: str = "NIMOSEF",
                 keep_outputs: bool = False, temp_dir: str | Path | None = None):
        owns = work_dir is None
        work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="nimosef_",
                                                                     dir=temp_dir))
        work.mkdir(parents=True, exist_ok=True)
        self.ctx, self.cine, self.options, self.name = ctx, cine, options, name
        self.keep_outputs = keep_outputs
        self.input_path = work / "input_cine.nii.gz"
        self.out_dir = work / "output"
        self.importer: ResultsImport | None = None
        self._reader: threading.Thread | None = None
        self._read_error: BaseException | None = None
        self._steps = None
        self.results: NimosefResults | None = None
        super().__init__(segment_track_args(self.input_path, self.out_dir, options),
                         python or sys.executable, engine_parent, work, owns)

    def start(self) -> SegmentTrackJob:
        try:
            export_cine_to_nifti(self.cine.sequence, self.input_path)
            super().start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def cleanup(self) -> None:
        if not self.keep_outputs or self.process.cancelled or self.process.returncode != 0:
            super().cleanup()

    def finish(self) -> NimosefResults:
        """Import the output folder, blocking (call once :meth:`finished` is True)."""
        while not self.import_step():
            if self._reader is not None:
                self._reader.join(0.05)
        return self.results

    def import_step(self) -> bool:
        """One short piece of the import, for a GUI timer (call once :meth:`finished` is
        True, until it returns True; then ``results`` is set). The first call checks the
        exit status (raises ``EngineError``) and starts reading the files in a worker
        thread; while it reads, calls return False at once; then each call runs one scene
        step (:class:`ResultsImport`). The work folder is removed after the last step, or
        after a failure, unless kept."""
        try:
            if self.importer is None:
                self.check_success()
                self.importer = ResultsImport(self.ctx, self.cine, self.out_dir,
                                              self.options.res_factor_z, self.name)
                self._reader = threading.Thread(target=self._read, daemon=True)
                self._reader.start()
                return False
            if self._reader.is_alive():
                return False
            if self._read_error is not None:
                raise self._read_error
            if self._steps is None:
                self._steps = self.importer.steps()
            try:
                next(self._steps)
                return False
            except StopIteration:
                pass
        except BaseException:
            self.cleanup()
            raise
        self.results = self.importer.results
        self.results.prior = self.options.prior
        if not (self.keep_outputs or not self.owns_work_dir):
            self.results.sequences["segmentation"].SetAttribute(OUTPUT_DIR, "")
        self.cleanup()
        return True

    def _read(self) -> None:
        try:
            self.importer.read()
        except BaseException as exc:  # re-raised in the GUI thread by import_step
            self._read_error = exc


class ResampleJob(EngineJob):
    """``nimosef resample`` of the fitted subject at a new z factor; updates the
    super-resolved sequence in place (no fitting again).

    With ``preview_frame`` (the frame on screen) the engine samples that frame first; it is
    shown as soon as it is written, the rest of the cine follows. A cancel puts the frame the
    sequence holds back on screen."""

    def __init__(self, ctx, results: NimosefResults, res_factor_z: int,
                 python: str | None = None, engine_parent: str | Path | None = None,
                 preview_frame: int | None = None, temp_dir: str | Path | None = None):
        SegmentTrackOptions(res_factor_z=res_factor_z)  # validates the factor
        out_dir = Path(results.sequences["segmentation"].GetAttribute(OUTPUT_DIR)
                       or results.output_dir)
        kept = (out_dir / "subject.nimosef").is_file()
        if not kept and results.subject is None:
            from nimosef_engine.core.errors import NimosefInputError

            raise NimosefInputError(out_dir / "subject.nimosef",
                                    "fitted subject not found: run Segment & Track again")
        work = Path(tempfile.mkdtemp(prefix="nimosef_resample_", dir=temp_dir))
        if kept:
            subject = out_dir / "subject.nimosef"
        else:  # the run's folder is gone: the subject travels with the results
            subject = work / "subject.nimosef"
            subject.write_bytes(results.subject)
        self.ctx, self.results, self.res_factor_z = ctx, results, int(res_factor_z)
        self.output_dir = out_dir if kept else None
        self.resample_dir = work / f"z{int(res_factor_z)}"
        self.preview_shown = False
        super().__init__(resample_args(subject, res_factor_z, self.resample_dir, preview_frame,
                                       results.prior),
                         python or sys.executable, engine_parent, work, True)

    def handle_event(self, event: ProgressEvent) -> None:
        super().handle_event(event)
        if event.stage == "preview" and not self.process.cancelled:
            show_superres_preview(self.results, self.resample_dir /
                                  f"preview_z{self.res_factor_z}.nii.gz")
            self.preview_shown = True

    def cancel(self) -> None:
        self.restore_frame()
        super().cancel()

    def restore_frame(self) -> None:
        """Show the sequence's own frame again in place of a preview."""
        if self.preview_shown:
            self.ctx.sequences_logic.UpdateProxyNodesFromSequences(self.results.cine.browser)
            self.preview_shown = False

    def finish(self) -> NimosefResults:
        try:
            self.check_success()
        except EngineError:
            self.restore_frame()
            raise
        try:
            source = self.resample_dir
            if self.output_dir is not None:  # a kept output folder gets the new volumes too
                for f in self.resample_dir.glob("*.nii.gz"):
                    if not f.name.startswith("preview_"):
                        os.replace(f, self.output_dir / f.name)
                source = self.output_dir
            update_superres(self.ctx, self.results, source, self.res_factor_z)
            if self.output_dir is None:
                self.results.superres_dir = None
        finally:
            self.cleanup()
        return self.results
