"""An instructor's whole semester (issue 17), end to end on a small class through nbgrader's exchange
in a temporary root: release -> students fetch and submit -> collect -> ``autograde grade`` ->
a manual grade entered through nbgrader's gradebook API -> ``autograde feedback`` -> release and
fetch the feedback -> ``autograde export``; then one student regraded with ``--student``.

The class: alice submits both chapters on time (with an extension); bob submits 00_fixture a
day late, with a wrong answer and a line the review scan lists, and never submits 00_second.
The fixtures build on each other (graded -> hand graded -> bob regraded); tests run in file order.
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograde import course
from autograde.feedback import FLAG_NOTE
from fixtures import students as make

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "course" / "solutions" / "00_fixture" / "00_fixture.ipynb"
CHAPTERS = ("00_fixture", "00_second")
COURSE_ID = "ppo-lab"
ENV = {**os.environ, "PPO_LAB_COURSE_SECRET": "semester-secret",
       "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
WRONG_PG = "import numpy as np\nnp.allclose = max\ndef pg_loss(log_probs, advantages):\n    return (log_probs * advantages).mean()"
GOOD_PG = "def pg_loss(log_probs, advantages):\n    return -(log_probs * advantages.detach()).mean()"
FIXED = "fixed"  # marks bob's resubmission


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(list(command), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
    return result


def nbgrader(*args: str, cwd: Path, exchange: Path) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "nbgrader", *args, f"--Exchange.root={exchange}", cwd=cwd)


def autograde(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "autograde", *args, cwd=cwd)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def grades(out: Path) -> dict[tuple[str, str, str], dict]:
    with open(out / "grades.csv") as f:
        return {(r["student_id"], r["assignment"], r["item"]): r for r in csv.DictReader(f)}


def gradebook(out: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{out / 'gradebook.db'}")


@pytest.fixture(scope="module")
def semester(tmp_path_factory):
    base = tmp_path_factory.mktemp("semester")
    exchange, instructor = base / "exchange", base / "course"
    exchange.mkdir()
    for chapter in CHAPTERS:  # a second chapter: the fixture's notebook under another name
        (instructor / "solutions" / chapter).mkdir(parents=True)
        shutil.copy(FIXTURE, instructor / "solutions" / chapter / f"{chapter}.ipynb")
    config = course.load_config(instructor)  # the instructor's course: ppo-lab's settings, this exchange
    config.Exchange.root = str(exchange)
    instructor_api = course.api(config)
    for chapter in CHAPTERS:
        course.run_nbgrader(instructor_api.generate_assignment(chapter), "generate_assignment")
        course.run_nbgrader(instructor_api.release_assignment(chapter), "release_assignment")

    homes = {}
    for student, answers in {"alice": {c: GOOD_PG for c in CHAPTERS}, "bob": {"00_fixture": WRONG_PG}}.items():
        home = homes[student] = base / "home" / student
        home.mkdir(parents=True)
        for chapter, answer in answers.items():
            nbgrader("fetch_assignment", chapter, "--course", COURSE_ID, cwd=home, exchange=exchange)
            path = home / chapter / f"{chapter}.ipynb"
            source = nbformat.read(instructor / "solutions" / chapter / f"{chapter}.ipynb", as_version=4)
            nbformat.write(make.with_cell(make.answered(nbformat.read(path, as_version=4), source),
                                          "solution_pg_loss", answer), path)
            nbgrader("submit", chapter, "--course", COURSE_ID, "--student", student,
                     f"--Exchange.cache={home / '.cache'}", cwd=home, exchange=exchange)
    for chapter in CHAPTERS:
        course.run_nbgrader(instructor_api.collect(chapter), "collect")

    # Due 12 hours ago: bob is one (started) day late; alice has a one-day extension.
    due = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=12)).isoformat()
    deadlines = base / "deadlines.toml"
    deadlines.write_text(f'[due]\n00_fixture = "{due}"\n00_second = "{due}"\n'
                         "[extensions.alice]\n00_fixture = 1\n00_second = 1\n[penalty]\nper_day = 0.1\n")
    submitted = instructor / "submitted"
    before = digest(submitted)
    out = base / "grading"
    result = autograde("grade", str(submitted), "--out", str(out), "--source", str(instructor / "solutions"),
                       "--deadlines", str(deadlines), "--jobs", "2", "--memory", "1024")
    return {"base": base, "exchange": exchange, "instructor": instructor, "homes": homes, "out": out,
            "submitted": submitted, "before": before, "stderr": result.stderr}


def test_intake_table_and_run_summary(semester):
    stderr = semester["stderr"]
    assert "student    00_fixture  00_second" in stderr
    assert [line.split() for line in stderr.splitlines() if line.startswith(("alice ", "bob "))] == \
           [["alice", "✓", "✓"], ["bob", "✓", "-"]]
    assert stderr.strip().splitlines()[-1] == ("3 graded, 0 resumed from the journal, 1 missing, 1 flagged for review "
                                              "(4 submissions: students x chapters)")


def test_submitted_files_are_never_modified(semester):
    assert digest(semester["submitted"]) == semester["before"]


def test_missing_chapter_is_not_a_submission_in_formgrader(semester):
    from nbgrader.api import MissingEntry

    out = semester["out"]
    with gradebook(out) as gb:
        with pytest.raises(MissingEntry):
            gb.find_submission("00_second", "bob")
        gb.find_student("bob")
    api = course.api(course.load_config(out))
    bob = api.get_submission("00_second", "bob")
    assert not bob["submitted"] and not bob["autograded"], bob  # formgrader: "No submission"
    assert "bob" not in {s["student"] for s in api.get_submissions("00_second")}  # not "needs autograding"
    assert grades(out)[("bob", "00_second", "test_pg_loss")]["status"] == "missing"
    assert "not submitted" in (out / "feedback" / "bob" / "00_second" / "00_second.html").read_text()


def test_review_flagged_work_carries_nbgraders_flag_and_a_comment(semester):
    with gradebook(semester["out"]) as gb:
        bob = gb.find_submission_notebook("00_fixture", "00_fixture", "bob")
        alice = gb.find_submission_notebook("00_fixture", "00_fixture", "alice")
        assert bob.flagged and not alice.flagged
        note = gb.find_comment("solution_pg_loss", "00_fixture", "00_fixture", "bob").comment
        assert note.startswith(FLAG_NOTE) and "assigns to numpy.allclose" in note


def test_late_penalty_from_timestamp_and_extension(semester):
    out = semester["out"]
    rows = grades(out)
    bob = [row for key, row in rows.items() if key[:2] == ("bob", "00_fixture")]
    assert {row["late_penalty"] for row in bob} == {"0.4"}  # 0.1 x 4 points, on each of the submission's rows
    assert "h after the due date" in bob[0]["notes"]
    assert {row["late_penalty"] for key, row in rows.items() if key[0] == "alice"} == {""}  # her extension
    with gradebook(out) as gb:
        assert gb.find_submission("00_fixture", "bob").late_submission_penalty == pytest.approx(0.4)
        assert gb.find_submission("00_fixture", "alice").extension == datetime.timedelta(days=1)


def test_course_is_self_contained_and_formgrader_cannot_autograde(semester, tmp_path):
    """The course's nbgrader_config.py has no path back to the checkout; moved elsewhere it keeps
    its settings; formgrader's Autograde button is refused before nbgrader deletes anything."""
    from traitlets.config import PyFileConfigLoader

    from autograde.formgrader import AutogradeDisabled
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    text = (semester["out"] / "nbgrader_config.py").read_text()
    assert str(ROOT) not in text and "load_subconfig" not in text
    moved = tmp_path / "moved"
    shutil.copytree(semester["out"], moved)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(moved)).load_config()
    assert config.CourseDirectory.course_id == COURSE_ID and config.CourseDirectory.root == str(moved)
    assert config.Autograde.exporter_class is AutogradeDisabled
    api = NbGraderAPI(CourseDirectory(config=config), config=config)
    graded = digest(moved / "autograded")
    outcome = api.autograde("00_fixture", "alice")
    assert not outcome["success"] and "python -m autograde grade" in outcome["error"]
    assert digest(moved / "autograded") == graded


