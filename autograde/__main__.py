"""``python -m autograde release|grade ...`` (see ``--help``).

Exit code != 0 only when the grader itself cannot run; a bad submission is a status in
grades.csv, never a failed command.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import course


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograde", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    release = commands.add_parser("release", help="regenerate notebooks/ from solutions/ (nbgrader generate_assignment)")
    release.add_argument("assignments", nargs="*", help="chapter folders, e.g. 01_vanilla_pg (default: all)")
    release.add_argument("--source", type=Path, default=course.SOURCE, help="source notebooks (default: %(default)s)")
    release.add_argument("--release-dir", type=Path, default=course.RELEASE, help="output (default: %(default)s)")

    grade = commands.add_parser("grade", help="autograde a class into an nbgrader course directory")
    grade.add_argument("submissions", type=Path,
                       help="nbgrader's submitted layout <student_id>/<assignment>/<notebook>.ipynb, or a .zip of it")
    grade.add_argument("--out", type=Path, required=True,
                       help="course directory to write (gradebook.db, autograded/, feedback/, grades.csv, report.html)")
    grade.add_argument("--assignment", action="append", help="grade only this assignment (repeatable)")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default: %(default)s)")
    grade.add_argument("--timeout", type=float, default=600, help="seconds per notebook, all cells (default: %(default)s)")
    grade.add_argument("--cell-timeout", type=int, help="seconds per cell (default: Execute.timeout in nbgrader_config.py)")
    grade.add_argument("--memory", type=int, default=2048, help="MB of memory per submission (default: %(default)s)")
    grade.add_argument("--source", type=Path, default=course.SOURCE,
                       help="nbgrader source notebooks (default: %(default)s)")
    grade.add_argument("--executor", choices=["local", "dask"],
                       help="where submissions are graded: local processes (--jobs of them) or a Dask cluster "
                            "(default: dask with --scheduler, else local)")
    grade.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of a running Dask scheduler, e.g. tcp://10.0.0.1:8786 (--executor dask; "
                            "without it, dask starts a local cluster of --jobs workers)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        if args.command == "release":
            for path in course.release(args.release_dir, args.source, args.assignments or None):
                print(f"released {path}")
            return 0
        kind = args.executor or ("dask" if args.scheduler else "local")
        if kind == "local" and args.scheduler:
            parser.error("--scheduler needs --executor dask")
        from . import executors
        from .grading import Limits, grade_class  # heavier imports only when grading

        grade_class(args.submissions, args.out, source=args.source, assignment_ids=args.assignment,
                    jobs=args.jobs, limits=Limits(timeout=args.timeout, cell_timeout=args.cell_timeout, memory_mb=args.memory),
                    executor=executors.create(kind, jobs=args.jobs, scheduler=args.scheduler))
        return 0
    except course.CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
