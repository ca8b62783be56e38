"""``grade``: prepare the course directory, grade every submission in workers, merge, report.

Only this (parent) process writes the real gradebook and the journal, one finished submission
at a time, so parallel grading needs no concurrent SQLite writers. The journal is append-only
and fsync'ed after each merge: kill -9 loses nothing that was merged, and a re-run skips what
the journal holds (same submission content, same course source) instead of duplicating it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import nbformat

from . import course, executors, report, submissions, worker
from .execute import Limits
from .results import Item, Result, Status

__all__ = ["Limits", "grade_class"]
SECRET_VARIABLE = "PPO_LAB_COURSE_SECRET"


class Journal:
    """One JSON line per graded (student, assignment): the result and the fingerprint of what was
    graded (submission content + course source); the last line for a pair wins."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[tuple[str, str], tuple[Result, str]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    result = Result.from_dict(entry)
                except (ValueError, TypeError, KeyError):
                    continue  # the line being written when the grader was killed
                self.entries[(result.student, result.assignment)] = (result, entry["fingerprint"])

    def done(self, student: str, assignment: str, fingerprint: str) -> bool:
        result, done_fingerprint = self.entries.get((student, assignment), (None, None))
        return result is not None and done_fingerprint == fingerprint and not result.retry

    def append(self, result: Result, fingerprint: str) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({**result.to_dict(), "fingerprint": fingerprint}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries[(result.student, result.assignment)] = (result, fingerprint)

    def results(self) -> list[Result]:
        return sorted((result for result, _ in self.entries.values()), key=lambda r: (r.assignment, r.student))


def grade_class(submitted: Path, out: Path, *, source: Path = course.SOURCE, assignment_ids: list[str] | None = None,
                jobs: int = 1, limits: Limits = Limits(), executor: executors.Executor | None = None) -> list[Result]:
    out, source = out.resolve(), source.resolve()
    state = out / ".autograde"
    state.mkdir(parents=True, exist_ok=True)
    if not submitted.exists():
        raise course.CourseError(f"{submitted} does not exist")
    known = course.assignments(source)
    assignment_ids = assignment_ids or known
    unknown = set(assignment_ids) - set(known)
    if unknown:
        raise course.CourseError(f"no source notebooks for {sorted(unknown)} in {source}")
    source_hashes = {a: _prepare_assignment(out, source, a) for a in assignment_ids}
    _write_course_config(out)

    shutil.rmtree(state / "unpacked", ignore_errors=True)
    (state / "unpacked").mkdir()
    try:
        root = submissions.unpack(submitted.resolve(), state / "unpacked")
    except (OSError, ValueError) as error:  # a broken zip: nothing can be graded
        raise course.CourseError(f"cannot read {submitted}: {error}") from None
    journal = Journal(state / "journal.jsonl")
    secret = _secret(state)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=_jobs_base()))
    todo = []
    for student in submissions.students(root):
        for assignment in assignment_ids:
            folder = root / student / assignment
            fingerprint = submissions.fingerprint(folder) + source_hashes[assignment]
            if not journal.done(student, assignment, fingerprint):
                todo.append((fingerprint, worker.Job(student, assignment, folder, out, scratch,
                                                     worker.hidden_seed(secret, student, assignment), limits)))
    try:
        _run(todo, jobs, out, journal, executor)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results = journal.results()
    report.write(out, results)
    for warning in sorted({w for r in results for w in r.warnings}):  # once per run, not per submission
        course.log.warning(f"warning: the sandbox could not enforce a limit: {warning}")
    return results


def _run(todo: list, jobs: int, out: Path, journal: Journal, executor: executors.Executor | None = None) -> None:
    """Grade ``todo`` (``(fingerprint, job)`` pairs) on ``executor`` (default: a local pool of ``jobs``
    processes) and record each result here, as it arrives: merged into the gradebook, then journaled.

    Exactly once per run: a result for a (student, assignment, fingerprint) already recorded in
    this run is dropped (a task re-run after its worker was lost can deliver a second result)."""
    from tqdm import tqdm

    executor = executor or executors.LocalExecutor(jobs)
    recorded: set[tuple[str, str, str]] = set()
    tqdm.monitor_interval = 0  # no monitor thread in the process the workers are forked from
    with tqdm(total=len(todo), desc="grading", unit="submission", disable=not todo) as bar, \
            contextlib.closing(executor.run(todo)) as outcomes:
        for fingerprint, job, outcome in outcomes:
            key = (job.student, job.assignment, fingerprint)
            if key in recorded:  # its folder goes with the run's scratch folder
                continue
            result = _grader_failed(job, outcome.reason) if isinstance(outcome, executors.Failed) else outcome
            _merge(result, out)
            journal.append(result, fingerprint)
            recorded.add(key)
            bar.update()