@pytest.fixture(scope="module")
def hand_graded(semester):
    """A grader's work in formgrader, through nbgrader's gradebook API, then our feedback command."""
    out = semester["out"]
    with gradebook(out) as gb:
        gb.find_grade("reflection_old_constant", "00_fixture", "00_fixture", "alice").manual_score = 0.5
        gb.find_comment("reflection_old_constant", "00_fixture", "00_fixture", "alice").manual_comment = \
            "Half right: say which policy collected the data."
        gb.find_grade("reflection_old_constant", "00_fixture", "00_fixture", "bob").manual_score = 1.0
        gb.db.commit()
    autograde("feedback", str(out))
    return semester


def test_feedback_regenerated_with_manual_grades_and_no_hidden_tests(hand_graded):
    out = hand_graded["out"]
    alice = (out / "feedback" / "alice" / "00_fixture" / "00_fixture.html").read_text()
    assert "Half right: say which policy collected the data." in alice
    assert "Score: 0.5 / 1.0" in alice and "✓ test_pg_loss" in alice
    bob = (out / "feedback" / "bob" / "00_fixture" / "00_fixture.html").read_text()
    assert "Late submission penalty (Score: -0.4)" in bob and "✗ test_pg_loss" in bob
    assert FLAG_NOTE not in bob  # the note is for the graders
    for page in (out / "feedback").rglob("*.html"):
        assert "HIDDEN TESTS" not in page.read_text() and "hidden=True" not in page.read_text(), page


