"""``python -m autograde release|grade|feedback|export ...`` (see ``--help``).

Exit code != 0 only when the grader itself cannot run or the submissions cannot be taken in (a
broken zip, a wrong layout); a bad submission is a status in grades.csv, never a failed command.
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
    grade.add_argument("--student", action="append", metavar="ID",
                       help="regrade only this student (repeatable), even if graded before; the others are left as they are")
    grade.add_argument("--allow-partial", action="store_true",
                       help="grade what is in the expected layout and skip the rest (default: stop, naming it)")
    grade.add_argument("--deadlines", type=Path, metavar="FILE",
                       help="due dates, extensions and the late penalty (TOML, see docs/autograder.md); "
                            "kept in the course as deadlines.toml")

    feedback = commands.add_parser("feedback", help="regenerate every student's feedback from the gradebook "
                                                    "(after manual grading in formgrader)")
    feedback.add_argument("out", type=Path, help="the course directory that `grade` wrote")
    feedback.add_argument("--student", action="append", metavar="ID", help="only this student (repeatable)")

    export = commands.add_parser("export", help="write the gradebook as an LMS import file")
    export.add_argument("out", type=Path, help="the course directory that `grade` wrote")
    export.add_argument("--format", choices=["canvas", "csv"], default="canvas",
                        help="canvas: one row per student, one column per chapter (Canvas gradebook import); "
                             "csv: one row per item with statuses and flags (default: %(default)s)")
    export.add_argument("--roster", type=Path, metavar="FILE",
                        help="CSV mapping student_id to name, canvas_id, sis_user_id, sis_login_id, section "
                             "(or Canvas's own gradebook export)")
    export.add_argument("--output", type=Path, metavar="FILE", help="where to write (default: OUT/export-FORMAT.csv)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        if args.command == "release":
            for path in course.release(args.release_dir, args.source, args.assignments or None):
                print(f"released {path}")
            return 0
        if args.command == "feedback":
            from . import feedback, standing

            out = args.out.resolve()
            standing.refresh(out)  # late penalties and grades.csv from the gradebook first
            pages = feedback.regenerate(out, set(args.student) if args.student else None)
            print(f"regenerated {len(pages)} feedback pages in {out / 'feedback'}")
            return 0
        if args.command == "export":
            from .export import export as write_export

            path, warnings = write_export(args.out.resolve(), args.format, args.roster, args.output)
            for warning in warnings:
                print(f"warning: {warning}", file=sys.stderr)
            print(f"wrote {path}")
            return 0
        kind = args.executor or ("dask" if args.scheduler else "local")
        if kind == "local" and args.scheduler:
            parser.error("--scheduler needs --executor dask")
        from . import executors
        from .grading import Limits, grade_class  # heavier imports only when grading

        grade_class(args.submissions, args.out, source=args.source, assignment_ids=args.assignment,
                    jobs=args.jobs, limits=Limits(timeout=args.timeout, cell_timeout=args.cell_timeout, memory_mb=args.memory),
                    executor=executors.create(kind, jobs=args.jobs, scheduler=args.scheduler),
                    students=args.student, allow_partial=args.allow_partial, deadlines=args.deadlines)
        return 0
    except course.CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
