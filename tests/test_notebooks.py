"""Course-wide rules for every chapter: release in step, checks wired up, no outputs in git."""
import json
import re
from pathlib import Path

import nbformat
import pytest

from autograde import chapters, course
from ppo_lab.checks import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = chapters.IDS
COMMITTED_NOTEBOOKS = sorted(
    p for folder in ("solutions", "notebooks", "explorer") for p in (ROOT / folder).rglob("*.ipynb")
    if ".ipynb_checkpoints" not in p.parts
)


def _source_notebook(chapter: str) -> Path:
    return ROOT / "solutions" / chapter / f"{chapter}.ipynb"


def _autograded_test_cells(chapter: str):
    notebook = nbformat.read(_source_notebook(chapter), as_version=4)
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            yield cell, meta


def test_the_chapter_registry_is_what_is_on_disk():
    """autograde/chapters.py lists every chapter folder, in course order, and nothing else."""
    for folder in ("solutions", "notebooks"):
        assert course.assignments(ROOT / folder) == sorted(CHAPTERS) == list(CHAPTERS), folder


def test_readme_chapter_table_is_the_registrys():
    assert chapters.readme_table() in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("chapter", chapters.CHAPTERS, ids=CHAPTERS)
def test_every_exercise_of_a_chapter_is_graded_there(chapter):
    cells = nbformat.read(_source_notebook(chapter.id), as_version=4).cells
    written = {re.search(r"def (\w+)\(", c.source).group(1) for c in cells
               if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution") and "def " in c.source}
    assert set(chapter.exercises) <= written, sorted(written)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_has_a_source_and_a_release_notebook(chapter):
    assert _source_notebook(chapter).is_file()
    assert (ROOT / "notebooks" / chapter / f"{chapter}.ipynb").is_file()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_autograded_cell_is_decided_by_its_own_check(chapter):
    cells = list(_autograded_test_cells(chapter))
    assert cells, f"{chapter} has no autograded test cell"
    for cell, meta in cells:
        grade_id = meta["grade_id"]
        assert re.fullmatch(r"test_[a-z0-9_]+", grade_id), f"grade id {grade_id!r} breaks the naming rule"
        assert meta.get("points", 0) > 0, f"{grade_id} has no points"
        assert meta.get("schema_version") == 3
        called = set(re.findall(r"""check\(\s*["']([a-z0-9_]+)["']""", cell.source))
        assert called == {grade_id}, f"cell {grade_id} must call check({grade_id!r}, ...), calls {called}"
        assert grade_id in REGISTRY, f"{grade_id} has no registered check in ppo_lab.checks"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_manual_answers_have_points(chapter):
    notebook = nbformat.read(_source_notebook(chapter), as_version=4)
    manual = [c for c in notebook.cells
              if c.metadata.get("nbgrader", {}).get("solution") and c.metadata["nbgrader"].get("grade")]
    assert manual, f"{chapter} has no manually graded reflection cell"
    for cell in manual:
        assert cell.metadata["nbgrader"].get("points", 0) > 0


def test_release_is_in_step_with_the_solutions(tmp_path):
    course.release(release_dir=tmp_path, source=ROOT / "solutions")
    for chapter in CHAPTERS:
        name = f"{chapter}/{chapter}.ipynb"
        fresh = json.loads((tmp_path / name).read_text())
        committed = json.loads((ROOT / "notebooks" / name).read_text())
        assert committed == fresh, f"notebooks/{name} has drifted from solutions/: run `make release`"


@pytest.mark.parametrize("path", COMMITTED_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebooks_are_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} carries outputs"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_test_cell_has_hidden_cases(chapter):
    """Visible inputs are public: a lookup table of them must not earn an item on its own."""
    from autograde.verdicts import expected_calls

    for cell, meta in _autograded_test_cells(chapter):
        if cell.cell_type == "code":
            assert any(hidden for _, hidden in expected_calls(cell.source)), meta["grade_id"]