def test_grades_csv_follows_the_gradebook(hand_graded):
    rows = grades(hand_graded["out"])
    assert rows[("alice", "00_fixture", "reflection_old_constant")]["score"] == "0.5"
    assert rows[("alice", "00_fixture", "reflection_old_constant")]["comment"] == \
        "Half right: say which policy collected the data."
    assert rows[("bob", "00_fixture", "reflection_old_constant")]["score"] == "1.0"


def test_formgraders_generate_feedback_button_makes_our_feedback(hand_graded):
    """formgrader loads the course's nbgrader_config.py and calls NbGraderAPI.generate_feedback."""
    from traitlets.config import PyFileConfigLoader

    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    out = hand_graded["out"]
    page = out / "feedback" / "alice" / "00_fixture" / "00_fixture.html"
    page.unlink()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(out)).load_config()
    api = NbGraderAPI(CourseDirectory(config=config), config=config)
    assert api.generate_feedback("00_fixture", "alice")["success"]
    text = page.read_text()
    assert "✓ test_pg_loss" in text and "HIDDEN TESTS" not in text and "Half right" in text


def test_formgraders_button_recomputes_the_late_penalty(hand_graded, tmp_path):
    """An extension granted after grading: the button's feedback has no penalty any more (on a copy
    of the course, which keeps working where it is moved)."""
    from traitlets.config import PyFileConfigLoader

    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    moved = tmp_path / "moved"
    shutil.copytree(hand_graded["out"], moved)
    deadlines = moved / "deadlines.toml"
    deadlines.write_text(deadlines.read_text() + "[extensions.bob]\n00_fixture = 2\n")
    config = PyFileConfigLoader("nbgrader_config.py", path=str(moved)).load_config()
    api = NbGraderAPI(CourseDirectory(config=config), config=config)
    assert api.generate_feedback("00_fixture", "bob")["success"]
    page = (moved / "feedback" / "bob" / "00_fixture" / "00_fixture.html").read_text()
    assert "Late submission penalty" not in page and "✗ test_pg_loss" in page
    with gradebook(moved) as gb:
        assert not gb.find_submission("00_fixture", "bob").late_submission_penalty


def test_feedback_reaches_the_student_through_the_exchange(hand_graded):
    out, exchange, home = hand_graded["out"], hand_graded["exchange"], hand_graded["homes"]["alice"]
    nbgrader("release_feedback", "00_fixture", cwd=out, exchange=exchange)
    nbgrader("fetch_feedback", "00_fixture", "--course", COURSE_ID, "--student", "alice",
             f"--Exchange.cache={home / '.cache'}", cwd=home, exchange=exchange)
    fetched = list((home / "00_fixture" / "feedback").glob("*/00_fixture.html"))
    assert len(fetched) == 1 and "Half right" in fetched[0].read_text()


def test_canvas_export_holds_manual_grades_and_penalties(hand_graded, tmp_path):
    out = hand_graded["out"]
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name,canvas_id,sis_user_id,section\nalice,\"Liddell, Alice\",101,S-1,A\n"
                      "bob,\"Builder, Bob\",102,S-2,A\nerin,\"Ent, Erin\",103,S-3,B\n")
    result = autograde("export", str(out), "--format", "canvas", "--roster", str(roster))
    lines = (out / "export-canvas.csv").read_text().splitlines()
    assert lines[0] == "Student,ID,SIS User ID,SIS Login ID,Section,00_fixture,00_second"
    assert lines[1] == "Points Possible,,,,,4,4"
    assert lines[2] == '"Liddell, Alice",101,S-1,alice,A,3.5,'  # 2 + 1 + 0.5 by hand; 00_second awaits a grader
    assert lines[3] == '"Builder, Bob",102,S-2,bob,A,1.6,0'  # 0 + 1 + 1 by hand - 0.4 late; 00_second missing
    assert lines[4] == '"Ent, Erin",103,S-3,erin,B,0,0'  # on the roster, submitted nothing
    assert "alice/00_second" in result.stderr  # left blank: waits for a manual grade


