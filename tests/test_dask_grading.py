"""``--executor dask``: the same sandboxed grader on a Dask cluster, each submission recorded exactly once.

A scheduler and two workers run on loopback as separate processes (as on real machines); one
worker is SIGKILLed while it grades a submission, and the grade sheet must still equal the local
executor's: every submission once, none lost, none twice. Also: the grader killed and re-run on
the cluster resumes from its journal, and a result delivered twice is recorded once.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from autograde import executors, grading
from fixtures import students as make
from test_autograde import (ASSIGNMENT, GOOD_PG, SECRET, WRONG_PG, grade_command, notebooks,  # noqa: F401
                            run_grader, write_class)

SLEEP = "\nimport time\ntime.sleep(4)"  # a slow student: a task is surely running when its worker is killed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(processes: list[psutil.Process]) -> None:
    """SIGKILL each process (by PID) that is still alive, then reap it."""
    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes on loopback: (address, client, {nanny pid: Popen})."""
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    cwd = tmp_path_factory.mktemp("dask")
    started: list[subprocess.Popen] = []
    client = None
    try:
        started.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--dashboard-address", "127.0.0.1:0"], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(2):
            started.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1", "--nthreads", "1",
                 "--no-dashboard"], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        client = Client(address, timeout=60)
        client.wait_for_workers(2, timeout=120)
        yield address, client, {p.pid: p for p in started[1:]}
    finally:
        if client is not None:
            client.close()
        # each worker process is a child of its nanny (the process started here): kill both, by PID
        family = []
        for popen in started:
            try:
                family += [*psutil.Process(popen.pid).children(recursive=True), psutil.Process(popen.pid)]
            except psutil.NoSuchProcess:
                pass
        _stop(family)
        for popen in started:
            popen.wait(timeout=30)


