"""One progress reporter for every long job: tqdm or JSON lines on the CLI, a callback in Slicer.

Jobs call ``reporter.update(stage, fraction, message)`` and ``reporter.check_cancel()``.
Cancellation comes from SIGINT/SIGTERM (see :func:`cancel_on_signals`) or a callback. Inner
loops that take no reporter (network chunks, refinement iterations) call
:func:`check_cancelled`, which checks the reporters of the running jobs, so a cancel acts
within one chunk or iteration (well under a second), not at the next stage or frame.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from nimosef_engine.core.errors import NimosefCancelled


class ProgressReporter:
    """Base reporter: silent, cancellable through :meth:`cancel`."""

    def __init__(self, cancel_callback: Callable[[], bool] | None = None):
        self._cancel = threading.Event()
        self._cancel_callback = cancel_callback

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        """Report that ``stage`` is ``fraction`` (0..1) done."""
        self.check_cancel()
        self._emit(stage, min(max(float(fraction), 0.0), 1.0), message)

    def _emit(self, stage: str, fraction: float, message: str) -> None:
        pass

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set() or bool(self._cancel_callback and self._cancel_callback())

    def check_cancel(self) -> None:
        """Raise :class:`NimosefCancelled` if the job was cancelled."""
        if self.cancelled:
            raise NimosefCancelled("cancelled by the user")

    def close(self) -> None:
        pass


class ShareReporter(ProgressReporter):
    """One of several runs of a stage: its fractions map onto ``[lo, hi]`` of ``parent``'s,
    its messages get ``prefix``, its stage is renamed ``stage`` when given, and it is
    cancelled with ``parent``."""

    def __init__(self, parent: ProgressReporter, lo: float, hi: float, prefix: str = "",
                 stage: str | None = None):
        super().__init__(cancel_callback=lambda: parent.cancelled)
        self._parent, self._lo, self._hi, self._prefix = parent, lo, hi, prefix
        self._stage = stage

    def _emit(self, stage: str, fraction: float, message: str) -> None:
        self._parent.update(self._stage or stage, self._lo + (self._hi - self._lo) * fraction,
                            self._prefix + message)


class JsonLinesReporter(ProgressReporter):
    """One JSON object per line on stdout: ``{"stage", "fraction", "message"}`` (for Slicer)."""

    def __init__(self, stream=None, **kwargs):
        super().__init__(**kwargs)
        self._stream = stream or sys.stdout

    def _emit(self, stage: str, fraction: float, message: str) -> None:
        line = json.dumps({"stage": stage, "fraction": round(fraction, 4), "message": message})
        self._stream.write(line + "\n")
        self._stream.flush()


class TqdmReporter(ProgressReporter):
    """A tqdm bar per stage on stderr."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._bar = None
        self._stage = None

    def _emit(self, stage: str, fraction: float, message: str) -> None:
        from tqdm import tqdm

        if stage != self._stage:
            self.close()
            self._bar = tqdm(total=1000, desc=stage, file=sys.stderr, leave=False,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
            self._stage = stage
        self._bar.n = int(fraction * 1000)
        self._bar.set_description_str(f"{stage} {message}".strip(), refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None


class CallbackReporter(ProgressReporter):
    """Forwards updates to ``callback(stage, fraction, message)``."""

    def __init__(self, callback: Callable[[str, float, str], None], **kwargs):
        super().__init__(**kwargs)
        self._callback = callback

    def _emit(self, stage: str, fraction: float, message: str) -> None:
        self._callback(stage, fraction, message)


def make_reporter(kind: str) -> ProgressReporter:
    """``'tqdm'``, ``'json'`` or ``'none'``."""
    if kind == "json":
        return JsonLinesReporter()
    if kind == "tqdm":
        return TqdmReporter()
    if kind == "none":
        return ProgressReporter()
    raise ValueError(f"unknown progress kind {kind!r} (tqdm, json, none)")


_ACTIVE: list[ProgressReporter] = []  # reporters of the jobs running now (cancel_on_signals)


def check_cancelled() -> None:
    """Raise :class:`NimosefCancelled` if a running job (:func:`cancel_on_signals`) was
    cancelled; cheap enough to call once per network chunk or loop iteration."""
    for reporter in _ACTIVE:
        reporter.check_cancel()


@contextlib.contextmanager
def cancel_on_signals(reporter: ProgressReporter) -> Iterator[None]:
    """Within the block, ``reporter`` is checked by :func:`check_cancelled`, and (in the main
    thread) SIGINT and SIGTERM cancel it: the job stops at its next check, writing nothing. A
    second signal before it stops interrupts at once (KeyboardInterrupt)."""
    _ACTIVE.append(reporter)
    try:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def _handler(signum, frame):  # noqa: ARG001
            if reporter.cancelled:
                raise KeyboardInterrupt
            reporter.cancel()

        old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    finally:
        _ACTIVE.remove(reporter)