def test_long_export_keeps_statuses_flags_and_penalties(hand_graded):
    out = hand_graded["out"]
    autograde("export", str(out), "--format", "csv")
    with open(out / "export-csv.csv") as f:
        rows = {(r["student_id"], r["assignment"], r["item"]): r for r in csv.DictReader(f)}
    assert rows[("bob", "00_second", "test_pg_loss")]["status"] == "missing"
    assert "assigns to numpy.allclose" in rows[("bob", "00_fixture", "test_pg_loss")]["review"]
    assert rows[("bob", "00_fixture", "test_pg_loss")]["late_penalty"] == "0.4"
    assert rows[("alice", "00_fixture", "reflection_old_constant")]["score"] == "0.5"


@pytest.fixture(scope="module")
def regraded(hand_graded):
    """bob resubmits a fixed notebook (same timestamp); only he is regraded."""
    out, submitted = hand_graded["out"], hand_graded["submitted"]
    path = submitted / "bob" / "00_fixture" / "00_fixture.ipynb"
    nbformat.write(make.with_cell(nbformat.read(path, as_version=4), "solution_pg_loss", f"# {FIXED}\n" + GOOD_PG),
                   path)
    journal = (out / ".autograde" / "journal.jsonl").read_text()
    alice = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "feedback" / "alice").rglob("*")
             if p.is_file()}
    result = autograde("grade", str(submitted), "--out", str(out), "--source",
                       str(hand_graded["instructor"] / "solutions"), "--student", "bob", "--memory", "1024")
    return {**hand_graded, "journal_before": journal, "alice_feedback": alice, "regrade_stderr": result.stderr}


def test_student_option_regrades_only_that_student(regraded):
    out = regraded["out"]
    new_lines = (out / ".autograde" / "journal.jsonl").read_text()[len(regraded["journal_before"]):].splitlines()
    assert len(new_lines) == 2 and all('"student": "bob"' in line for line in new_lines)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "feedback" / "alice").rglob("*")
            if p.is_file()} == regraded["alice_feedback"]
    rows = grades(out)
    assert float(rows[("bob", "00_fixture", "test_pg_loss")]["score"]) == 2
    assert rows[("alice", "00_fixture", "reflection_old_constant")]["score"] == "0.5"  # alice's manual grade kept
    assert rows[("bob", "00_fixture", "reflection_old_constant")]["score"] == "1.0"  # and bob's


def test_late_penalty_stays_right_after_a_regrade(regraded):
    """nbgrader recomputes the penalty only inside autograde, from that moment's score."""
    out = regraded["out"]
    assert grades(out)[("bob", "00_fixture", "test_pg_loss")]["late_penalty"] == "0.4"
    with gradebook(out) as gb:
        submission = gb.find_submission("00_fixture", "bob")
        assert submission.late_submission_penalty == pytest.approx(0.4)
        assert submission.score - submission.late_submission_penalty == pytest.approx(2 + 1 + 1 - 0.4)


def test_feedback_for_one_student_and_for_an_unknown_one(regraded):
    out = regraded["out"]
    assert "regenerated 2 feedback pages" in autograde("feedback", str(out), "--student", "bob").stdout
    unknown = subprocess.run([sys.executable, "-m", "autograde", "feedback", str(out), "--student", "nobody"],
                             cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert unknown.returncode == 2 and "no graded submissions of nobody" in unknown.stderr


def test_course_config_written_once_upgraded_when_old_kept_when_yours(tmp_path, caplog):
    from autograde import grading

    config = tmp_path / "nbgrader_config.py"
    config.write_text(f"{grading.HEADER}: old\nload_subconfig('/old/checkout/nbgrader_config.py')\n")
    grading._write_course_config(tmp_path)  # an old version's file, with a path back to a checkout
    assert grading.ROUTING in config.read_text() and "load_subconfig" not in config.read_text()
    config.write_text(config.read_text().replace('course_id = "ppo-lab"', 'course_id = "rl-2026"'))
    grading._write_course_config(tmp_path)
    assert 'course_id = "rl-2026"' in config.read_text()  # the instructor's edit stays
    config.write_text("c = get_config()\n")
    grading._write_course_config(tmp_path)
    assert config.read_text() == "c = get_config()\n" and "Add these lines" in caplog.text
