"""Grade one (student, assignment) in a throw-away nbgrader course; runs in a grader worker process.

The worker is trusted code (nbgrader, the verdicts); only the kernel nbgrader starts runs the
student's code, inside the sandbox. Each submission gets its own course directory and SQLite
gradebook (a copy of the assignment-only template), so parallel workers never write the same
database (jupyter/nbgrader#174). The parent merges the result into the real gradebook.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ppo_lab.checks import protocol

from . import build, course, static, submissions, verdicts
from .execute import Limits, SandboxedExecute
from .feedback import FeedbackHTMLExporter, ShowVerdicts, status_page
from .results import Item, Result, Status

# nbgrader's autograde trips a harmless SQLAlchemy autoflush warning on every new submission.
warnings.filterwarnings("ignore", message=".*not in session.*")

@dataclass(frozen=True)
class Job:
    student: str
    assignment: str
    folder: Path  # <submissions>/<student>/<assignment> (may not exist)
    out: Path  # the real course directory
    scratch: Path  # where the throw-away course and the box go
    hidden_seed: int
    limits: Limits


def hidden_seed(secret: bytes, student: str, assignment: str) -> int:
    """Same student and assignment -> same hidden cases, on every re-grade; unguessable without the secret."""
    digest = hmac.new(secret, f"{student}/{assignment}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def masters(out: Path, assignment: str) -> dict[str, nbformat.NotebookNode]:
    """The course's source notebooks (with solutions and hidden tests), by name."""
    folder = out / "solutions" / assignment
    return {p.stem: nbformat.read(p, as_version=4) for p in sorted(folder.glob("*.ipynb"))}


def checks_of(master: dict[str, nbformat.NotebookNode]) -> dict[str, set[tuple[str, bool]]]:
    """test cell grade_id -> the (check id, hidden) calls of the course's own test cell."""
    return {submissions.grade_id(c): set(verdicts.expected_calls(c.source))
            for nb in master.values() for c in nb.cells if c.cell_type == "code"}


def seeds(calls, hidden_seed: int) -> dict[tuple[str, bool], int]:
    from ppo_lab.checks.registry import visible_seed

    return {(check_id, hidden): hidden_seed if hidden else visible_seed(check_id) for check_id, hidden in calls}


def grade(job: Job) -> Result:
    """Everything the parent needs to record this submission; never raises for a bad submission."""
    work = job.scratch / uuid.uuid4().hex[:12]
    course_dir = work / "course"
    result = Result(job.student, job.assignment, course_dir=str(course_dir))
    master = masters(job.out, job.assignment)
    prepared = submissions.prepare(job.folder, master)
    result.notes = prepared.notes
    (course_dir / "submitted" / job.student / job.assignment).mkdir(parents=True)
    for name, notebook in prepared.notebooks.items():
        nbformat.write(notebook, course_dir / "submitted" / job.student / job.assignment / f"{name}.ipynb")
    if (job.folder / "timestamp.txt").is_file():  # nbgrader's late penalties read it
        shutil.copy(job.folder / "timestamp.txt", course_dir / "submitted" / job.student / job.assignment)
    statuses = [status for status, _ in prepared.problems.values()]
    reasons = [reason for _, reason in prepared.problems.values()]

    allowed = checks_of(master)
    calls_seeds = seeds({call for calls in allowed.values() for call in calls}, job.hidden_seed)
    outcome = {"status": "ok", "reason": "", "records": [], "warnings": []}
    if prepared.notebooks:
        outcome = _autograde(job, course_dir, work / "sandbox", calls_seeds)
        statuses.append(outcome["status"])
        reasons.append(outcome["reason"])
    records, problems = verdicts.read_records(outcome.get("records", []), allowed)
    result.flags = problems
    if problems:
        statuses.append(Status.TAMPERED)
        reasons.append("while it ran, the notebook sent malformed records or changed code that measures answers")
    result.review = [r.as_dict() for name, nb in prepared.notebooks.items() for r in _scan(nb, master[name])]
    result.warnings = outcome.get("warnings", [])
    result.items = _items(master, prepared, outcome, records, calls_seeds)
    result.status = Status.worst(statuses)
    result.reason = "; ".join(r for r in reasons if r)

    if prepared.notebooks and result.status != Status.INVALID:
        db_url = course.load_config(course_dir).CourseDirectory.db_url
        _unanswered_scores(db_url, job.assignment, job.student, result.items)
        apply_scores(db_url, job.assignment, job.student, result.items)
        _feedback(job, course_dir, result.items)
    else:
        status_page(course_dir / "feedback" / job.student / job.assignment / f"{job.assignment}.html",
                    job.student, job.assignment, result.status.value, result.reason)
    shutil.rmtree(work / "sandbox", ignore_errors=True)
    return result


