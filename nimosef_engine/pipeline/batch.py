"""Segment & Track a cohort (``nimosef segment-track-batch``): every subject of a manifest
(:mod:`data.cohort_manifest`) on a Dask cluster, one folder per subject, one table of the
cohort's figures.

Why Dask distributed (the ``batch`` extra: ``pip install nimosef-engine[batch]``): it is pure
Python and installs with pip; a local cluster of worker processes starts by itself on this
machine; ``address="tcp://host:8786"`` runs the very same code on an existing cluster (``dask
scheduler`` and ``dask worker`` on other machines, or one started by dask-jobqueue on an HPC
system); a subject whose worker dies (killed, out of memory) is rerun by the scheduler on
another worker, and one whose task raised is retried (``client.submit(..., retries=N,
pure=False)``). There is no scheduler, queue or process pool of our own to maintain. Dask is
imported only when a cohort runs (here lazily, in the workers by :mod:`pipeline.batch_worker`):
the rest of the engine works without it.

Output folder ``DIR``::

    DIR/batch.json            manifest, options and engine version of the latest run
    DIR/subjects/<subject>/   that subject's segment-track outputs (written atomically by
                              segment_track: a finished subject has summary.json, a stopped or
                              killed one leaves nothing there)
    DIR/failures.json         subjects whose latest run failed: {"subjects": {id: {"error",
                              "attempts", "inputs", "time"}}}
    DIR/cohort.parquet, DIR/cohort.csv
                              one row per subject (COHORT_COLUMNS); rebuilt from subjects/ and
                              failures.json after every subject and written atomically, so it
                              always agrees with what is on disk

Resume: a subject whose ``summary.json`` exists is skipped; one recorded as failed is not
retried unless ``retry_failed``; ``options.overwrite`` reruns every subject (segment-track
then replaces only its own outputs). A failure never stops the others.

Local cluster (:func:`local_layout`): W worker processes x T threads from the core count;
each worker runs one subject at a time (it declares the resource
:data:`batch_worker.RESOURCE`) with torch, OpenMP and BLAS using its T threads; with GPUs, one
worker per GPU (``CUDA_VISIBLE_DEVICES`` set per worker). Cancel (Ctrl-C, or the reporter's
cancel): the running subjects stop at their next check and remove what they wrote, the ones
not started are dropped, the subjects done stay, and the cohort table lists them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import queue
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from nimosef_engine import __version__
from nimosef_engine.core.atomic import atomic_path, atomic_write_text, check_output_path
from nimosef_engine.core.errors import NimosefCancelled, NimosefInputError
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.core.threads import set_openmp_waiting
from nimosef_engine.data.cohort_manifest import SUBJECT_ID, CohortSubject, read_cohort_manifest
from nimosef_engine.pipeline.options import SegmentTrackOptions

log = logging.getLogger(__name__)

SUBJECTS = "subjects"
BATCH_FILE = "batch.json"
FAILURES_FILE = "failures.json"
COHORT_PARQUET = "cohort.parquet"
COHORT_CSV = "cohort.csv"
BATCH_KIND = "nimosef-segment-track-batch"
# peak global strain columns of the cohort table <- strain.csv columns (percent)
STRAIN_PEAKS = {"peak_global_circumferential_strain_pct": "circumferential_pct",
                "peak_global_radial_strain_pct": "radial_pct",
                "peak_global_longitudinal_strain_pct": "longitudinal_pct"}
SUMMARY_COLUMNS = ("ed_frame", "es_frame", "LV_EDV_mL", "LV_ESV_mL", "LV_SV_mL", "LV_EF_pct",
                   "RV_EDV_mL", "RV_ESV_mL", "RV_SV_mL", "RV_EF_pct", "MYO_mass_g")
COHORT_COLUMNS = ["subject", "status", *SUMMARY_COLUMNS, *STRAIN_PEAKS, "runtime_s",
                  "quality", "quality_reasons", "error"]
POLL_S = 0.5  # how often the client looks at progress events and the cancel flag
CANCEL_WAIT_S = 60.0  # how long a cancel waits for the running subjects to stop cleanly
CONNECT_TIMEOUT_S = 20.0  # an existing cluster (address) must answer within this


@dataclass(frozen=True)
class ClusterSettings:
    """Where the subjects run. ``address``: an existing Dask scheduler (``tcp://host:8786``);
    else a local cluster of ``workers`` processes x ``threads_per_worker`` threads (None: from
    the core count, :func:`local_layout`). ``retries``: reruns of a subject whose task raised
    an error other than bad input (``client.submit(retries=...)``) and, on the local cluster,
    reruns after its worker died (the scheduler's ``allowed-failures``; an existing cluster
    keeps its own setting, 3 by default)."""

    address: str | None = None
    workers: int | None = None
    threads_per_worker: int | None = None
    retries: int = 1

    def __post_init__(self) -> None:
        for name, lo in (("workers", 1), ("threads_per_worker", 1), ("retries", 0)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < lo):
                raise NimosefInputError(name, f"must be an integer of at least {lo}, "
                                              f"got {value!r}")
        for name in ("workers", "threads_per_worker"):
            if self.address is not None and getattr(self, name) is not None:
                raise NimosefInputError(name, "applies to the local cluster only, not with "
                                              "address (an existing cluster has its workers)")


@dataclass(frozen=True)
class LocalLayout:
    """The local cluster: ``workers`` processes, each running one subject at a time with
    ``threads_per_worker`` threads; ``gpus`` GPUs shared round-robin (worker i sees GPU
    ``i % gpus`` alone), or 0 for CPU workers."""

    workers: int
    threads_per_worker: int
    gpus: int = 0

    def worker_env(self, i: int) -> dict[str, str]:
        """Environment of worker ``i``: its thread counts for OpenMP and BLAS (torch threads
        are set in the task too), and its GPU."""
        t = str(self.threads_per_worker)
        env = set_openmp_waiting(
            {"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t,
             **{k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                if k in os.environ}})
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % self.gpus)
        return env

    def describe(self) -> str:
        w, t = self.workers, self.threads_per_worker
        where = f", one per GPU ({self.gpus})" if self.gpus else ""
        return (f"local cluster: {w} worker process{'es' if w != 1 else ''} x {t} "
                f"thread{'s' if t != 1 else ''}{where}")


def local_layout(workers: int | None = None, threads_per_worker: int | None = None,
                 device: str = "auto", memory_budget_gb: float = 4.0,
                 cores: int | None = None, memory_gb: float | None = None,
                 gpus: int | None = None) -> LocalLayout:
    """The local cluster for this machine (``cores``, ``memory_gb`` of RAM and ``gpus``
    found when None). With GPUs (``device`` not ``cpu``): one worker per GPU, the cores shared
    among them. On CPUs: as many workers as cores, at most one per ``memory_budget_gb`` of
    RAM (each subject may use its memory budget), and the cores shared among them as
    threads. ``workers`` or ``threads_per_worker`` given: the other from the core count."""
    cores = cores or _core_count()
    if gpus is None:
        gpus = _gpu_count() if device != "cpu" else 0
    if device == "cuda" and gpus == 0:
        raise NimosefInputError("device", "CUDA was requested but no GPU is available")
    if gpus:
        w = workers or gpus
        return LocalLayout(w, threads_per_worker or max(1, cores // w), gpus)
    if memory_gb is None:
        memory_gb = _memory_gb()
    by_memory = max(1, int(memory_gb // max(float(memory_budget_gb), 0.1)))
    if workers is None:
        t = threads_per_worker or 1
        w = max(1, min(cores // t, by_memory))
        return LocalLayout(w, threads_per_worker or max(1, cores // w))
    return LocalLayout(workers, threads_per_worker or max(1, cores // workers))


def _core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _memory_gb() -> float:
    import psutil  # a dependency of distributed

    return psutil.virtual_memory().total / 2**30


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# ---- the folder: failures record, cohort table ---------------------------------------------

def read_failures(out: Path) -> dict[str, dict]:
    """``failures.json`` of a batch folder: ``{subject: {"error", "attempts", ...}}``."""
    path = Path(out) / FAILURES_FILE
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
        subjects = doc["subjects"]
        if not isinstance(subjects, dict):
            raise TypeError("subjects is not an object")
        return subjects
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignored %s, which cannot be read (%s): its subjects will run again",
                    path, exc)
        return {}


def write_failures(out: Path, failures: dict[str, dict]) -> None:
    """Write ``failures.json`` atomically."""
    atomic_write_text(Path(out) / FAILURES_FILE,
                      json.dumps({"subjects": dict(sorted(failures.items()))}, indent=1))


def is_done(out: Path, subject: str) -> bool:
    """Whether ``subject`` finished: its folder holds ``summary.json`` (segment-track writes
    its folder atomically, so a folder with it is complete)."""
    return (Path(out) / SUBJECTS / subject / "summary.json").is_file()


def subject_row(folder: Path) -> dict:
    """The cohort table's row of a finished subject: ED and ES frames, volumes, EF and mass
    from its ``summary.json``, peak global strains (%) from its ``strain.csv`` when it has one
    (:func:`pipeline.evaluate.peak_global_strain`), its runtime (s) and quality verdict.
    The table is rebuilt after every subject: a subject's files are read again only when
    they changed (their modification times), not once per finished subject."""
    strain = folder / "strain.csv"
    stamps = tuple(p.stat().st_mtime_ns if p.is_file() else None
                   for p in (folder / "summary.json", strain))
    return dict(_subject_row(str(folder), stamps))


@functools.lru_cache(maxsize=65536)
def _subject_row(folder_name: str, stamps: tuple) -> dict:
    """:func:`subject_row` of ``folder_name`` as its files were at ``stamps``."""
    from nimosef_engine.pipeline.evaluate import peak_global_strain, quality_columns

    folder = Path(folder_name)
    summary = json.loads((folder / "summary.json").read_text())
    row = {"subject": folder.name, "status": "done",
           **{k: summary.get(k) for k in SUMMARY_COLUMNS},
           "runtime_s": summary.get("runtime_s"), "error": None}
    strain = folder / "strain.csv"
    for column, source in STRAIN_PEAKS.items():
        row[column] = peak_global_strain(strain, source) if strain.is_file() else np.nan
    quality = quality_columns(summary) if summary.get("quality") else {}
    row.update(quality=quality.get("quality"),
               quality_reasons=quality.get("quality_reasons") or None)  # none: empty cell
    return row


def cohort_table(out: Path, order: Sequence[str] = ()) -> pd.DataFrame:
    """The cohort table of a batch folder, from what is on disk: a ``done`` row for every
    subject folder with ``summary.json`` (:func:`subject_row`), a ``failed`` row with its
    error for every subject of ``failures.json`` that is not done. Subjects of ``order``
    (the manifest's) first, in its order, then any others (of earlier manifests) by name."""
    out = Path(out)
    folders = out / SUBJECTS
    done = {p.name for p in folders.iterdir()  # not the hidden folder of a running subject
            if SUBJECT_ID.fullmatch(p.name) and (p / "summary.json").is_file()} \
        if folders.is_dir() else set()
    failures = read_failures(out)
    names = done | set(failures)
    ranked = [s for s in dict.fromkeys(order) if s in names]
    ranked += sorted(names - set(ranked))
    rows = []
    for name in ranked:
        if name in done:
            try:
                rows.append(subject_row(folders / name))
                continue
            except (OSError, ValueError) as exc:  # not ours to repair: reported as failed
                error = f"{folders / name / 'summary.json'}: cannot be read ({exc})"
        else:
            error = failures[name].get("error", "")
        rows.append({"subject": name, "status": "failed", "error": error})
    return pd.DataFrame(rows, columns=COHORT_COLUMNS)


def write_cohort_table(out: Path, order: Sequence[str] = ()) -> pd.DataFrame:
    """Rebuild the cohort table (:func:`cohort_table`) and write ``cohort.parquet`` and
    ``cohort.csv`` atomically."""
    df = cohort_table(out, order)
    with atomic_path(Path(out) / COHORT_PARQUET) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(Path(out) / COHORT_CSV) as tmp:
        df.to_csv(tmp, index=False)
    return df


def check_batch_folder(out: Path) -> None:
    """Refuse, before any work, an output that is neither new, empty, nor the folder of an
    earlier batch (it holds ``batch.json``): nothing is added to a folder of other files."""
    check_output_path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / BATCH_FILE).is_file():
        raise NimosefInputError(out, f"exists and is not a segment-track-batch folder (no "
                                     f"{BATCH_FILE}): give a new or empty folder, or the "
                                     "folder of an earlier batch to resume it")


# ---- the run --------------------------------------------------------------------------------

class CohortProgress:
    """The cohort's progress on one reporter stage, ``cohort``: subjects finished (or
    skipped) plus the running subjects' shares of their stages, over all subjects."""

    def __init__(self, reporter: ProgressReporter, total: int):
        from nimosef_engine.pipeline.segment_track import STAGES

        self.reporter, self.total, self.finished = reporter, max(total, 1), 0
        self.running: dict[str, float] = {}
        self._stages = STAGES

    def update(self, message: str) -> None:
        share = self.finished + sum(self.running.values())
        self.reporter.update("cohort", share / self.total, message)

    def event(self, msg: dict) -> None:
        """A subject's progress event (:class:`batch_worker.WorkerReporter`)."""
        name, stage = str(msg.get("subject")), str(msg.get("stage"))
        k = self._stages.index(stage) if stage in self._stages else 0
        share = (k + float(msg.get("fraction", 0.0))) / len(self._stages)
        self.running[name] = min(max(share, self.running.get(name, 0.0)), 0.99)
        self.update(f"{self.finished}/{self.total} finished | {name}: {stage} "
                    f"{msg.get('message', '')}".strip())

    def finish(self, name: str, message: str) -> None:
        self.running.pop(name, None)
        self.finished += 1
        self.update(f"{self.finished}/{self.total} finished | {name}: {message}")


def segment_track_batch(manifest: str | Path | Sequence[CohortSubject], out_dir: str | Path,
                        reporter: ProgressReporter | None = None,
                        options: SegmentTrackOptions | None = None, *,
                        cluster: ClusterSettings | None = None, retry_failed: bool = False,
                        **overrides) -> dict:
    """Segment & Track every subject of ``manifest`` (a CSV file or a folder of cines,
    :func:`data.cohort_manifest.read_cohort_manifest`, or its subjects) into
    ``out_dir/subjects/<subject>/`` on a Dask cluster (``cluster``), and write the cohort
    table (module docstring). ``options`` (any field overridden by keyword) apply to every
    subject, with each manifest row's own timing columns on top.

    Everything is checked before any work: the manifest, every subject's options, the models
    and the output folder (:class:`NimosefInputError`; nothing is written). Returns
    ``{"subjects", "done", "failed", "ran", "skipped", "seconds", "out", "cohort",
    "failures", "cluster"}`` (counts over the manifest's subjects; ``failures``: subject ->
    one-line error). Raises :class:`NimosefCancelled` after a cancel, once the finished
    subjects are in the cohort table."""
    from nimosef_engine.pipeline.checks import check_models
    from nimosef_engine.pipeline.outputs import output_lock

    t0 = time.perf_counter()
    opts = replace(options or SegmentTrackOptions(), **overrides)
    cluster = cluster or ClusterSettings()
    reporter = reporter or ProgressReporter()
    out = Path(out_dir).absolute()
    if isinstance(manifest, str | Path):
        source, subjects = Path(manifest), read_cohort_manifest(manifest)
    else:
        source, subjects = None, list(manifest)
    for s in subjects:  # each subject's options valid, before any work
        try:
            replace(opts, **s.options)
        except NimosefInputError as exc:
            raise NimosefInputError(source, f"{s.where}: {exc}") from None
    check_models(opts)
    check_batch_folder(out)
    _require_dask()
    layout = None if cluster.address else local_layout(
        cluster.workers, cluster.threads_per_worker, opts.device, opts.memory_budget_gb)
    order = [s.subject for s in subjects]
    with output_lock(out):
        out.mkdir(parents=True, exist_ok=True)
        _write_batch_file(out, source, opts, order)
        failures = read_failures(out)
        todo = [s for s in subjects if opts.overwrite or (
            not is_done(out, s.subject) and (retry_failed or s.subject not in failures))]
        skipped = [s.subject for s in subjects if s not in todo]
        write_cohort_table(out, order)
        progress = CohortProgress(reporter, len(subjects))
        for name in skipped:
            why = "done before" if is_done(out, name) else "failed before, not retried"
            progress.finish(name, f"skipped, {why}")
        where = None
        if todo:
            (out / SUBJECTS).mkdir(exist_ok=True)
            subject_opts = replace(opts, overwrite=True)  # a subject's folder is the batch's
            with _dask_client(cluster, layout) as (client, where):
                progress.update(f"{len(todo)} subjects to run on the {where}")
                _run_subjects(client, todo, out, subject_opts, cluster, progress, order,
                              failures)
        table = write_cohort_table(out, order)
    reporter.close()
    mine = table[table["subject"].isin(order)]
    failed = mine[mine["status"] == "failed"]
    return {"subjects": len(subjects), "done": int((mine["status"] == "done").sum()),
            "failed": len(failed), "ran": len(todo), "skipped": len(skipped),
            "seconds": round(time.perf_counter() - t0, 2), "out": str(out),
            "cohort": str(out / COHORT_PARQUET),
            "failures": dict(zip(failed["subject"], failed["error"], strict=True)),
            "cluster": where}


def _write_batch_file(out: Path, source: Path | None, opts: SegmentTrackOptions,
                      order: list[str]) -> None:
    """``batch.json``: what the latest run was given (a warning when its options differ from
    the earlier run's: subjects done before keep the results of theirs)."""
    settings = {k: v for k, v in opts.to_dict().items() if k not in ("overwrite", "force")}
    path = out / BATCH_FILE
    with contextlib.suppress(OSError, ValueError, KeyError):
        before = json.loads(path.read_text())["options"]
        changed = sorted(k for k in settings if json.dumps(before.get(k), default=str) !=
                         json.dumps(settings[k], default=str))
        if changed:
            log.warning("options differ from the earlier run's (%s): the subjects done "
                        "before keep the results of theirs (--overwrite reruns all)",
                        ", ".join(changed))
    atomic_write_text(path, json.dumps({
        "kind": BATCH_KIND, "manifest": None if source is None else str(source.absolute()),
        "subjects": order, "options": settings, "engine_version": __version__,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1, default=str))


def _require_dask() -> None:
    """Refuse, before any work, to run a cohort without Dask distributed installed."""
    try:
        import distributed  # noqa: F401 - only whether it is installed
    except ImportError:
        raise NimosefInputError(None, "segment-track-batch needs Dask distributed: pip "
                                      "install 'nimosef-engine[batch]' (or "
                                      "'dask[distributed]')") from None


@contextlib.contextmanager
def _dask_client(cluster: ClusterSettings, layout: LocalLayout | None) -> Iterator[tuple]:
    """A Dask client on ``cluster.address``, or on a local cluster of ``layout`` started
    here (closed on exit); yields ``(client, description)``."""
    with _quiet_dask():
        yield from _client_on(cluster, layout)


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask's own log lines (cluster start and stop, a worker restarted) at warning level and
    above only, unless debug logging is on (``nimosef -v``)."""
    logger = logging.getLogger("distributed")
    old = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def _client_on(cluster: ClusterSettings, layout: LocalLayout | None) -> Iterator[tuple]:
    """The generator of :func:`_dask_client`."""
    from distributed import Client

    from nimosef_engine.pipeline import batch_worker

    if cluster.address:
        try:
            client = Client(cluster.address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise NimosefInputError("address", f"no Dask scheduler answers at "
                                               f"{cluster.address} ({exc})") from None
        try:
            n = len(client.scheduler_info().get("workers", {}))
            if n == 0:
                log.warning("the cluster at %s has no workers yet: the subjects wait for them",
                            cluster.address)
            yield client, f"cluster at {cluster.address} ({n} workers)"
        finally:
            client.close()
        return
    # Dask writes the workers' thread counts into this process's environment before it
    # spawns them; they are put back when the cluster closes (a caller's later torch
    # processes would otherwise run on one thread)
    environ = dict(os.environ)
    local = start_local_cluster(layout, cluster.retries)
    try:
        client = Client(local)
        try:
            client.register_plugin(batch_worker.IgnoreInterrupts())
            yield client, layout.describe()
        finally:
            client.close()
    finally:
        local.close()
        os.environ.clear()
        os.environ.update(environ)


def start_local_cluster(layout: LocalLayout, retries: int = 1):
    """A Dask cluster of ``layout.workers`` worker processes (each under a Nanny, which
    restarts it if it dies) on this machine, listening on 127.0.0.1 only, no dashboard.
    It is the cluster ``LocalCluster(processes=True)`` builds, written as one spec per worker
    so that each gets its own environment (:meth:`LocalLayout.worker_env`: thread counts,
    its GPU). Every worker declares :data:`batch_worker.RESOURCE` (one subject at a time)
    and has no Dask memory limit: a subject keeps to its own memory budget. The scheduler
    reruns a task whose worker died up to ``retries`` times."""
    import dask
    from distributed import Nanny, Scheduler, SpecCluster

    from nimosef_engine.pipeline.batch_worker import RESOURCE

    threads = {k: v for k, v in layout.worker_env(0).items() if k.endswith("_NUM_THREADS")}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "port": 0,
                                               "dashboard": False,
                                               "dashboard_address": "127.0.0.1:0"}}
    workers = {f"nimosef-{i}": {"cls": Nanny, "options": {
        "host": "127.0.0.1", "nthreads": layout.threads_per_worker,
        "resources": {RESOURCE: 1}, "env": layout.worker_env(i), "memory_limit": 0,
        "silence_logs": logging.ERROR}} for i in range(layout.workers)}
    config = {"distributed.scheduler.allowed-failures": int(retries),
              # set before each worker process starts (numpy and torch read them at import)
              "distributed.nanny.pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": 65536,
                                                      **threads}}
    with dask.config.set(config):
        return SpecCluster(scheduler=scheduler, workers=workers, silence_logs=logging.ERROR,
                           name="nimosef-batch")


def _run_subjects(client, todo: list[CohortSubject], out: Path, opts: SegmentTrackOptions,
                  cluster: ClusterSettings, progress: CohortProgress, order: list[str],
                  failures: dict[str, dict]) -> None:
    """Submit every subject of ``todo``, record each as it finishes (``failures.json`` and the
    cohort table), forward the subjects' progress; on a cancel, stop them cleanly."""
    from distributed import wait

    from nimosef_engine.pipeline import batch_worker

    batch_id = uuid.uuid4().hex[:12]
    topic = f"nimosef-batch-{batch_id}"
    events: queue.SimpleQueue = queue.SimpleQueue()
    client.subscribe_topic(topic, lambda event: events.put(event[1]))
    workers = client.scheduler_info().get("workers", {}).values()
    one_each = any(batch_worker.RESOURCE in (w.get("resources") or {}) for w in workers)
    resources = {batch_worker.RESOURCE: 1} if one_each else None
    futures = {client.submit(batch_worker.run_subject, s, str(out / SUBJECTS / s.subject),
                             opts, topic, batch_id, key=f"nimosef-{s.subject}-{batch_id}",
                             pure=False, retries=cluster.retries, resources=resources): s
               for s in todo}
    pending = set(futures)

    def collect() -> None:
        while True:
            try:
                progress.event(events.get_nowait())
            except queue.Empty:
                break
        for f in [f for f in pending if f.done()]:
            pending.discard(f)
            _record(f, futures[f], out, failures, progress, order)

    try:
        while pending:
            with contextlib.suppress(TimeoutError):
                wait(list(pending), timeout=POLL_S, return_when="FIRST_COMPLETED")
            collect()
            progress.reporter.check_cancel()
    except NimosefCancelled:
        try:  # running subjects stop at their next check; queued ones return at once
            client.run(batch_worker.cancel_batch, batch_id, on_error="ignore")
        except Exception as exc:  # a worker that cannot be reached: its subjects are dropped
            log.warning("could not reach every worker to cancel: %s", exc)
        with contextlib.suppress(TimeoutError):
            wait(list(pending), timeout=CANCEL_WAIT_S)
        progress.reporter = ProgressReporter()  # the cancelled one would raise again
        collect()
        client.cancel(list(pending))
        write_cohort_table(out, order)
        done = sum(is_done(out, s) for s in order)
        raise NimosefCancelled(f"cancelled; {done} of {len(order)} subjects are done and "
                               f"kept, the cohort table lists them ({out / COHORT_CSV})") \
            from None
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(topic)


def _record(future, subject: CohortSubject, out: Path, failures: dict[str, dict],
            progress: CohortProgress, order: list[str]) -> None:
    """Record a finished task: a done subject leaves ``failures.json``, a failed one enters
    it with its one-line error (a bad input's message, or ``Type: message`` of an exception
    that outlived its retries, a worker that died too often included); then the cohort table
    is rebuilt."""
    from nimosef_engine.pipeline.batch_worker import one_line

    name = subject.subject
    if future.status == "cancelled":
        return
    if future.status == "error":
        exc = future.exception()
        result = {"status": "failed", "error": one_line(f"{type(exc).__name__}: {exc}")}
    else:
        result = future.result()
    status = result.get("status")
    if status == "cancelled":
        progress.running.pop(name, None)
        return
    if status == "done":
        if failures.pop(name, None) is not None:
            write_failures(out, failures)
        message = f"done in {result.get('runtime_s')} s"
    else:
        attempts = int(failures.get(name, {}).get("attempts", 0)) + 1
        failures[name] = {"error": result.get("error", "unknown error"), "attempts": attempts,
                          "inputs": [str(p) for p in subject.inputs],
                          "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_failures(out, failures)
        message = f"failed: {failures[name]['error']}"
        log.debug("%s failed: %s", name, failures[name]["error"])
    write_cohort_table(out, order)
    progress.finish(name, message)
