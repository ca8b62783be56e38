"""Grading a class: ``python -m autograde grade --jobs 2`` vs plain sequential ``nbgrader autograde``.

    python -m bench.grading [--chapter 00_fixture] [--source tests/fixtures/course/solutions]
                            [--students 40] [--jobs 2] [--overhead]
    python -m bench.grading --executor dask [--workers 1,2] [--students 40] [--repeat 3]

Builds a class of generated submissions of one chapter (every other student answers it as the
source notebook does, the others hand in the untouched release), then, in one run so both see
the same machine load:

1. plain nbgrader: ``nbgrader autograde CHAPTER`` over the whole class, one process;
2. the course's grader: ``python -m autograde grade ... --jobs N`` (sandbox, verdicts, feedback,
   report included), from a fresh output directory (course preparation included).

Prints both wall times and the ratio (target >= 1.7 on 2 cores). With ``--overhead`` it also
times the grader with ``--jobs 1`` and the bare notebook executions (nbclient, one kernel per
notebook), and prints the grader's per-submission overhead beyond executing the notebook.

With ``--executor dask [--workers 1,2]`` it instead measures grading on a Dask cluster on loopback
(a ``dask scheduler`` and N ``dask worker`` processes, started here, one thread each): the grading
throughput for each N next to the local executor with one process, the mean time a task takes on
a worker, the parent's merge + journal time per submission, and the per-submission overhead of
going through Dask. Course preparation (once per run, not per submission) is left out of the
grading times; workers are warmed up (imports) before the clock starts, as forked local workers are.
Each configuration runs ``--repeat`` times, interleaved, and the fastest trial counts: on a shared
machine, other load only ever slows a trial down.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograde import course

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fixtures import students  # noqa: E402  (the tests' submission builder)


def build_class(chapter: str, source: Path, count: int, into: Path) -> Path:
    release_dir = into / "release"
    course.release(release_dir, source, [chapter])
    submitted = into / "submitted"
    for path in sorted((source / chapter).glob("*.ipynb")):
        release = nbformat.read(release_dir / chapter / path.name, as_version=4)
        answered = students.answered(release, nbformat.read(path, as_version=4))
        for n in range(count):
            students.write(submitted, f"student{n:03d}", chapter, answered if n % 2 == 0 else release, path.stem)
    return submitted


def plain_nbgrader(chapter: str, source: Path, submitted: Path, into: Path) -> float:
    """nbgrader's own CLI on an nbgrader course holding the same class; only autograde is timed."""
    root = into / "plain"
    shutil.copytree(source / chapter, root / "solutions" / chapter)
    shutil.copytree(submitted, root / "submitted")
    (root / "nbgrader_config.py").write_text(
        f"c = get_config()\nload_subconfig({str(course.COURSE_CONFIG)!r})\nc.CourseDirectory.root = {str(root)!r}\n")
    nbgrader = [str(Path(sys.executable).with_name("nbgrader"))]
    subprocess.run([*nbgrader, "generate_assignment", chapter, "--force"], cwd=root, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run([*nbgrader, "autograde", chapter, "--force"], cwd=root, check=True, capture_output=True)
    return time.perf_counter() - started


def ours(chapter: str, source: Path, submitted: Path, out: Path, jobs: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autograde", "grade", str(submitted), "--out", str(out), "--source",
                    str(source), "--assignment", chapter, "--jobs", str(jobs)], check=True, capture_output=True)
    return time.perf_counter() - started


def bare_execution(submitted: Path) -> float:
    """The floor: execute every notebook with nbclient, one fresh kernel each, nothing else."""
    from nbclient import NotebookClient

    started = time.perf_counter()
    for path in sorted(submitted.glob("*/*/*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, allow_errors=True, resources={"metadata": {"path": str(path.parent)}},
                       extra_arguments=["--IPKernelApp.log_level=ERROR"]).execute()
    return time.perf_counter() - started


class Timed:
    """An executor wrapper that notes when grading started and when each result arrived."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
        self.started, self.arrivals = 0.0, []

    def run(self, todo):
        self.started, self.arrivals = time.perf_counter(), []
        for outcome in self.inner.run(todo):
            self.arrivals.append(time.perf_counter() - self.started)
            yield outcome


def timed_grading(chapter: str, source: Path, submitted: Path, out: Path, scheduler: str | None) -> dict:
    """grade_class in this process, on the local executor with one process (no scheduler) or on the
    Dask cluster at ``scheduler``: the grading phase (first submission sent to the last result
    recorded) and the parent's merge + journal time per submission."""
    from autograde import grading
    from autograde.executors import DaskExecutor, LocalExecutor

    merges = []
    merge = grading._merge

    def timed_merge(result, out_):
        started = time.perf_counter()
        merge(result, out_)
        merges.append(time.perf_counter() - started)

    timed = Timed(DaskExecutor(scheduler) if scheduler else LocalExecutor(1))
    grading._merge = timed_merge
    try:
        grading.grade_class(submitted, out, source=source, assignment_ids=[chapter], executor=timed)
    finally:
        grading._merge = merge
    return {"n": len(timed.arrivals), "grading": timed.arrivals[-1], "merge": statistics.mean(merges)}


def trial(chapter: str, source: Path, submitted: Path, out: Path, scheduler: str | None) -> dict:
    """timed_grading in a fresh process (the local executor forks its workers from it)."""
    code = ("import json, sys; from pathlib import Path; from bench.grading import timed_grading; "
            "print(json.dumps(timed_grading(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), "
            "sys.argv[5] or None)))")
    done = subprocess.run([sys.executable, "-c", code, chapter, str(source), str(submitted), str(out), scheduler or ""],
                          cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def loopback_cluster(workers: int, cwd: Path):
    """``dask scheduler`` + ``workers`` x ``dask worker --nworkers 1 --nthreads 1`` on 127.0.0.1, as
    separate processes; every one of them (nannies and their worker processes) killed by PID after."""
    import psutil
    from distributed import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"cwd": cwd, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    started = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                 "--port", str(port), "--dashboard-address", "127.0.0.1:0"], **quiet)]
    try:
        started += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
                                      "--nthreads", "1", "--no-dashboard"], **quiet) for _ in range(workers)]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
            from autograde.executors import _warm_up

            client.run(_warm_up)  # imports once per worker, before the clock starts
            yield address, client
    finally:
        family = []
        for popen in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                family += [*psutil.Process(popen.pid).children(recursive=True), psutil.Process(popen.pid)]
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        psutil.wait_procs(family, timeout=30)
        for popen in started:
            popen.wait(timeout=30)