def _rows(out: Path) -> list[dict]:
    """grades.csv without timing columns (none today), one row per student and item, sorted."""
    with open(out / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    return sorted(({k: v for k, v in row.items() if not any(t in k for t in ("time", "duration", "seconds"))}
                   for row in rows), key=lambda r: (r["student_id"], r["item"]))


def _journal(out: Path) -> list[dict]:
    path = out / ".autograde" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for_journal(grader: subprocess.Popen, out: Path, lines: int, deadline: float = 300) -> None:
    end = time.monotonic() + deadline
    while len(_journal(out)) < lines:
        assert grader.poll() is None, "the grader ended before journaling anyone"
        assert time.monotonic() < end, "no result in time"
        time.sleep(0.1)


def _executing(client, worker: str) -> list[str]:
    """Keys of the tasks running right now on ``worker`` (not just queued there)."""
    def running(dask_worker):
        return [str(ts.key) for ts in dask_worker.state.executing]

    return client.run(running, workers=[worker]).get(worker, [])


def _slow_class(notebooks_) -> dict:
    release, good = notebooks_
    return {
        "a_correct": make.with_cell(good, "solution_pg_loss", GOOD_PG + SLEEP),
        "b_wrong": make.with_cell(good, "solution_pg_loss", WRONG_PG + SLEEP),
        "c_correct": make.with_cell(good, "solution_pg_loss", GOOD_PG + SLEEP),
        "d_untouched": release,
        "e_wrong": make.with_cell(good, "solution_pg_loss", WRONG_PG + SLEEP),
        "f_correct": make.with_cell(good, "solution_pg_loss", GOOD_PG + SLEEP),
    }


@pytest.mark.slow
def test_worker_killed_mid_batch_every_submission_graded_exactly_once(cluster, notebooks, tmp_path):  # noqa: F811
    address, client, nannies = cluster
    students = _slow_class(notebooks)
    submitted = write_class(tmp_path / "submitted", students)
    out = tmp_path / "dask"
    env = {**os.environ, "PPO_LAB_COURSE_SECRET": SECRET}
    grader = subprocess.Popen(grade_command(submitted, out, "--executor", "dask", "--scheduler", address),
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        _wait_for_journal(grader, out, 1)  # the first result is in: the batch is under way
        # the victim: a worker that is executing a submission right now
        victim, running, deadline = None, [], time.monotonic() + 60
        while not running:
            assert time.monotonic() < deadline, "no worker was executing a task"
            for worker in client.nthreads():
                running = _executing(client, worker)
                if running:
                    victim = worker
                    break
            else:
                time.sleep(0.05)
        worker_pid = client.run(os.getpid, workers=[victim])[victim]
        nanny_pid = psutil.Process(worker_pid).ppid()
        assert nanny_pid in nannies
        journaled_before = {e["student"] for e in _journal(out)}
        os.kill(nanny_pid, signal.SIGKILL)  # the machine is gone: its nanny and its worker process
        os.kill(worker_pid, signal.SIGKILL)
        nannies[nanny_pid].wait(timeout=30)
        lost = [s for s in students if any(f"-{s}-" in key for key in running)]
        assert lost and not set(lost) & journaled_before, (running, journaled_before)

        _, stderr = grader.communicate(timeout=600)
        assert grader.returncode == 0, stderr[-3000:]
    finally:
        if grader.poll() is None:
            os.kill(grader.pid, signal.SIGKILL)
            grader.wait()
    assert len(client.nthreads()) == 1  # the grading finished on the survivor

    entries = _journal(out)
    assert sorted(e["student"] for e in entries) == sorted(students)  # each once: no loss, no duplicate
    assert all(e["status"] == "ok" and not e.get("retry") for e in entries), entries
    run_grader(submitted, tmp_path / "local", "--jobs", "2")  # the local executor, same class
    assert _rows(out) == _rows(tmp_path / "local")
    scores = {r["student_id"]: float(r["score"]) for r in _rows(out) if r["item"] == "test_pg_loss"}
    assert scores == {"a_correct": 2, "b_wrong": 0, "c_correct": 2, "d_untouched": 0, "e_wrong": 0, "f_correct": 2}


@pytest.mark.slow
def test_grader_killed_on_a_local_dask_cluster_resumes_on_a_remote_one(cluster, notebooks, tmp_path):  # noqa: F811
    """``--executor dask`` without --scheduler: a local cluster whose processes die with the grader;
    the same command on the loopback cluster resumes from the journal, and once more changes nothing."""
    address, _, _ = cluster
    release, good = notebooks
    submitted = write_class(tmp_path / "submitted", {"a_correct": make.with_cell(good, "solution_pg_loss", GOOD_PG + SLEEP),
                                                     "b_wrong": make.with_cell(good, "solution_pg_loss", WRONG_PG),
                                                     "c_untouched": release})
    out = tmp_path / "out"
    env = {**os.environ, "PPO_LAB_COURSE_SECRET": SECRET}
    grader = subprocess.Popen(grade_command(submitted, out, "--executor", "dask", "--jobs", "1"), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    family = []
    try:
        _wait_for_journal(grader, out, 1)
        family = psutil.Process(grader.pid).children(recursive=True)
        assert family, "the local cluster's worker processes"
        os.kill(grader.pid, signal.SIGKILL)
        grader.wait()
        gone, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, f"outlived the grader: {[p.pid for p in alive]}"
    finally:
        if grader.poll() is None:
            os.kill(grader.pid, signal.SIGKILL)
            grader.wait()
        _stop([p for p in family if p.is_running()])
    assert len(_journal(out)) < 3

    run_grader(submitted, out, "--scheduler", address)
    entries = _journal(out)
    assert len(entries) == 3 and len({(e["student"], e["assignment"]) for e in entries}) == 3
    scores = {r["student_id"]: float(r["score"]) for r in _rows(out) if r["item"] == "test_pg_loss"}
    assert scores == {"a_correct": 2, "b_wrong": 0, "c_untouched": 0}
    before = (out / "grades.csv").read_text()
    run_grader(submitted, out, "--scheduler", address)
    assert (out / "grades.csv").read_text() == before and len(_journal(out)) == 3


def test_a_result_delivered_twice_is_recorded_once(tmp_path, monkeypatch):
    """A task re-run after its worker was lost may deliver its result twice: one merge, one journal line."""
    from autograde.results import Result

    merged = []
    monkeypatch.setattr(grading, "_merge", lambda result, out: merged.append(result.student))

    def result(student):
        return Result(student, ASSIGNMENT)

    jobs = {s: SimpleNamespace(student=s, assignment=ASSIGNMENT) for s in ("ann", "bob")}

    class Twice:
        name = "twice"

        def run(self, todo):
            for fingerprint, job in todo:
                yield fingerprint, job, result(job.student)
            yield "fp-ann", jobs["ann"], result("ann")  # the re-run's result arrives too

    journal = grading.Journal(tmp_path / "journal.jsonl")
    grading._run([("fp-ann", jobs["ann"]), ("fp-bob", jobs["bob"])], 1, tmp_path, journal, Twice())
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert merged == ["ann", "bob"]
    assert [json.loads(line)["student"] for line in lines] == ["ann", "bob"]


def test_a_worker_without_the_shared_filesystem_fails_the_task(tmp_path):
    """Not an empty grade: a grader error, graded again by the next run."""
    job = SimpleNamespace(student="ann", assignment=ASSIGNMENT, out=tmp_path / "not-shared", scratch=tmp_path)
    with pytest.raises(FileNotFoundError, match="shared"):
        executors.grade_on_worker(job)


def test_executor_choice():
    assert isinstance(executors.create("local", jobs=2), executors.LocalExecutor)
    dask = executors.create("dask", jobs=3)
    assert isinstance(dask, executors.DaskExecutor) and dask.scheduler is None and dask.workers == 3
    assert executors.create("dask", scheduler="tcp://127.0.0.1:8786").scheduler == "tcp://127.0.0.1:8786"
    with pytest.raises(ValueError):
        executors.create("local", scheduler="tcp://127.0.0.1:8786")
    usage = subprocess.run([sys.executable, "-m", "autograde", "grade", "x", "--out", "y", "--executor", "local",
                            "--scheduler", "tcp://127.0.0.1:1"], capture_output=True, text=True)
    assert usage.returncode == 2 and "--scheduler needs --executor dask" in usage.stderr
