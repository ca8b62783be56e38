"""Grading a class: ``python -m autograde grade --jobs 2`` vs plain sequential ``nbgrader autograde``.

    python -m bench.grading [--chapter 00_fixture] [--source tests/fixtures/course/solutions]
                            [--students 40] [--jobs 2] [--overhead]

Builds a class of generated submissions of one chapter (every other student answers it as the
source notebook does, the others hand in the untouched release), then, in one run so both see
the same machine load:

1. plain nbgrader: ``nbgrader autograde CHAPTER`` over the whole class, one process;
2. the course's grader: ``python -m autograde grade ... --jobs N`` (sandbox, verdicts, feedback,
   report included), from a fresh output directory (course preparation included).

Prints both wall times and the ratio (target >= 1.7 on 2 cores). With ``--overhead`` it also
times the grader with ``--jobs 1`` and the bare notebook executions (nbclient, one kernel per
notebook), and prints the grader's per-submission overhead beyond executing the notebook.
"""
from __future__ import annotations

import argparse
import shutil
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapter", default="00_fixture")
    parser.add_argument("--source", type=Path, default=ROOT / "tests" / "fixtures" / "course" / "solutions")
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--overhead", action="store_true", help="also time --jobs 1 and bare execution")
    args = parser.parse_args(argv)
    source = args.source.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as scratch:
        into = Path(scratch)
        submitted = build_class(args.chapter, source, args.students, into)
        print(f"{args.students} submissions of {args.chapter} (half correct, half the untouched release)")
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
