"""Find submissions and turn each notebook into something nbgrader can grade, or a status.

nbgrader matches cells by grade_id and restores locked cells itself (OverwriteCells), but a
submission that is not valid nbformat-4 JSON, is renamed, has duplicated/split cells
(jupyter/nbgrader#1083) or re-ordered cells trips it or grades it wrongly. Here, before any
student code runs: unreadable -> ``invalid``; absent -> ``missing``; a single unexpected
notebook stands in for a single absent one; cells go back to the course's order (cells the
student added stay after the cell they followed); a second cell with the same grade_id loses
its nbgrader metadata, so it still runs as the student's own code.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

MAX_NOTEBOOK_BYTES = 20_000_000
DECISIVE = ("grade", "solution", "locked", "points", "task", "grade_id", "schema_version")  # nbgrader cell metadata


@dataclass
class Prepared:
    """The notebooks of one (student, assignment), ready for nbgrader."""

    notebooks: dict[str, nbformat.NotebookNode] = field(default_factory=dict)  # master name -> notebook
    problems: dict[str, tuple[str, str]] = field(default_factory=dict)  # master name -> (status, reason)
    notes: list[str] = field(default_factory=list)


def fingerprint(folder: Path) -> str:
    """Content hash of a submission folder: a re-run grades it again only if it changed."""
    digest = hashlib.sha256()
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def prepare(folder: Path, masters: dict[str, nbformat.NotebookNode]) -> Prepared:
    """``masters``: the released notebooks by name (they carry the course's cell order and ids)."""
    prepared = Prepared()
    found = {p.stem: p for p in sorted(folder.glob("*.ipynb"))} if folder.is_dir() else {}
    missing = [name for name in masters if name not in found]
    extra = [name for name in found if name not in masters]
    if len(missing) == 1 and len(extra) == 1:
        prepared.notes.append(f"graded {extra[0]}.ipynb as {missing[0]}.ipynb (renamed)")
        found[missing[0]] = found.pop(extra[0])
        missing, extra = [], []
    for name in extra:
        prepared.notes.append(f"ignored {name}.ipynb (not part of the assignment)")
    for name, master in masters.items():
        if name not in found:
            prepared.problems[name] = ("missing", f"{name}.ipynb was not submitted")
            continue
        try:
            prepared.notebooks[name] = _in_course_order(_read(found[name]), master, prepared.notes)
        except ValueError as error:
            prepared.problems[name] = ("invalid", f"{name}.ipynb: {error}")
    return prepared


def _read(path: Path) -> nbformat.NotebookNode:
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES // 10**6} MB")
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"not valid JSON ({error})"[:200]) from None
    if not isinstance(data, dict) or data.get("nbformat") != 4:
        version = data.get("nbformat") if isinstance(data, dict) else None
        raise ValueError(f"nbformat {version!r}; the course's notebooks are nbformat 4")
    try:
        notebook = nbformat.reads(raw.decode(), as_version=nbformat.NO_CONVERT)
        nbformat.validate(notebook)
    except Exception as error:  # noqa: BLE001 - nbformat raises several kinds
        raise ValueError(f"not a valid notebook ({type(error).__name__}: {str(error)[:150]})") from None
    return notebook


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _in_course_order(notebook, master, notes: list[str]):
    """Cells in the master's order, each known cell with the master's nbgrader metadata (a
    changed ``grade``/``points`` flag makes nbgrader's checksum check crash, not just mis-grade)."""
    masters = {grade_id(c): c for c in master.cells if grade_id(c)}
    order = list(masters)
    placed: dict[str | None, list] = {None: []}  # anchor grade_id -> [its cell, cells added after it]
    anchor = None
    for cell in notebook.cells:
        cell_id = grade_id(cell)
        if cell_id in masters and cell_id not in placed:
            original = {k: v for k, v in masters[cell_id].metadata.nbgrader.items() if k in DECISIVE}
            edited = {k: v for k, v in cell.metadata.nbgrader.items() if k in DECISIVE}
            if edited != original:
                notes.append(f"nbgrader metadata of cell {cell_id} was edited: restored")
                cell.metadata["nbgrader"] = {**{k: v for k, v in cell.metadata.nbgrader.items()
                                                if k not in DECISIVE}, **copy.deepcopy(original)}
            anchor = cell_id
            placed[anchor] = [cell]
            continue
        if cell_id in masters:
            notes.append(f"cell {cell_id} appears twice: the copy runs as your own code")
        if "nbgrader" in cell.metadata:
            cell.metadata.pop("nbgrader")  # a copy, or an id the course does not know: plain code
        placed[anchor].append(cell)
    cells = placed[None] + [cell for cell_id in order for cell in placed.get(cell_id, [])]
    if list(placed)[1:] != [cell_id for cell_id in order if cell_id in placed]:
        notes.append("cells were moved: graded in the course's order")
    notebook.cells = cells
    notebook.metadata["kernelspec"] = master.metadata.get("kernelspec", notebook.metadata.get("kernelspec"))
    return notebook