def dask_bench(chapter: str, source: Path, submitted: Path, into: Path, counts: list[int], repeat: int) -> None:
    """Each configuration (local executor with 1 process, Dask with N workers) ``repeat`` times, the
    configurations interleaved so that a change in machine load hits them alike; the fastest trial
    of each is reported (and the median)."""
    from distributed import get_task_stream

    configs = [0, *counts]  # 0: the local executor, one process
    trials: dict[int, list[dict]] = {c: [] for c in configs}
    for round_ in range(repeat):
        for workers in configs[round_ % len(configs):] + configs[:round_ % len(configs)]:
            out = into / f"out-{workers}-{round_}"
            if not workers:
                trials[0].append({**trial(chapter, source, submitted, out, None), "task": None})
                continue
            with loopback_cluster(workers, into) as (address, client):
                with get_task_stream(client=client) as stream:
                    measured = trial(chapter, source, submitted, out, address)
                computes = [s["stop"] - s["start"] for task in stream.data for s in task["startstops"]
                            if s["action"] == "compute"]
            trials[workers].append({**measured, "task": statistics.mean(computes)})
            shutil.rmtree(out, ignore_errors=True)
    best = {c: min(trials[c], key=lambda m: m["grading"]) for c in configs}
    base = best[0]["grading"]
    print(f"{'executor':8} {'workers':>7} {'graded':>6} {'best s':>7} {'median s':>8} {'s/submission':>12} "
          f"{'per min':>7} {'speed-up':>8} {'task s':>6} {'merge s':>7}")
    for workers in configs:
        m = best[workers]
        per = m["grading"] / m["n"]
        task = "" if m["task"] is None else f"{m['task']:6.2f}"
        print(f"{'dask' if workers else 'local':8} {workers or 1:7d} {m['n']:6d} {m['grading']:7.1f} "
              f"{statistics.median(t['grading'] for t in trials[workers]):8.1f} {per:12.2f} {60 / per:7.1f} "
              f"{base / m['grading']:7.2f}x {task:>6} {m['merge']:7.3f}")
    print(f"(best of {repeat} interleaved trials each; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    if 1 in best:
        one = best[1]
        per, task, merge = one["grading"] / one["n"], one["task"], one["merge"]
        print(f"dask overhead per submission, 1 worker: o = {per - task:.2f} s beyond the task itself "
              f"(t = {task:.2f} s); {per - base / best[0]['n']:+.2f} s per submission vs the local executor")
        print(f"10,000 submissions on K machines x c workers: T ~ P + 10000 * max(({task:.2f} + {per - task:.2f}) / (K*c), "
              f"{merge:.3f}) s")
        for k, c in ((1, 2), (10, 4), (50, 4)):
            print(f"  K={k:3d}, c={c}: {10000 * max(per / (k * c), merge) / 3600:6.2f} h")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapter", default="00_fixture")
    parser.add_argument("--source", type=Path, default=ROOT / "tests" / "fixtures" / "course" / "solutions")
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--overhead", action="store_true", help="also time --jobs 1 and bare execution")
    parser.add_argument("--executor", choices=["local", "dask"], default="local",
                        help="dask: throughput on a loopback Dask cluster against the number of workers")
    parser.add_argument("--workers", default="1,2", help="with --executor dask: worker counts (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="with --executor dask: trials per configuration")
    args = parser.parse_args(argv)
    source = args.source.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as scratch:
        into = Path(scratch)
        submitted = build_class(args.chapter, source, args.students, into)
        print(f"{args.students} submissions of {args.chapter} (half correct, half the untouched release)")
        if args.executor == "dask":
            dask_bench(args.chapter, source, submitted, into, [int(n) for n in args.workers.split(",")], args.repeat)
            return
        plain = plain_nbgrader(args.chapter, source, submitted, into)
        print(f"plain nbgrader autograde, sequential: {plain:7.1f} s")
        parallel = ours(args.chapter, source, submitted, into / f"out-jobs{args.jobs}", args.jobs)
        print(f"python -m autograde grade --jobs {args.jobs}:  {parallel:7.1f} s")
        print(f"ratio (plain / ours): {plain / parallel:.2f}x  (target >= 1.7x on 2 cores)")
        if args.overhead:
            sequential = ours(args.chapter, source, submitted, into / "out-jobs1", 1)
            floor = bare_execution(submitted)
            print(f"python -m autograde grade --jobs 1:  {sequential:7.1f} s")
            print(f"bare notebook execution (nbclient):  {floor:7.1f} s")
            print(f"overhead per submission beyond executing it: {(sequential - floor) / args.students:.2f} s "
                  f"(plain nbgrader: {(plain - floor) / args.students:.2f} s)")


if __name__ == "__main__":
    main()
