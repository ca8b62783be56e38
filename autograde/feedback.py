"""Feedback that teaches without giving the hidden tests away.

Added to nbgrader's own ``GenerateFeedback`` preprocessors, after ``ClearHiddenTests`` (which
removes the hidden lines from the cell sources): the outputs of every autograded test cell are
replaced by the grader's verdict (what was checked, the recognised mistake), because a kernel
traceback from a test cell can quote hidden lines (jupyter/nbgrader#917). Scores, manual grades,
comments and the late penalty come from the gradebook through nbgrader's own ``GetGrades``.

``regenerate`` remakes every student's feedback from the gradebook and the journal, after manual
grading; formgrader's "Generate Feedback" button makes the same (``formgrader.route``).
"""
from __future__ import annotations

import html
import os
from pathlib import Path

from jinja2 import BytecodeCache
from nbconvert.exporters import HTMLExporter
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Dict, Unicode

from .results import Item, Journal

# Starts the comment that marks flagged work for the graders in formgrader; the student's feedback
# leaves it out (an instructor's own comment replaces it, and is shown).
FLAG_NOTE = "[autograder, for the graders] "


def verdicts_of(items: list[Item]) -> dict[str, dict]:
    return {i.item: {"passed": i.score == i.max_score, "message": i.message} for i in items if i.score is not None}


class ShowVerdicts(NbGraderPreprocessor):
    verdicts = Dict(help="grade_id -> {'passed': bool, 'message': str}").tag(config=True)
    journal = Unicode("", help="the grader's journal: verdicts of the student being processed, when "
                               "`verdicts` is not given (formgrader's Generate Feedback)").tag(config=True)

    def preprocess(self, nb, resources):
        self._current = self.verdicts
        if not self.verdicts and self.journal:
            result = _journal(self.journal).entries.get((resources["nbgrader"]["student"],
                                                         resources["nbgrader"]["assignment"]))
            self._current = verdicts_of(result[0].items) if result else {}
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        nbgrader = cell.metadata.get("nbgrader", {})
        if (nbgrader.get("comment") or "").startswith(FLAG_NOTE):
            nbgrader["comment"] = None
        if cell.cell_type == "code" and nbgrader.get("grade") and not nbgrader.get("solution"):
            verdict = self._current.get(nbgrader.get("grade_id"))
            text = "This test was not graded automatically." if verdict is None else \
                ("✓ " if verdict["passed"] else "✗ ") + verdict["message"].replace(" | ", "\n  ")
            cell.outputs = [NotebookNode(output_type="stream", name="stdout", text=text + "\n")]
        return cell, resources


def status_page(path: Path, student: str, assignment: str, status: str, reason: str) -> None:
    """Feedback for a submission nbgrader could not grade (missing or invalid notebooks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!doctype html><meta charset='utf-8'><title>{html.escape(assignment)}</title>"
                    f"<h1>{html.escape(assignment)} — {html.escape(student)}</h1>"
                    f"<p>Status: <b>{html.escape(status)}</b>. {html.escape(reason)}</p>"
                    "<p>The code exercises of the missing or unreadable notebooks score 0.</p>")


_JOURNALS: dict[str, tuple[tuple, Journal]] = {}


def _journal(path: str) -> Journal:
    """Read once per change, not once per notebook (a class's feedback reads it thousands of times)."""
    stat = os.stat(path) if os.path.exists(path) else None
    key = (stat.st_mtime_ns, stat.st_size) if stat else None
    if path not in _JOURNALS or _JOURNALS[path][0] != key:
        _JOURNALS[path] = (key, Journal(Path(path)))
    return _JOURNALS[path][1]


def regenerate(out: Path, students: set[str] | None = None) -> list[Path]:
    """Every (or ``students``') feedback of the course ``out``, remade from its gradebook and journal:
    nbgrader's GenerateFeedback with the course's routing; a status page where nothing was graded."""
    from . import course, formgrader

    config = course.load_config(out)
    formgrader.route(config, out)
    api = course.api(config)
    results = Journal(out / ".autograde" / "journal.jsonl").results()
    unknown = sorted((students or set()) - {r.student for r in results})
    if unknown:
        raise course.CourseError(f"no graded submissions of {', '.join(unknown)} in {out}")
    written = []
    for result in results:
        if students is not None and result.student not in students:
            continue
        folder = out / "feedback" / result.student / result.assignment
        if any((out / "autograded" / result.student / result.assignment).glob("*.ipynb")):
            course.run_nbgrader(api.generate_feedback(result.assignment, result.student, force=True),
                                f"generate_feedback {result.student} {result.assignment}")
            written += sorted(folder.glob("*.html"))
        else:
            status_page(folder / f"{result.assignment}.html", result.student, result.assignment,
                        result.status.value, result.reason)
            written.append(folder / f"{result.assignment}.html")
    return written


class _InMemoryBytecodeCache(BytecodeCache):
    def __init__(self):
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


_TEMPLATES = _InMemoryBytecodeCache()


class FeedbackHTMLExporter(HTMLExporter):
    """nbconvert's HTMLExporter, compiling its Jinja templates once per worker process instead of
    once per student (about a third of generate_feedback's time)."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = _TEMPLATES
        return environment
