"""``grade``: prepare the course directory, grade every submission in workers, merge, report.

Only this (parent) process writes the real gradebook and the journal, one finished submission
at a time, so parallel grading needs no concurrent SQLite writers. The journal is append-only
and fsync'ed after each merge: kill -9 loses nothing that was merged, and a re-run skips what
the journal holds (same submission content, same course source) instead of duplicating it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import nbformat

from . import course, executors, intake, late, standing, submissions, worker
from .execute import Limits
from .feedback import FLAG_NOTE
from .results import Item, Journal, Result, Status

__all__ = ["Limits", "grade_class"]
SECRET_VARIABLE = "PPO_LAB_COURSE_SECRET"


def grade_class(submitted: Path, out: Path, *, source: Path = course.SOURCE, assignment_ids: list[str] | None = None,
                jobs: int = 1, limits: Limits = Limits(), executor: executors.Executor | None = None,
                students: list[str] | None = None, allow_partial: bool = False,
                deadlines: Path | None = None) -> list[Result]:
    """Grade ``submitted`` into the course ``out``. ``students``: regrade only these (even when the
    journal holds them); everyone else's grades, notebooks and feedback are left as they are."""
    out, source, submitted = out.resolve(), source.resolve(), submitted.resolve()
    known = course.assignments(source)
    assignment_ids = assignment_ids or known
    unknown = set(assignment_ids) - set(known)
    if unknown:
        raise course.CourseError(f"no source notebooks for {sorted(unknown)} in {source}")
    _refuse_overlap(submitted, out)
    found = intake.scan(submitted, known, assignment_ids)
    course.log.info(f"found in {submitted}:\n{found.table()}")
    for warning in found.warnings:
        course.log.warning(f"warning: {warning}")
    found.check(allow_partial)
    for error in found.errors:  # only with --allow-partial
        course.log.warning(f"skipped: {error}")
    chosen = students or found.students
    absent = sorted(set(chosen) - set(found.students))
    if absent:
        raise intake.IntakeError(f"--student {', '.join(absent)}: no such student folder in {submitted}")
    if deadlines:
        late.load(deadlines)  # a wrong file stops the run before anything is written

    # Intake succeeded: from here on --out is written.
    state = out / ".autograde"
    state.mkdir(parents=True, exist_ok=True)
    if deadlines:
        shutil.copyfile(deadlines, out / late.FILE)
    source_hashes = {a: _prepare_assignment(out, source, a) for a in assignment_ids}
    _write_course_config(out)
    shutil.rmtree(state / "unpacked", ignore_errors=True)
    (state / "unpacked").mkdir()
    root = found.materialize(state / "unpacked")
    journal = Journal(state / "journal.jsonl")
    secret = _secret(state)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=_jobs_base()))
    todo = []
    for student in chosen:
        for assignment in assignment_ids:
            folder = root / student / assignment
            fingerprint = submissions.fingerprint(folder) + source_hashes[assignment]
            if students or not journal.done(student, assignment, fingerprint):
                todo.append((fingerprint, worker.Job(student, assignment, folder, out, scratch,
                                                     worker.hidden_seed(secret, student, assignment), limits)))
    try:
        _run(todo, jobs, out, journal, executor)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _keep_exchange_files(root, out, chosen, assignment_ids)
    results = standing.refresh(out)
    for warning in sorted({w for r in results for w in r.warnings}):  # once per run, not per submission
        course.log.warning(f"warning: the sandbox could not enforce a limit: {warning}")
    this_run = [r for r in results if r.student in chosen and r.assignment in assignment_ids]
    course.log.info(summary(this_run, {(job.student, job.assignment) for _, job in todo}))
    return results


def summary(results: list[Result], graded_now: set[tuple[str, str]]) -> str:
    """The run's last line: what was graded now, taken from the journal, missing, flagged."""
    missing = sum(r.status == Status.MISSING for r in results)
    graded = sum(r.status != Status.MISSING and (r.student, r.assignment) in graded_now for r in results)
    flagged = sum(bool(_flag_reasons(r)) for r in results)
    return (f"{graded} graded, {len(results) - graded - missing} resumed from the journal, {missing} missing, "
            f"{flagged} flagged for review ({len(results)} submissions: students x chapters)")


