"""Late penalties: due dates, extensions and the rule in one file (``COURSE/deadlines.toml``), the
submission time from nbgrader's ``timestamp.txt``.

The penalty is written into nbgrader's own gradebook fields (the assignment's ``duedate``, the
submission's ``timestamp`` and ``extension``, each notebook's ``late_submission_penalty``), so
formgrader and nbgrader's feedback show it. nbgrader computes it once, at autograde, from the score
of that moment; here it is recomputed from the current scores (manual grades and regrades
included) every time grades are written (``apply``).

    [due]                       # ISO 8601; without a time zone: UTC
    01_vanilla_pg = "2026-02-01T23:59:00+01:00"
    [extensions.alice]          # days added to that student's due date
    01_vanilla_pg = 2
    [penalty]
    per_day = 0.1               # fraction of the points possible lost per started day late
    max = 1.0                   # never more than this fraction (and never more than the score)
    grace_minutes = 5
"""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from .course import CourseError

FILE = "deadlines.toml"


@dataclass
class Deadlines:
    due: dict[str, datetime.datetime] = field(default_factory=dict)  # chapter -> due date, naive UTC (nbgrader's)
    extensions: dict[tuple[str, str], float] = field(default_factory=dict)  # (chapter, student) -> days
    per_day: float = 0.1
    maximum: float = 1.0
    grace_minutes: float = 0.0

    def penalty(self, seconds_late: float, score: float, max_score: float) -> float:
        """Points taken from a notebook handed in ``seconds_late`` after its (extended) due date."""
        if seconds_late <= self.grace_minutes * 60:
            return 0.0
        fraction = min(self.maximum, self.per_day * math.ceil(seconds_late / 86400))
        return round(max(0.0, min(score, fraction * max_score)), 6)


def load(path: Path) -> Deadlines:
    """The deadlines file, or an error naming the key that is wrong."""
    import tomllib

    from nbgrader.utils import parse_utc

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CourseError(f"cannot read the deadlines file {path}: {error}") from None
    deadlines = Deadlines()
    unknown = set(data) - {"due", "extensions", "penalty"}
    if unknown:
        raise CourseError(f"{path}: unknown table(s) {sorted(unknown)}; expected [due], [extensions.<student>], [penalty]")
    for chapter, when in data.get("due", {}).items():
        try:
            deadlines.due[chapter] = parse_utc(when if isinstance(when, (str, datetime.datetime)) else str(when))
        except (ValueError, OverflowError) as error:
            raise CourseError(f"{path}: due.{chapter} = {when!r} is not a date and time ({error})") from None
    for student, chapters in data.get("extensions", {}).items():
        for chapter, days in (chapters.items() if isinstance(chapters, dict) else [(None, chapters)]):
            if chapter is None or isinstance(days, bool) or not isinstance(days, (int, float)) or days < 0:
                raise CourseError(f"{path}: extensions.{student} must map chapters to a number of days, "
                                  f"e.g. [extensions.{student}] 01_vanilla_pg = 2")
            deadlines.extensions[(chapter, student)] = float(days)
    rule = data.get("penalty", {})
    for key, attribute in (("per_day", "per_day"), ("max", "maximum"), ("grace_minutes", "grace_minutes")):
        if key in rule:
            value = rule[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise CourseError(f"{path}: penalty.{key} = {value!r} must be a number >= 0")
            setattr(deadlines, attribute, float(value))
    return deadlines


def apply(out: Path, gb, only: tuple[str, str] | None = None) -> None:
    """Due dates, extensions, submission times and penalties of ``out/deadlines.toml`` into the
    gradebook ``gb``, from the scores it holds now; ``only``: one (assignment, student). Without the
    file nothing is touched (due dates set in formgrader stay nbgrader's business)."""
    from nbgrader.utils import parse_utc

    if not (out / FILE).exists():
        return
    deadlines = load(out / FILE)
    submissions = [(assignment, submission) for assignment in gb.assignments for submission in assignment.submissions
                   if only is None or (assignment.name, submission.student.id) == only]
    for assignment, submission in submissions:
        assignment.duedate = deadlines.due.get(assignment.name)
        stamp = out / "submitted" / submission.student.id / assignment.name / "timestamp.txt"
        text = stamp.read_text().strip() if stamp.is_file() else ""
        try:
            submission.timestamp = parse_utc(text) if text else None
        except (ValueError, OverflowError):
            submission.timestamp = None  # an unreadable stamp: not late, rather than a crash
        days = deadlines.extensions.get((assignment.name, submission.student.id))
        submission.extension = datetime.timedelta(days=days) if days else None
    gb.db.commit()
    for _, submission in submissions:
        late = submission.total_seconds_late
        for notebook in submission.notebooks:
            notebook.late_submission_penalty = \
                deadlines.penalty(late, notebook.score, notebook.max_score) if late > 0 else None
    gb.db.commit()


class ApplyDeadlines(NbGraderPreprocessor):
    """First of the course's feedback preprocessors (formgrader's Generate Feedback button too):
    the submission's penalty from deadlines.toml and its current scores, before nbgrader's
    ``GetGrades`` prints it."""

    course = Unicode("", help="the course directory holding deadlines.toml").tag(config=True)

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            apply(Path(self.course), gb, only=(info["assignment"], info["student"]))
        return nb, resources
