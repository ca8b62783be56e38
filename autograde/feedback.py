"""Feedback that teaches without giving the hidden tests away.

Added to nbgrader's own ``GenerateFeedback`` preprocessors, after ``ClearHiddenTests`` (which
removes the hidden lines from the cell sources): the outputs of every autograded test cell are
replaced by the grader's verdict (what was checked, the recognised mistake), because a kernel
traceback from a test cell can quote hidden lines (jupyter/nbgrader#917).
"""
from __future__ import annotations

import html
from pathlib import Path

from jinja2 import BytecodeCache
from nbconvert.exporters import HTMLExporter
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Dict


class ShowVerdicts(NbGraderPreprocessor):
    verdicts = Dict(help="grade_id -> {'passed': bool, 'message': str}").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        nbgrader = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and nbgrader.get("grade") and not nbgrader.get("solution"):
            verdict = self.verdicts.get(nbgrader.get("grade_id"))
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
