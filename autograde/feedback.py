"""Feedback that teaches without giving the hidden tests away.

Added to nbgrader's own ``GenerateFeedback`` preprocessors, after ``ClearHiddenTests`` (which
removes the hidden lines from the cell sources): the outputs of every autograded test cell are
replaced by the grader's verdict (what was checked, the recognised mistake), because a kernel
traceback from a test cell can quote hidden lines (jupyter/nbgrader#917).
"""
from __future__ import annotations

import html
from pathlib import Path

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
