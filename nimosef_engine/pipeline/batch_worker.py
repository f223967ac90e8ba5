"""The worker side of a cohort run (:mod:`pipeline.batch`): one subject's Segment & Track as a
Dask task.

This module imports ``distributed`` at its top: only the Dask workers (which unpickle
:func:`run_subject` by reference) and :mod:`pipeline.batch`, once it starts a cohort run,
import it, so the rest of the engine works without Dask installed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from nimosef_engine.core.errors import NimosefCancelled, NimosefInputError
from nimosef_engine.core.progress import ProgressReporter, cancel_on_signals
from nimosef_engine.data.cohort_manifest import CohortSubject
from nimosef_engine.pipeline.options import SegmentTrackOptions

# A worker that declares this resource (value 1) runs one subject at a time, with torch using
# all its threads; a worker that does not runs one subject per Dask thread, one torch thread
# each. The local cluster's workers declare it; give it to the workers of your own cluster
# with ``dask worker ... --resources nimosef_subject=1``.
RESOURCE = "nimosef_subject"
PROGRESS_INTERVAL_S = 1.0  # at most one progress event per subject and second (and per stage)

_LOCK = threading.Lock()
_RUNNING: dict[str, set[ProgressReporter]] = {}  # batch id -> its subjects running here
_CANCELLED: set[str] = set()  # batch ids cancelled (cancel_batch) in this worker process
_SUBJECT = threading.local()  # the subject a worker thread runs, named in its log lines


class WorkerReporter(ProgressReporter):
    """A subject's progress sent to the cohort's client as Dask events of ``topic``
    (``{"subject", "stage", "fraction", "message"}``): at each change of stage and at most
    once per :data:`PROGRESS_INTERVAL_S` within one."""

    def __init__(self, worker, topic: str, subject: str):
        super().__init__()
        self._worker, self._topic, self._subject = worker, topic, subject
        self._stage: str | None = None
        self._last = 0.0

    def _emit(self, stage: str, fraction: float, message: str) -> None:
        now = time.monotonic()
        if stage == self._stage and now - self._last < PROGRESS_INTERVAL_S and fraction < 1:
            return
        self._stage, self._last = stage, now
        self._worker.log_event(self._topic, {"subject": self._subject, "stage": stage,
                                             "fraction": float(fraction), "message": message})


class _SubjectFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.subject = getattr(_SUBJECT, "name", "-")
        return True


def _log_with_subject() -> None:
    """The engine's warnings in a worker, on its stderr, each naming its subject (once per
    worker process; a worker prints nothing else of the engine's)."""
    engine = logging.getLogger("nimosef_engine")
    with _LOCK:
        if any(isinstance(f, _SubjectFilter) for h in engine.handlers for f in h.filters):
            return
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_SubjectFilter())
        handler.setFormatter(logging.Formatter("%(levelname)s %(subject)s: %(message)s"))
        engine.addHandler(handler)
        engine.setLevel(logging.WARNING)
        engine.propagate = False


def torch_threads(worker) -> int:
    """Torch threads for one subject on ``worker``: all its threads when it runs one subject
    at a time (it declares :data:`RESOURCE`), else 1 (a subject per Dask thread)."""
    if worker.state.total_resources.get(RESOURCE, 0) >= 1:
        return max(1, int(worker.state.nthreads))
    return 1


def run_subject(subject: CohortSubject, out_dir: str, options: SegmentTrackOptions,
                topic: str, batch_id: str) -> dict:
    """Segment & Track ``subject`` into ``out_dir`` (written atomically by
    :func:`pipeline.segment_track.segment_track`: a finished subject has ``summary.json``,
    a stopped one leaves nothing). Returns ``{"subject", "status", ...}``: ``done`` (with
    ``runtime_s``, the engine's seconds), ``failed`` with ``error``, the one-line message of
    a bad input (:class:`NimosefInputError`: not worth retrying), or ``cancelled``. Any other
    exception propagates, so that Dask retries the task (``retries``)."""
    worker = get_worker()
    name = subject.subject
    reporter = WorkerReporter(worker, topic, name)
    with _LOCK:
        if batch_id in _CANCELLED:
            return {"subject": name, "status": "cancelled"}
        _RUNNING.setdefault(batch_id, set()).add(reporter)
    try:
        import torch

        from nimosef_engine.pipeline.segment_track import segment_track

        torch.set_num_threads(torch_threads(worker))
        _log_with_subject()
        _SUBJECT.name = name
        t0 = time.perf_counter()
        with cancel_on_signals(reporter):  # in a worker thread: makes check_cancelled see it
            summary = segment_track(list(subject.inputs), Path(out_dir), reporter, options,
                                    **subject.options)
        return {"subject": name, "status": "done", "runtime_s": summary["runtime_s"],
                "wall_s": round(time.perf_counter() - t0, 2), "worker": worker.address,
                "pid": os.getpid()}
    except NimosefInputError as exc:
        return {"subject": name, "status": "failed", "error": one_line(str(exc)),
                "worker": worker.address, "pid": os.getpid()}
    except NimosefCancelled:
        return {"subject": name, "status": "cancelled"}
    finally:
        _SUBJECT.name = "-"
        with _LOCK:
            _RUNNING.get(batch_id, set()).discard(reporter)


def cancel_batch(batch_id: str) -> int:
    """Run on every worker (``client.run``) when a cohort run is cancelled: its subjects
    running here stop at their next check (within a fitting step or a network chunk, and
    remove what they wrote), and its subjects not started yet return ``cancelled`` at once.
    Returns how many were running here."""
    with _LOCK:
        _CANCELLED.add(batch_id)
        running = list(_RUNNING.get(batch_id, ()))
        for reporter in running:
            reporter.cancel()
    return len(running)


def one_line(text: str) -> str:
    """``text`` on one line (for the failures record, the table and the terminal)."""
    return " ".join(str(text).split())


class IgnoreInterrupts(WorkerPlugin):
    """Workers of the local cluster ignore SIGINT. Ctrl-C in a terminal reaches every process
    of its group, workers included; the cohort's own process handles it, cancelling the
    running subjects cleanly (:func:`cancel_batch`) rather than letting the workers die with
    a subject half-written."""

    idempotent = True
    name = "nimosef-ignore-interrupts"

    def setup(self, worker) -> None:  # noqa: ARG002 - the plugin interface
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
