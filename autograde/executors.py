"""Where the submissions are graded: a local process pool (the default) or a Dask cluster.

Both run the same function, ``worker.grade(job)`` (the sandboxed grader), once per submission, and
hand each result back to the parent process as it arrives; the parent alone merges it into the
gradebook and journals it (``grading._run``). An executor's ``run(todo)`` yields
``(fingerprint, job, outcome)`` for every ``(fingerprint, job)`` of ``todo``, in the order they
finish; ``outcome`` is whatever ``worker.grade`` returned (opaque here), or a :class:`Failed` when
the grader could not grade the submission (a grader error, or its worker kept dying).

``DaskExecutor`` sends each submission to a Dask cluster as one task. A task lost with its worker
(SIGKILL, a machine gone) is re-run elsewhere by the scheduler, up to its ``allowed-failures``;
a task may therefore run more than once, which is harmless: it writes only into its own
throw-away folder and the parent records each (student, assignment, fingerprint) once per run.
The job carries absolute paths (the course directory ``--out``, the unpacked submissions in it,
and the scratch folder under ``$TMPDIR``), so on a real cluster these must be on a filesystem
shared by the grader and every worker, at the same paths (see docs/autograder.md).
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import CancelledError, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Protocol

from . import worker
from .course import CourseError

__all__ = ["DaskExecutor", "Executor", "Failed", "LocalExecutor", "create", "grade_on_worker"]
log = logging.getLogger(__name__)
WORKER_DIED = "the grader's worker process died while grading it"


@dataclass(frozen=True)
class Failed:
    """The grader could not grade this submission (not the student's fault): record it as a
    grader error, to be graded again by the next run."""

    reason: str


class Executor(Protocol):
    name: str

    def run(self, todo: list) -> Iterator[tuple[str, worker.Job, object]]:
        """``(fingerprint, job, worker.grade(job) or Failed)`` for each ``(fingerprint, job)`` of todo."""
        ...


def create(kind: str = "local", *, jobs: int = 1, scheduler: str | None = None) -> Executor:
    """The executor for ``--executor kind`` (``local`` or ``dask``) and ``--scheduler``."""
    if kind == "local":
        if scheduler:
            raise ValueError("--scheduler needs --executor dask")
        return LocalExecutor(jobs)
    if kind == "dask":
        return DaskExecutor(scheduler, workers=jobs)
    raise ValueError(f"unknown executor {kind!r} (local or dask)")


class LocalExecutor:
    """Processes forked from the grader, ``jobs`` at a time. A submission whose worker process
    died (the pool breaks) is retried once in a new pool."""

    name = "local"

    def __init__(self, jobs: int = 1):
        self.jobs = max(1, jobs)

    def run(self, todo: list) -> Iterator[tuple[str, worker.Job, object]]:
        attempts: dict[tuple[str, str], int] = {}
        _warm_up()  # before forking: the workers inherit nbgrader and ppo_lab already imported
        while todo:
            broken = []
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=self.jobs, mp_context=context, initializer=_die_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                futures = {pool.submit(worker.grade, job): (fingerprint, job) for fingerprint, job in todo}
                for future in as_completed(futures):
                    fingerprint, job = futures[future]
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        broken.append((fingerprint, job))
                        continue
                    except Exception as error:  # noqa: BLE001 - one submission, not the batch
                        outcome = Failed(f"{type(error).__name__}: {error}")
                    yield fingerprint, job, outcome
            todo = []
            for fingerprint, job in broken:  # a worker died: retry its submissions once, in a new pool
                key = (job.student, job.assignment)
                attempts[key] = attempts.get(key, 0) + 1
                if attempts[key] < 2:
                    todo.append((fingerprint, job))
                else:
                    yield fingerprint, job, Failed(WORKER_DIED)


class DaskExecutor:
    """One Dask task per submission, on the cluster whose scheduler listens at ``scheduler``
    (``tcp://host:8786``), or, without one, on a local cluster of ``workers`` processes with one
    thread each, started for this run and closed after it.

    Worker loss is the scheduler's business: it re-runs the tasks of a lost worker on another one,
    until a task has been on ``allowed-failures`` + 1 dying workers (then ``KilledWorker``: the
    submission is recorded as a grader error, graded again by the next run). A task cancelled
    under us (the scheduler forgot it, e.g. after a reconnection) is submitted again, under a new
    key, up to ``resubmits`` times.
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, *, workers: int = 1, allowed_failures: int = 3,
                 resubmits: int = 2, connect_timeout: float = 30):
        self.scheduler = scheduler
        self.workers = max(1, workers)
        self.allowed_failures = allowed_failures
        self.resubmits = resubmits
        self.connect_timeout = connect_timeout

    def run(self, todo: list) -> Iterator[tuple[str, worker.Job, object]]:
        if not todo:
            return
        try:
            from distributed import as_completed
        except ImportError as error:
            raise CourseError(f"--executor dask needs the distributed package: {error}") from None
        chatter = logging.getLogger("distributed")  # INFO lines for every connection, start and close
        level = chatter.level
        chatter.setLevel(max(level, logging.WARNING))
        try:
            client, cluster = self._connect()
            try:
                yield from self._grade(client, as_completed, todo)
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        finally:
            chatter.setLevel(level)

    def _grade(self, client, as_completed, todo: list) -> Iterator[tuple[str, worker.Job, object]]:
        run_id = uuid.uuid4().hex[:8]  # keys never collide with another (or a killed) run's
        pending: dict = {}

        def submit(fingerprint: str, job: worker.Job, attempt: int):
            key = f"autograde-{job.assignment}-{job.student}-{fingerprint[:12]}-{run_id}-{attempt}"
            future = client.submit(grade_on_worker, job, pure=False, key=key)
            pending[future.key] = (fingerprint, job, attempt)
            return future

        finished = as_completed([submit(fingerprint, job, 0) for fingerprint, job in todo])
        for future in finished:
            fingerprint, job, attempt = pending.pop(future.key)
            try:
                outcome = future.result()
            except CancelledError:
                if not self._connected(client):  # the scheduler is gone: so is every task of this run
                    raise CourseError(f"lost the Dask scheduler {self.scheduler or 'of the local cluster'}; run the same "
                                      "command again to grade the rest (the journal keeps what was graded)") from None
                if attempt < self.resubmits:
                    log.warning("dask: %s/%s was cancelled, submitting it again", job.student, job.assignment)
                    finished.add(submit(fingerprint, job, attempt + 1))
                    continue
                outcome = Failed(f"{WORKER_DIED} (its Dask task was cancelled {attempt + 1} times)")
            except Exception as error:  # noqa: BLE001 - one submission, not the batch
                outcome = Failed(_describe(error))
            finally:
                future.release()
            yield fingerprint, job, outcome

    def _connected(self, client) -> bool:
        """Whether the client is (again) connected to its scheduler; it retries for a while after a
        lost connection, then closes."""
        deadline = time.monotonic() + self.connect_timeout + 10
        while client.status != "running":
            if client.status in ("closing", "closed") or time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    def _connect(self):
        import dask
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                client = Client(self.scheduler, timeout=self.connect_timeout)
            except (OSError, TimeoutError) as error:
                raise CourseError(f"cannot connect to the Dask scheduler at {self.scheduler}: {error}") from None
            workers = client.nthreads()  # worker address -> threads (scheduler_info() lists only a few)
            log.info("dask: scheduler %s, %d workers", self.scheduler, len(workers))
            if not workers:
                log.warning("dask: no workers yet; the submissions wait until one connects")
            return client, None
        with dask.config.set({"distributed.scheduler.allowed-failures": self.allowed_failures}):
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        log.info("dask: local cluster %s, %d workers", cluster.scheduler_address, self.workers)
        return Client(cluster), cluster


def grade_on_worker(job: worker.Job):
    """``worker.grade(job)`` on a Dask worker, once the shared folders the job names are there: a
    worker without the shared filesystem would otherwise grade against nothing."""
    for folder in (job.out / "solutions" / job.assignment, job.scratch):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not on the Dask worker {socket.gethostname()}: --out and the "
                                    "grader's $TMPDIR must be on a filesystem shared with every worker")
    return worker.grade(job)


def _describe(error: BaseException) -> str:
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        return f"{WORKER_DIED} (every Dask worker that ran it died: {error})"
    return f"{type(error).__name__}: {error}"


def _warm_up() -> None:
    """Import nbgrader and the checks once, before the workers are forked, not once per submission."""
    import nbgrader.converters  # noqa: F401
    import ppo_lab.checks  # noqa: F401


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive a killed grader (kill -9): forked, it would wait for work forever."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