def _grader_failed(job: worker.Job, reason: str) -> Result:
    """A submission the grader could not grade (a grader bug, not the student's): zero, marked for
    a retry so the next run grades it again."""
    items = [Item(cell.metadata.nbgrader["grade_id"], name, 0.0, float(cell.metadata.nbgrader.get("points", 0)), reason)
             for name, nb in worker.masters(job.out, job.assignment).items() for cell in nb.cells
             if cell.metadata.get("nbgrader", {}).get("grade")]
    return Result(job.student, job.assignment, Status.INVALID, f"grader error: {reason}", flags=["grader-error"],
                  items=items, retry=True)


def _merge(result: Result, out: Path) -> None:
    """Copy the submission's nbgrader folders in, and record it in the real gradebook with
    nbgrader's own SaveAutoGrades, then the grader's scores over it."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import SaveAutoGrades

    student, assignment = result.student, result.assignment
    scratch = Path(result.course_dir) if result.course_dir else None
    for step in ("submitted", "autograded", "feedback"):
        target = out / step / student / assignment
        shutil.rmtree(target, ignore_errors=True)
        if scratch and (scratch / step / student / assignment).is_dir():
            shutil.copytree(scratch / step / student / assignment, target)
    db_url = course.load_config(out).CourseDirectory.db_url
    with Gradebook(db_url) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(assignment, student)
    for path in sorted((out / "autograded" / student / assignment).glob("*.ipynb")):
        resources = {"nbgrader": {"assignment": assignment, "notebook": path.stem, "student": student,
                                  "db_url": db_url}}
        SaveAutoGrades().preprocess(nbformat.read(path, as_version=4), resources)
    worker.apply_scores(db_url, assignment, student, result.items)
    if scratch:
        shutil.rmtree(scratch.parent, ignore_errors=True)


def _prepare_assignment(out: Path, source: Path, assignment: str) -> str:
    """Source notebooks into ``out/solutions``, the assignment into the gradebook (nbgrader
    generate_assignment) and into a template gradebook for the workers, once per source version."""
    digest = hashlib.sha256()
    for path in sorted(p for p in (source / assignment).rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    source_hash = digest.hexdigest()[:16]
    stamp = out / ".autograde" / f"source-{assignment}.sha256"
    if stamp.exists() and stamp.read_text() == source_hash:
        return source_hash
    shutil.rmtree(out / "solutions" / assignment, ignore_errors=True)
    shutil.copytree(source / assignment, out / "solutions" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    course.generate(out, [assignment])
    # The workers' template: this gradebook without its students. A copy, not a second
    # generate_assignment: creating a gradebook runs nbgrader's `alembic` command (seconds).
    from nbgrader.api import Gradebook

    template = out / ".autograde" / f"template-{assignment}.db"
    partial = template.with_suffix(".partial")
    shutil.copy(out / "gradebook.db", partial)
    with Gradebook(f"sqlite:///{partial}") as gb:
        for student in list(gb.students):
            gb.remove_student(student.id)
    os.replace(partial, template)
    stamp.write_text(source_hash)
    return source_hash


def _write_course_config(out: Path) -> None:
    """So `nbgrader formgrader` (or jupyter lab) started in ``out`` grades this gradebook.
    An instructor's own nbgrader_config.py there is left as it is."""
    config = out / "nbgrader_config.py"
    if not config.exists():
        config.write_text(
            "# Written by `python -m autograde grade`: the ppo-lab course settings, rooted in this folder.\n"
            "import os\n\nc = get_config()  # noqa: F821\n"
            f"load_subconfig({str(course.COURSE_CONFIG)!r})  # noqa: F821\n"
            "c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))\n")


def _secret(state: Path) -> bytes:
    """Key for the hidden-case seeds: $PPO_LAB_COURSE_SECRET, else one kept in the course directory."""
    if os.environ.get(SECRET_VARIABLE):
        return os.environ[SECRET_VARIABLE].encode()
    path = state / "secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def _jobs_base() -> Path:
    base = Path(tempfile.gettempdir()) / "autograde-jobs"
    base.mkdir(mode=0o700, exist_ok=True)
    return base
