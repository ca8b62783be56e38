"""The LMS export (issue 17) on given results: Canvas's import columns, a roster that is Canvas's own
gradebook export, blanks for work awaiting a manual grade. The whole loop is in test_semester.py."""
from __future__ import annotations

import csv
import io

import pytest

from autograde import export
from autograde.course import CourseError
from autograde.results import Item, Result, Status

CANVAS_EXPORT = """Student,ID,SIS User ID,SIS Login ID,Section,00_fixture (4711),Assignments Current Score
    Points Possible,,,,,4,(read only)
"Liddell, Alice",101,S-1,alice,Sec A,,
"Builder, Bob",102,S-2,bob,Sec A,,
"""


def results() -> list[Result]:
    return [
        Result("alice", "00_fixture", items=[Item("test_pg_loss", "00_fixture", 2.0, 2.0),
                                             Item("reflection", "00_fixture", 0.5, 2.0)]),
        Result("bob", "00_fixture", items=[Item("test_pg_loss", "00_fixture", 2.0, 2.0),
                                           Item("reflection", "00_fixture", None, 2.0)], late_penalty=0.4),
        Result("cy", "00_fixture", items=[Item("test_pg_loss", "00_fixture", 2.0, 2.0),
                                          Item("reflection", "00_fixture", 1.0, 2.0)], late_penalty=0.4),
        Result("zed", "00_fixture", Status.MISSING, items=[Item("test_pg_loss", "00_fixture", 0.0, 2.0),
                                                           Item("reflection", "00_fixture", 0.0, 2.0)]),
    ]


def test_canvas_gradebook_export_as_roster_keeps_its_column_names(tmp_path):
    roster_path = tmp_path / "canvas.csv"
    roster_path.write_text(CANVAS_EXPORT)
    roster, headers = export.read_roster(roster_path)
    assert set(roster) == {"alice", "bob"}  # keyed by SIS Login ID, without the Points Possible row
    assert roster["alice"] == {"Student": "Liddell, Alice", "ID": "101", "SIS User ID": "S-1", "SIS Login ID": "alice",
                               "Section": "Sec A"}
    assert headers == {"00_fixture": "00_fixture (4711)"}
    warnings: list[str] = []
    rows = list(csv.reader(io.StringIO(export.canvas_csv(results(), roster, headers, warnings))))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "00_fixture (4711)"]
    assert rows[1] == ["Points Possible", "", "", "", "", "4"]
    assert rows[2] == ["Liddell, Alice", "101", "S-1", "alice", "Sec A", "2.5"]
    assert rows[3] == ["Builder, Bob", "102", "S-2", "bob", "Sec A", ""]  # waits for a manual grade: blank
    assert rows[4] == ["cy", "", "", "cy", "", "2.6"]  # 3 points minus the late penalty
    assert rows[5] == ["zed", "", "", "zed", "", "0"]  # not on the roster: the SIS Login ID carries the id
    assert warnings == ["left blank, still waiting for a manual grade in formgrader: bob/00_fixture"]


def test_plain_roster_and_long_csv(tmp_path):
    roster_path = tmp_path / "roster.csv"
    roster_path.write_text("student_id,name,sis_user_id\nalice,Alice L,S-1\n")
    roster, headers = export.read_roster(roster_path)
    assert roster["alice"]["SIS Login ID"] == "alice" and headers == {}
    rows = list(csv.DictReader(io.StringIO(export.long_csv(results(), roster))))
    assert [(r["Student"], r["student_id"], r["item"], r["score"], r["status"]) for r in rows[:2]] == \
        [("Alice L", "alice", "test_pg_loss", "2.0", "ok"), ("Alice L", "alice", "reflection", "0.5", "ok")]
    assert [r["late_penalty"] for r in rows[:4]] == ["", "", "0.4", "0.4"]  # alice's rows, then bob's
    assert rows[6]["status"] == "missing" and rows[6]["Student"] == ""


def test_roster_without_ids_is_refused_by_name(tmp_path):
    roster_path = tmp_path / "roster.csv"
    roster_path.write_text("name,email\nAlice,a@x\n")
    with pytest.raises(CourseError, match="student_id column"):
        export.read_roster(roster_path)
