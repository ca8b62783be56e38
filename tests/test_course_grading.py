"""Every chapter through the real autograder: solutions earn full marks, untouched releases zero.

One grading run (two "students" per chapter, graded two at a time) also proves that each
solution notebook runs top to bottom and that each release runs without a kernel crash.
"""
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograde.chapters import IDS as CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    submitted = tmp_path_factory.mktemp("submitted")
    out = tmp_path_factory.mktemp("graded")
    for chapter in CHAPTERS:
        for student, folder in (("solution", "solutions"), ("release", "notebooks")):
            target = submitted / student / chapter
            target.mkdir(parents=True)
            shutil.copy(ROOT / folder / chapter / f"{chapter}.ipynb", target)
    run = subprocess.run(
        [sys.executable, "-m", "autograde", "grade", str(submitted), "--out", str(out), "--jobs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=1500,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return out, rows


def _autograded_rows(rows, student, chapter):
    mine = [r for r in rows if r["student_id"] == student and r["assignment"] == chapter]
    assert mine, f"no grade rows for {student}/{chapter}"
    return mine, [r for r in mine if r["item"].startswith("test_")]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_earns_full_marks_on_every_autograded_item(graded, chapter):
    _, rows = graded
    mine, items = _autograded_rows(rows, "solution", chapter)
    assert {r["status"] for r in mine} == {"ok"}, [(r["item"], r["status"], r["message"]) for r in mine]
    assert items
    lost = [(r["item"], r["score"], r["max_score"], r["message"]) for r in items
            if float(r["score"]) != float(r["max_score"])]
    assert not lost, lost


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_untouched_release_scores_zero_without_crashing(graded, chapter):
    _, rows = graded
    mine, items = _autograded_rows(rows, "release", chapter)
    assert {r["status"] for r in mine} == {"ok"}, "the release notebook must run to the end"
    earned = [(r["item"], r["score"]) for r in items if float(r["score"]) != 0]
    assert not earned, earned


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_notebook_runs_without_error_outputs(graded, chapter):
    out, _ = graded
    notebook = nbformat.read(out / "autograded" / "solution" / chapter / f"{chapter}.ipynb", as_version=4)
    errors = [(cell.metadata.get("nbgrader", {}).get("grade_id"), o.get("ename"), o.get("evalue"))
              for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
