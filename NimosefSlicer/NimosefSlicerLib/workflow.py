"""The module's jobs as non-blocking objects: Segment & Track, and z-resample.

A job exports what the engine needs, starts the engine process, is polled (by a Qt timer in
the app, by :meth:`EngineJob.run` in tests and the self-test), and only on success changes
the scene. A cancel kills the process tree and removes the job's working folder: the scene is
left exactly as it was.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .cine import CineNodes, export_cine_to_nifti
from .results import (
    OUTPUT_DIR,
    NimosefResults,
    import_results,
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
        """Kill the engine and its children; drop the working folder. The scene is untouched."""
        self.process.cancel()
        self.cleanup()

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
    """Export the cine, run ``segment-track``, import the results synchronised to the cine."""

    def __init__(self, ctx, cine: CineNodes, options: SegmentTrackOptions,
                 python: str | None = None, engine_parent: str | Path | None = None,
                 work_dir: str | Path | None = None, name: str = "NIMOSEF"):
        owns = work_dir is None
        work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="nimosef_"))
        work.mkdir(parents=True, exist_ok=True)
        self.ctx, self.cine, self.options, self.name = ctx, cine, options, name
        self.input_path = work / "input_cine.nii.gz"
        self.out_dir = work / "output"
        super().__init__(segment_track_args(self.input_path, self.out_dir, options),
                         python or sys.executable, engine_parent, work, owns)

    def start(self) -> SegmentTrackJob:
        export_cine_to_nifti(self.cine.sequence, self.input_path)
        super().start()
        return self

    def finish(self) -> NimosefResults:
        """Import the output folder (call once :meth:`finished` is True)."""
        self.check_success()
        results = import_results(self.ctx, self.cine, self.out_dir, self.options.res_factor_z,
                                 self.name)
        results.prior = self.options.prior
        return results


class ResampleJob(EngineJob):
    """``nimosef resample`` of the fitted subject at a new z factor; updates the
    super-resolved sequence in place (no fitting again).

    With ``preview_frame`` (the frame on screen) the engine samples that frame first; it is
    shown as soon as it is written, the rest of the cine follows. A cancel puts the frame the
    sequence holds back on screen."""

    def __init__(self, ctx, results: NimosefResults, res_factor_z: int,
                 python: str | None = None, engine_parent: str | Path | None = None,
                 preview_frame: int | None = None):
        SegmentTrackOptions(res_factor_z=res_factor_z)  # validates the factor
        out_dir = Path(results.sequences["segmentation"].GetAttribute(OUTPUT_DIR)
                       or results.output_dir)
        subject = out_dir / "subject.nimosef"
        if not subject.is_file():
            from nimosef_engine.errors import NimosefInputError

            raise NimosefInputError(subject, "fitted subject not found: run Segment & Track")
        work = Path(tempfile.mkdtemp(prefix="nimosef_resample_", dir=out_dir.parent))
        self.ctx, self.results, self.res_factor_z = ctx, results, int(res_factor_z)
        self.output_dir = out_dir
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
        super().cancel()
        self.restore_frame()

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
            # keep the new volumes beside the run's other outputs (the scene and a saved
            # scene refer to files that stay), then show them
            for f in self.resample_dir.glob("*.nii.gz"):
                if not f.name.startswith("preview_"):
                    os.replace(f, self.output_dir / f.name)
            update_superres(self.ctx, self.results, self.output_dir, self.res_factor_z)
        finally:
            self.cleanup()
        return self.results
