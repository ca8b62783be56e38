"""No number in a chapter's prose that the code measured: such numbers are printed by the code.

Every number in the markdown cells of a source notebook must be on the chapter's allow-list, kept in
the notebook's own metadata (``metadata.ppo_lab.prose_numbers``): hyperparameters, constants,
terms of equations, sizes of examples. A measurement typed into the prose fails here, on any
machine, before a student reads a number their own run does not reproduce. Numbering (sections,
exercises, chapters, list items) is not counted.
"""
import re
from pathlib import Path

import nbformat
import pytest

from autograde.chapters import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]

NUMBERING = re.compile(r"(?im)^\s*#+\s*\d+\.|^\s*\d+\.\s|\b(chapters?|sections?|exercises?|reflections?|derivations?|cell)"
                       r"\s+\d+(\s*(,|and|-|–)\s*\d+)*")
NUMBER = re.compile(r"(?<![\w.])[-−]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?(?![\w])")


def prose_numbers(notebook) -> set[str]:
    found = set()
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            text = NUMBERING.sub(" ", cell.source)
            found |= {n.replace("−", "-") for n in NUMBER.findall(text)}
    return found


@pytest.mark.parametrize("chapter", [c.id for c in CHAPTERS])
def test_every_number_in_the_prose_is_allowed(chapter):
    notebook = nbformat.read(ROOT / "solutions" / chapter / f"{chapter}.ipynb", as_version=4)
    allowed = set(notebook.metadata.get("ppo_lab", {}).get("prose_numbers", []))
    typed = sorted(prose_numbers(notebook) - allowed, key=lambda n: (len(n), n))
    assert not typed, (f"numbers in {chapter}'s markdown that are not on its allow-list: {typed}. A measured "
                       "number belongs in the output of the code that measured it (an f-string); a constant "
                       "goes on metadata.ppo_lab.prose_numbers")


def test_the_scan_sees_a_typed_measurement_and_skips_numbering():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "## 3. Runs\nExercise 2 of chapter 5: the return rose to 487.5 after 12 updates.\n1. first")])
    assert prose_numbers(notebook) == {"487.5", "12"}
