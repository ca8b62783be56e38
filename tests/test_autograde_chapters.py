"""Every chapter through the grader: the solutions earn full marks, untouched releases earn
nothing on the code items (one grading run, --jobs 2, for all chapters)."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import nbformat
import pytest

from autograde import course
from fixtures import students as make

CHAPTERS = course.assignments(course.SOURCE) if course.SOURCE.is_dir() else []
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chapter_grades(tmp_path_factory):
    if not CHAPTERS:
        pytest.skip("no chapters in solutions/ yet")
    release_dir = tmp_path_factory.mktemp("release")
    course.release(release_dir, course.SOURCE, CHAPTERS)
    submitted = tmp_path_factory.mktemp("submitted")
    for chapter in CHAPTERS:
        for path in sorted((course.SOURCE / chapter).glob("*.ipynb")):
            release = nbformat.read(release_dir / chapter / path.name, as_version=4)
            make.write(submitted, "solution", chapter, make.answered(release, nbformat.read(path, as_version=4)),
                       path.stem)
            make.write(submitted, "untouched", chapter, release, path.stem)
    out = tmp_path_factory.mktemp("graded")
    result = subprocess.run([sys.executable, "-m", "autograde", "grade", str(submitted), "--out", str(out),
                             "--jobs", "2", "--timeout", "900"], capture_output=True, text=True, timeout=1800,
                            env={**os.environ, "PPO_LAB_COURSE_SECRET": "chapters"})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "grades.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_earns_full_marks(chapter_grades, chapter):
    rows = [r for r in chapter_grades if r["assignment"] == chapter and r["student_id"] == "solution"]
    assert rows and rows[0]["status"] == "ok", rows[:1]
    for row in rows:
        if row["score"] != "":  # written answers wait for formgrader
            assert float(row["score"]) == float(row["max_score"]), (row["item"], row["message"][:400])


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_untouched_release_earns_nothing_on_code_items(chapter_grades, chapter):
    rows = [r for r in chapter_grades if r["assignment"] == chapter and r["student_id"] == "untouched"]
    assert rows and rows[0]["status"] == "ok", rows[:1]
    for row in rows:
        assert row["score"] in ("", "0.0"), (row["item"], row["score"], row["message"][:200])
