"""The class's standing as the gradebook holds it now: the journal's results (statuses, flags,
verdicts) with the gradebook's current scores (manual grades and overrides from formgrader),
comments and late penalties. grades.csv, report.html and the exports are all made from it, and
rewritten by every command (``refresh``), so they match what formgrader shows.
"""
from __future__ import annotations

from pathlib import Path

from . import course, late, report
from .course import CourseError
from .feedback import FLAG_NOTE
from .results import Journal, Result


def read(out: Path) -> list[Result]:
    """Every journaled (student, assignment), scored from the gradebook of ``out`` where nbgrader
    holds a submission (a missing chapter has none: its items stay as journaled, zero)."""
    from nbgrader.api import Gradebook, MissingEntry

    if not (out / "gradebook.db").is_file():
        raise CourseError(f"{out} holds no gradebook.db: grade a class into it first (python -m autograde grade)")
    results = Journal(out / ".autograde" / "journal.jsonl").results()
    with Gradebook(course.load_config(out).CourseDirectory.db_url) as gb:
        late.apply(out, gb)
        for result in results:
            try:
                submission = gb.find_submission(result.assignment, result.student)
            except MissingEntry:
                continue
            grades = {(nb.name, g.name): g for nb in submission.notebooks for g in nb.grades}  # one query each
            comments = {(nb.name, c.name): c.comment for nb in submission.notebooks for c in nb.comments}
            for item in result.items:
                grade = grades.get((item.notebook, item.item))
                if grade is None:
                    continue
                if grade.manual_score is not None:
                    if item.score is not None and item.score != grade.manual_score:
                        item.message = f"score changed by the grader (autograder: {item.score:g}); {item.message}"
                    item.score = float(grade.manual_score)
                elif grade.auto_score is not None and not grade.needs_manual_grade:
                    item.score = float(grade.auto_score)
                comment = comments.get((item.notebook, item.item)) or ""
                item.comment = "" if comment.startswith(FLAG_NOTE) else comment  # the flag note is for graders
            result.late_penalty = float(submission.late_submission_penalty or 0)
            if result.late_penalty:
                result.late = (f"submitted {submission.total_seconds_late / 3600:.1f} h after the due date "
                               f"({submission.duedate:%Y-%m-%d %H:%M} UTC)")
    return results


def refresh(out: Path) -> list[Result]:
    """grades.csv and report.html rewritten from the gradebook: after every grade, feedback, export."""
    results = read(out)
    report.write(out, results)
    return results

