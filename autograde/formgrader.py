"""nbgrader settings that route formgrader's buttons through the course's grader.

``route(c, root)`` is called by the ``nbgrader_config.py`` that ``grade`` writes into the course,
so formgrader (and ``nbgrader ...`` run there) loads it; ``python -m autograde feedback`` calls it
too, so both make the same feedback:

- "Generate Feedback" runs nbgrader's GenerateFeedback with the late penalty recomputed first
  (``ApplyDeadlines``), ``ClearHiddenTests`` and our ``ShowVerdicts`` (verdicts read from the
  course's journal), never the hidden tests;
- "Autograde" is refused before nbgrader touches anything: plain nbgrader would run the student's
  code outside the sandbox, with the tests in the kernel, and (with ``force``) delete the graded
  notebook first.
"""
from __future__ import annotations

import os

from nbconvert.exporters import NotebookExporter

AUTOGRADE_REFUSED = ("this course is graded by `python -m autograde grade SUBMISSIONS --out COURSE` (sandboxed); "
                     "formgrader's Autograde button and `nbgrader autograde` are disabled here "
                     "(see docs/autograder.md)")


class AutogradeDisabled(NotebookExporter):
    """Autograde's exporter: made in ``Autograde.start`` before any file is removed, so failing
    here leaves the course as it was."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(AUTOGRADE_REFUSED)


def route(c, root) -> None:
    """Point the nbgrader settings ``c`` of the course at ``root`` to the grader's feedback."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.preprocessors import ClearHiddenTests

    from .feedback import FeedbackHTMLExporter, ShowVerdicts
    from .late import ApplyDeadlines

    c.Autograde.exporter_class = AutogradeDisabled
    c.GenerateFeedback.preprocessors = [ApplyDeadlines, *GenerateFeedback.class_traits()["preprocessors"].default(),
                                        ClearHiddenTests, ShowVerdicts]
    c.GenerateFeedback.exporter_class = FeedbackHTMLExporter
    c.ApplyDeadlines.course = str(root)
    c.ShowVerdicts.journal = os.path.join(str(root), ".autograde", "journal.jsonl")
