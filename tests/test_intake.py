"""Intake (issue 17): the grader says what it found, names what is out of layout, writes nothing to
--out before intake succeeds, and never writes where the submissions are read from.

Most tests stop before grading (no kernel runs); one grades a single student with --allow-partial.
"""
from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograde import intake
from fixtures import students as make

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "fixtures" / "course" / "solutions"
ASSIGNMENT = "00_fixture"
KNOWN = [ASSIGNMENT, "01_other"]


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    return make.release_and_answered(SOURCE, ASSIGNMENT, tmp_path_factory.mktemp("release"))


def grade(submissions: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PPO_LAB_COURSE_SECRET": "intake-secret"}
    return subprocess.run([sys.executable, "-m", "autograde", "grade", str(submissions), "--out", str(out),
                           "--source", str(SOURCE), "--memory", "1024", *extra],
                          env=env, capture_output=True, text=True, timeout=600)


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def wrong_layouts(root: Path, notebook) -> Path:
    """Each wrong layout of issue 17 beside one student in the right one."""
    make.write(root, "dora", ASSIGNMENT, notebook, ASSIGNMENT)
    (root / "alice").mkdir()
    make.write(root, "alice", "", notebook, ASSIGNMENT)  # alice/00_fixture.ipynb: no chapter folder
    make.write(root, ASSIGNMENT, "bob", notebook, ASSIGNMENT)  # chapter-first
    make.write(root, "", "", notebook, "stray")  # a notebook at the top level
    make.write(root, "Jane Doe", ASSIGNMENT, notebook, ASSIGNMENT)  # a student id with a space
    make.write(root, "carl", "lab1", notebook, "lab1")  # not a chapter
    make.write(root, "erik", f"{ASSIGNMENT}/draft", notebook, ASSIGNMENT)  # nested in the chapter
    (root / "README.txt").write_text("downloaded from the LMS")
    return root


def test_each_wrong_layout_is_named_with_the_expected_layout(notebooks, tmp_path):
    _, good = notebooks
    found = intake.scan(wrong_layouts(tmp_path / "class", good), KNOWN, [ASSIGNMENT])
    errors = "\n".join(found.errors)
    assert "alice/00_fixture.ipynb lies directly in the student folder: expected alice/00_fixture/00_fixture.ipynb" \
        in errors
    assert "00_fixture/ is a chapter name where a student id is expected" in errors and "chapter-first" in errors
    assert "stray.ipynb is at the top level" in errors
    assert "'Jane Doe' cannot be a student id" in errors
    assert "carl/lab1/lab1.ipynb: 'lab1' is not a chapter of this course" in errors
    assert "erik/00_fixture/draft/00_fixture.ipynb is in a subfolder of the chapter: expected " \
           "erik/00_fixture/00_fixture.ipynb" in errors
    assert len(found.errors) == 6, found.errors
    assert found.warnings == [f"README.txt is at the top level: expected {intake.LAYOUT} (ignored)"]
    assert found.students == ["alice", "carl", "dora", "erik"]  # valid ids; only dora has a gradable notebook
    assert found.notebooks("dora", ASSIGNMENT) == [f"{ASSIGNMENT}.ipynb"]
    with pytest.raises(intake.IntakeError, match="--allow-partial"):
        found.check(allow_partial=False)
    found.check(allow_partial=True)


def test_table_shows_students_by_chapters(notebooks, tmp_path):
    _, good = notebooks
    make.write(tmp_path, "ann", ASSIGNMENT, good, ASSIGNMENT)
    (tmp_path / "ben").mkdir()  # an empty folder: a student who submitted nothing
    make.write(tmp_path, "cy", "01_other", good, "01_other")
    table = intake.scan(tmp_path, KNOWN, KNOWN).table().splitlines()
    assert table[0].split() == ["student", ASSIGNMENT, "01_other"]
    assert table[1].split() == ["ann", "✓", "-"]
    assert table[2].split() == ["ben", "-", "-"]
    assert table[3].split() == ["cy", "-", "✓"]
    assert table[4].split()[:3] == ["submitted", "1", "1"]


def test_zip_of_a_folder_is_read_through_its_top_folder(notebooks, tmp_path):
    _, good = notebooks
    make.write(tmp_path / "src" / "submitted", "ann", ASSIGNMENT, good, ASSIGNMENT)
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in (tmp_path / "src").rglob("*.ipynb"):
            z.write(path, path.relative_to(tmp_path / "src"))
    found = intake.scan(archive, KNOWN, [ASSIGNMENT])
    assert (found.prefix, found.students, found.errors) == ("submitted", ["ann"], [])
    root = found.materialize(tmp_path / "unpacked")
    assert (root / "ann" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes() == \
        (tmp_path / "src" / "submitted" / "ann" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes()


def test_wrong_layout_exits_non_zero_and_writes_nothing(notebooks, tmp_path):
    _, good = notebooks
    submissions = wrong_layouts(tmp_path / "class", good)
    result = grade(submissions, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert "alice/00_fixture.ipynb lies directly in the student folder" in result.stderr
    assert "--allow-partial" in result.stderr and "Traceback" not in result.stderr
    assert "dora" in result.stderr  # the table came first
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["truncated", "not_a_zip", "bad_crc"])
def test_bad_zip_is_one_line_and_writes_nothing(notebooks, tmp_path, damage):
    _, good = notebooks
    make.write(tmp_path / "src", "ann", ASSIGNMENT, good, ASSIGNMENT)
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.write(tmp_path / "src" / "ann" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", f"ann/{ASSIGNMENT}/{ASSIGNMENT}.ipynb")
    data = archive.read_bytes()
    if damage == "truncated":
        archive.write_bytes(data[:len(data) // 2])
    elif damage == "not_a_zip":
        archive.write_bytes(b"<html>session expired</html>")
    else:  # flip a byte of the notebook's stored data: the CRC no longer matches
        index = data.index(b'"cells"')
        archive.write_bytes(data[:index] + b"X" + data[index + 1:])
    result = grade(archive, tmp_path / "out")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read {archive}"), result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_folder_writes_nothing(tmp_path):
    result = grade(tmp_path / "nothing", tmp_path / "out")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "out").exists()


def test_refuses_to_write_where_submissions_are_read(notebooks, tmp_path):
    """nbgrader's own course/submitted graded into course overwrote the originals."""
    _, good = notebooks
    course_dir = tmp_path / "course"
    make.write(course_dir / "submitted", "ann", ASSIGNMENT, good, ASSIGNMENT)
    before = tree_digest(course_dir)
    for submissions, out in ((course_dir / "submitted", course_dir), (course_dir / "submitted", course_dir / "submitted"),
                             (course_dir, course_dir / "grading")):
        result = grade(submissions, out)
        assert result.returncode == 2 and "refusing to grade" in result.stderr, (submissions, out, result.stderr)
    assert tree_digest(course_dir) == before


def test_allow_partial_grades_the_rest_and_names_what_it_skipped(notebooks, tmp_path):
    _, good = notebooks
    submissions = tmp_path / "class"
    make.write(submissions, "dora", ASSIGNMENT, good, ASSIGNMENT)
    make.write(submissions, "Jane Doe", ASSIGNMENT, good, ASSIGNMENT)
    before = tree_digest(submissions)
    result = grade(submissions, tmp_path / "out", "--allow-partial")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipped: Jane Doe/: 'Jane Doe' cannot be a student id" in result.stderr
    with open(tmp_path / "out" / "grades.csv") as f:
        assert {row["student_id"] for row in csv.DictReader(f)} == {"dora"}
    assert tree_digest(submissions) == before  # never modifies a submitted file
    assert result.stderr.strip().splitlines()[-1].startswith("1 graded, 0 resumed from the journal, 0 missing")