def _refuse_overlap(submitted: Path, out: Path) -> None:
    """Submissions are evidence: never write where they are read from (nbgrader's own
    ``course/submitted`` graded into ``course`` would overwrite the originals)."""
    if submitted.is_dir() and (submitted == out or submitted.is_relative_to(out) or out.is_relative_to(submitted)):
        raise course.CourseError(
            f"refusing to grade {submitted} into {out}: the grader writes {out}/submitted, autograded and feedback, "
            f"and must not write where the submissions are read from. Choose an --out outside {submitted} "
            f"(e.g. --out {submitted.parent / 'grading'} for nbgrader's course/submitted); formgrader opens that folder.")


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
    db_url = course.load_config(out).CourseDirectory.db_url
    submitted = scratch is not None and any((scratch / "submitted" / student / assignment).glob("*.ipynb"))
    if result.status == Status.MISSING and scratch is not None and not submitted:
        # Not a submission: formgrader would list it as one "needing autograding". Only the
        # student and the feedback page that says what was missing.
        with Gradebook(db_url) as gb:
            gb.update_or_create_student(student)
        target = out / "feedback" / student / assignment
        shutil.rmtree(target, ignore_errors=True)
        if (scratch / "feedback" / student / assignment).is_dir():
            shutil.copytree(scratch / "feedback" / student / assignment, target)
        shutil.rmtree(scratch.parent, ignore_errors=True)
        return
    for step in ("submitted", "autograded", "feedback"):
        target = out / step / student / assignment
        shutil.rmtree(target, ignore_errors=True)
        if scratch and (scratch / step / student / assignment).is_dir():
            shutil.copytree(scratch / step / student / assignment, target)
    with Gradebook(db_url) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(assignment, student)
    for path in sorted((out / "autograded" / student / assignment).glob("*.ipynb")):
        resources = {"nbgrader": {"assignment": assignment, "notebook": path.stem, "student": student,
                                  "db_url": db_url}}
        SaveAutoGrades().preprocess(nbformat.read(path, as_version=4), resources)
    worker.apply_scores(db_url, assignment, student, result.items)
    _flag(db_url, result)
    if scratch:
        shutil.rmtree(scratch.parent, ignore_errors=True)


EXCHANGE_FILES = ("timestamp.txt", "submission_secret.txt")  # what nbgrader's collect leaves beside the notebook


def _keep_exchange_files(root: Path, out: Path, students: list[str], assignment_ids: list[str]) -> None:
    """nbgrader's ``release_feedback`` finds a student's feedback through the submission's
    ``submission_secret.txt`` (and dates it by ``timestamp.txt``): keep both beside the graded
    submission, so the feedback made now and regenerated later reaches the student. Done for every
    submission of the run, resumed ones too (a run killed after a merge left them out)."""
    for student in students:
        for assignment in assignment_ids:
            for name in EXCHANGE_FILES:
                if (root / student / assignment / name).is_file():
                    for step in ("submitted", "autograded", "feedback"):
                        if (out / step / student / assignment).is_dir():
                            shutil.copyfile(root / student / assignment / name, out / step / student / assignment / name)


def _flag_reasons(result: Result) -> list[str]:
    """Why a human should look at this submission: runtime evidence, or the text scan's lines."""
    reasons = [result.reason] if result.status == Status.TAMPERED else []
    reasons += [f"runtime flag {flag}" for flag in result.flags if flag != "grader-error"]
    return reasons + [f"{line['cell']} line {line['line']}: {line['why']}" for line in result.review]


def _flag(db_url: str, result: Result) -> None:
    """nbgrader's ``flagged`` mark and a note for the graders on the submission's notebooks, so
    formgrader shows what report.html does. A flag is never removed here: it may be a grader's."""
    from nbgrader.api import Gradebook, MissingEntry

    reasons = _flag_reasons(result)
    if not reasons:
        return
    with Gradebook(db_url) as gb:
        try:
            submission = gb.find_submission(result.assignment, result.student)
        except MissingEntry:
            return
        for notebook in submission.notebooks:
            notebook.flagged = True
            comments = sorted(notebook.comments, key=lambda c: c.cell.name)
            cells = {line["cell"] for line in result.review}
            target = next((c for c in comments if c.cell.name in cells), comments[0] if comments else None)
            if target is not None:  # the note goes where a grader reads: the comment box of that answer
                target.auto_comment = FLAG_NOTE + "flagged for review: " + "; ".join(reasons)
        gb.db.commit()


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


HEADER = "# Written by `python -m autograde grade`"  # ours; one without ROUTING is an old version's
ROUTING = ("import os  # noqa: E402\nfrom autograde.formgrader import route  # noqa: E402\n"
           "route(c, os.path.dirname(os.path.abspath(__file__)))  # noqa: F821\n")


def _write_course_config(out: Path) -> None:
    """So formgrader (or `nbgrader ...`) started in ``out`` grades this gradebook, with its buttons
    routed through the grader. A copy of the course settings, not a path back to this checkout:
    the course keeps working when the checkout moves. Once written, it is the instructor's to edit
    (course id, exchange); an instructor's own file is left as it is."""
    config = out / "nbgrader_config.py"
    text = config.read_text() if config.exists() else ""
    if not text or (text.startswith(HEADER) and ROUTING not in text):
        config.write_text(f"{HEADER}: the ppo-lab course settings (a copy of the\n"
                          "# repository's nbgrader_config.py), rooted in this folder; formgrader's Autograde and\n"
                          "# Generate Feedback buttons go through the grader (autograde/formgrader.py).\n\n" +
                          course.COURSE_CONFIG.read_text() + "\n" + ROUTING)
    elif "autograde.formgrader" not in text:
        course.log.warning(f"warning: {config} is your own: formgrader's Autograde and Generate Feedback buttons run "
                           f"plain nbgrader there (hidden tests in the feedback). Add these lines to it:\n{ROUTING}")


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
