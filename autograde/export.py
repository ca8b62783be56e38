"""``export``: the gradebook (manual grades and late penalties included) as a file an LMS takes.

- ``canvas``: one row per student, one column per chapter in points, after Canvas's gradebook
  import columns ``Student, ID, SIS User ID, SIS Login ID, Section`` and a ``Points Possible``
  row, as Canvas's own gradebook export has them. Canvas matches a row by ID, SIS User ID or SIS
  Login ID, and a column by its header: ``01_vanilla_pg (1234)`` updates that Canvas assignment,
  a header Canvas does not know creates one.
- ``csv``: the long table of grades.csv (one row per student, chapter and item, with statuses,
  flags, verdicts, comments and the submission's late penalty) with the roster's columns in front.

The roster (optional) maps student ids to names and SIS ids: either a CSV with a ``student_id``
column (and any of ``name, canvas_id, sis_user_id, sis_login_id, section``), or Canvas's own
gradebook export, whose ``SIS Login ID`` is then the student id (JupyterHub logins usually are).
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from . import report, standing
from .course import CourseError
from .results import Result

CANVAS_IDENTITY = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
ROSTER_FIELDS = {"name": "Student", "canvas_id": "ID", "sis_user_id": "SIS User ID", "sis_login_id": "SIS Login ID",
                 "section": "Section"}


def export(out: Path, fmt: str, roster_path: Path | None = None, output: Path | None = None) -> tuple[Path, list[str]]:
    """Write the export; returns its path and warnings (students the roster does not know, ...)."""
    results = standing.refresh(out)  # grades.csv matches the gradebook too
    roster, headers = read_roster(roster_path) if roster_path else ({}, {})
    warnings = []
    if fmt == "canvas":
        text = canvas_csv(results, roster, headers, warnings)
    elif fmt == "csv":
        text = long_csv(results, roster)
    else:
        raise CourseError(f"unknown export format {fmt!r} (canvas or csv)")
    unknown = sorted({r.student for r in results} - set(roster)) if roster else []
    if unknown:
        warnings.append(f"not in the roster (their rows carry only the SIS Login ID): {', '.join(unknown)}")
    output = output or out / f"export-{fmt}.csv"
    output.write_text(text, encoding="utf-8")
    return output, warnings


def read_roster(path: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """student id -> Canvas identity columns; and chapter -> the Canvas export's column header."""
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CourseError(f"cannot read the roster {path}: {error}") from None
    columns = set(rows[0]) if rows else set()
    roster = {}
    if "student_id" in columns:
        for row in rows:
            student = row["student_id"].strip()
            entry = {canvas: (row.get(ours) or "").strip() for ours, canvas in ROSTER_FIELDS.items()}
            entry["Student"] = entry["Student"] or student
            entry["SIS Login ID"] = entry["SIS Login ID"] or student
            roster[student] = entry
    elif {"Student", "SIS Login ID"} <= columns:  # Canvas's gradebook export
        for row in rows:
            if (row.get("Student") or "").strip() in ("Points Possible", "") or not row.get("SIS Login ID"):
                continue
            roster[row["SIS Login ID"].strip()] = {c: (row.get(c) or "").strip() for c in CANVAS_IDENTITY}
    else:
        raise CourseError(f"the roster {path} needs a student_id column (with any of {', '.join(ROSTER_FIELDS)}), "
                          "or must be Canvas's gradebook export (Student, ID, SIS User ID, SIS Login ID, Section)")
    headers = {}
    for column in columns - set(CANVAS_IDENTITY):
        match = re.match(r"^(\S+) \(\d+\)$", column)
        if match:
            headers[match.group(1)] = column
    return roster, headers


def canvas_csv(results: list[Result], roster: dict, headers: dict, warnings: list[str]) -> str:
    chapters = sorted({r.assignment for r in results})
    by_student: dict[str, dict[str, Result]] = {}
    for result in results:
        by_student.setdefault(result.student, {})[result.assignment] = result
    possible = {c: max(sum(i.max_score for i in r.items) for r in results if r.assignment == c) for c in chapters}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CANVAS_IDENTITY + [headers.get(c, c) for c in chapters])
    writer.writerow(["Points Possible", "", "", "", ""] + [f"{possible[c]:g}" for c in chapters])
    waiting = []
    for student in sorted(set(by_student) | set(roster)):
        identity = roster.get(student) or {"Student": student, "ID": "", "SIS User ID": "", "SIS Login ID": student,
                                           "Section": ""}
        cells = []
        for chapter in chapters:
            result = by_student.get(student, {}).get(chapter)
            if result is None:  # on the roster, never submitted anything: nothing was graded
                cells.append("0")
            elif any(i.score is None for i in result.items):
                waiting.append(f"{student}/{chapter}")
                cells.append("")  # Canvas leaves a blank cell as it is
            else:
                cells.append(f"{report.total(result):g}")
        writer.writerow([identity[c] for c in CANVAS_IDENTITY] + cells)
    if waiting:
        warnings.append(f"left blank, still waiting for a manual grade in formgrader: {', '.join(waiting)}")
    return buffer.getvalue()


def long_csv(results: list[Result], roster: dict) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*ROSTER_FIELDS.values(), *report.COLUMNS])
    writer.writeheader()
    for row in report.rows(results):
        identity = roster.get(row["student_id"], {})
        writer.writerow({**{c: identity.get(c, "") for c in ROSTER_FIELDS.values()}, **row})
    return buffer.getvalue()