def _items(master, prepared, outcome, records, calls_seeds) -> list[Item]:
    """One item per grade cell of the course's notebooks."""
    items = []
    for name, notebook in master.items():
        graded = name in prepared.notebooks and outcome["status"] != "invalid"
        for cell in notebook.cells:
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("grade"):
                continue
            points = float(meta.get("points", 0))
            if not graded:
                reason = prepared.problems.get(name, ("", outcome["reason"]))[1]
                items.append(Item(meta["grade_id"], name, 0.0, points, reason))
            elif meta.get("solution"):
                items.append(Item(meta["grade_id"], name, None, points, "graded by hand in formgrader"))
            elif cell.cell_type == "code":
                item = verdicts.score_test_cell(meta["grade_id"], name, cell.source, points, records, calls_seeds)
                if item is None:  # a test cell without check(): nbgrader's own score stands
                    continue
                if outcome["status"] != "ok" and item.score == 0:
                    item.message += f" ({outcome['reason']})"
                items.append(item)
    return items


def _scan(notebook, master) -> list[static.Review]:
    locked = {submissions.grade_id(c) for c in master.cells if c.metadata.get("nbgrader", {}).get("locked")}
    student = [(submissions.grade_id(c) or f"cell {index}", c.source) for index, c in enumerate(notebook.cells)
               if c.cell_type == "code" and submissions.grade_id(c) not in locked]
    course_cells = [c.source for c in master.cells if c.cell_type == "code" and submissions.grade_id(c) in locked]
    exercises = {name for c in master.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
                 for name in _defined(c.source)}
    return static.scan(student, course_cells, exercises)


def _defined(source: str) -> set[str]:
    import ast

    try:
        return {n.name for n in ast.parse(static.python_source(source)).body if isinstance(n, ast.FunctionDef)}
    except SyntaxError:
        return set()


def _autograde(job: Job, course_dir: Path, sandbox: Path, calls_seeds: dict) -> dict:
    """nbgrader autograde of the prepared submission, with the kernel in the sandbox."""
    from nbgrader.converters import Autograde
    from ppo_lab.checks.registry import get

    shutil.copy(job.out / ".autograde" / f"template-{job.assignment}.db", course_dir / "gradebook.db")
    (course_dir / "solutions").symlink_to(job.out / "solutions")
    sandbox.mkdir(parents=True)
    for (check_id, hidden), seed in calls_seeds.items():  # the inputs; the grader keeps its own copy
        item = get(check_id)
        protocol.write_cases(sandbox / "grading", check_id, hidden, item.run, item.cases(seed, hidden))
    package = build.build(sandbox.parent / "build", {check_id for check_id, _ in calls_seeds})
    release = job.out / "notebooks" / job.assignment
    shutil.copytree(release, sandbox / "work", ignore=shutil.ignore_patterns("*.ipynb"))

    config = course.load_config(course_dir)
    config.Autograde.autograde_preprocessors = [
        SandboxedExecute if step.__name__ == "Execute" else step
        for step in Autograde.class_traits()["autograde_preprocessors"].default()]
    outcome_file = sandbox.parent / "outcome.json"
    config.SandboxedExecute.box_root = str(sandbox)
    config.SandboxedExecute.build = str(package)
    config.SandboxedExecute.notebook_timeout = job.limits.timeout
    if job.limits.cell_timeout:
        config.Execute.timeout = job.limits.cell_timeout
    config.SandboxedExecute.memory_mb = job.limits.memory_mb
    config.SandboxedExecute.max_processes = job.limits.max_processes
    config.SandboxedExecute.max_output_bytes = job.limits.max_output_bytes
    config.SandboxedExecute.outcome_file = str(outcome_file)
    result = course.api(config).autograde(job.assignment, job.student, force=True, create=True)
    if not result["success"]:
        last = (result.get("error") or result.get("log") or "").strip().splitlines()[-1:] or [""]
        return {"status": "invalid", "reason": f"nbgrader could not grade it: {last[0][:200]}", "records": [],
                "warnings": []}
    return json.loads(outcome_file.read_text())


def _feedback(job: Job, course_dir: Path, items: list[Item]) -> None:
    from nbgrader.converters import GenerateFeedback
    from nbgrader.preprocessors import ClearHiddenTests

    config = course.load_config(course_dir)
    config.GenerateFeedback.preprocessors = [
        *GenerateFeedback.class_traits()["preprocessors"].default(), ClearHiddenTests, ShowVerdicts]
    config.GenerateFeedback.exporter_class = FeedbackHTMLExporter
    config.ShowVerdicts.verdicts = {i.item: {"passed": i.score == i.max_score, "message": i.message}
                                    for i in items if i.score is not None}
    course.run_nbgrader(course.api(config).generate_feedback(job.assignment, job.student, force=True),
                        f"generate_feedback {job.student}")


def _unanswered_scores(db_url: str, assignment: str, student: str, items: list[Item]) -> None:
    """nbgrader scores a written answer left as the stub 0 by itself; say so in the items too."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        for item in items:
            if item.score is None:
                grade = gb.find_grade(item.item, item.notebook, assignment, student)
                if grade.auto_score is not None and not grade.needs_manual_grade:
                    item.score, item.message = float(grade.auto_score), "no answer written"


def apply_scores(db_url: str, assignment: str, student: str, items: list[Item]) -> None:
    """Write the grader's scores over nbgrader's in-kernel ones (manual items are left alone)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        for item in items:
            if item.score is None:
                continue
            grade = gb.find_grade(item.item, item.notebook, assignment, student)
            grade.auto_score = item.score
            grade.needs_manual_grade = grade.manual_score is not None
        gb.db.commit()
