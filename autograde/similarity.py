"""Pairs of submissions whose answer to an exercise is unusually similar, for a human to review in
report.html. Never a score, never a status.

Each solution cell's code becomes a token stream with the names taken out (identifiers -> ``V``,
strings -> ``S``; keywords, operators, numbers and attribute names stay; comments and layout go),
then a winnowed set of k-gram hashes (the MOSS method, Schleimer et al. 2003). The release's stub
is subtracted, and so is anything most of the class wrote alike (a short exercise has one natural
answer: sharing it says nothing). Two answers are listed when their Jaccard similarity is at least
``THRESHOLD`` and both are long enough to mean something.
"""
from __future__ import annotations

import hashlib
import io
import keyword
import tokenize
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import nbformat

K = 5  # tokens per k-gram
WINDOW = 4  # k-grams per winnowing window
THRESHOLD = 0.8
MIN_TOKENS = 25  # shorter answers (a one-line loss) are alike by nature
COMMON = 0.2  # a fingerprint in more than this share of the class (and more than 5 answers) is common code


@dataclass(frozen=True)
class Pair:
    assignment: str
    cell: str  # the solution cell's grade_id
    first: str
    second: str
    similarity: float
    tokens: int  # the shorter answer's length in tokens


def tokens(source: str) -> list[str]:
    """The code's token stream without names, comments or layout."""
    from .static import python_source

    try:
        source = python_source(source)
    except Exception:  # noqa: BLE001 - IPython cannot read it: tokenize what is there
        pass
    stream, previous = [], ""
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.NAME:
                stream.append(token.string if keyword.iskeyword(token.string) or previous == "." else "V")
            elif token.type == tokenize.STRING:
                stream.append("S")
            elif token.type in (tokenize.OP, tokenize.NUMBER):
                stream.append(token.string)
            previous = token.string
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # a broken cell: compare what was read
    return stream


def fingerprints(stream: list[str]) -> set[int]:
    """Winnowing: the smallest k-gram hash of every window of WINDOW consecutive k-grams."""
    grams = [int.from_bytes(hashlib.blake2b(" ".join(stream[i:i + K]).encode(), digest_size=8).digest(), "big")
             for i in range(len(stream) - K + 1)]
    if len(grams) <= WINDOW:
        return set(grams)
    return {min(grams[i:i + WINDOW]) for i in range(len(grams) - WINDOW + 1)}


def similar_pairs(out: Path) -> list[Pair]:
    """Every chapter graded into the course ``out``, every solution cell."""
    pairs = []
    for folder in sorted(p for p in (out / "solutions").iterdir() if p.is_dir()) if (out / "solutions").is_dir() else []:
        for master_path in sorted(folder.glob("*.ipynb")):
            master = nbformat.read(master_path, as_version=4)
            release = out / "notebooks" / folder.name / master_path.name
            stubs = _cells(nbformat.read(release, as_version=4)) if release.exists() else {}
            answers: dict[str, dict[str, str]] = defaultdict(dict)  # cell -> student -> source
            for path in sorted((out / "submitted").glob(f"*/{folder.name}/{master_path.name}")):
                try:
                    cells = _cells(nbformat.read(path, as_version=4))
                except Exception:  # noqa: BLE001 - an unreadable notebook has nothing to compare
                    continue
                for cell in _solution_cells(master):
                    if cell in cells:
                        answers[cell][path.parent.parent.name] = cells[cell]
            for cell, by_student in answers.items():
                pairs += _pairs(folder.name, cell, by_student, stubs.get(cell, ""))
    return pairs


def _pairs(assignment: str, cell: str, by_student: dict[str, str], stub: str) -> list[Pair]:
    stub_prints = fingerprints(tokens(stub))
    streams = {s: tokens(source) for s, source in by_student.items()}
    prints = {s: fingerprints(stream) - stub_prints for s, stream in streams.items()
              if len(stream) - len(tokens(stub)) >= MIN_TOKENS}
    holders = Counter(f for fs in prints.values() for f in fs)
    limit = max(5, COMMON * len(by_student))
    prints = {s: {f for f in fs if holders[f] <= limit} for s, fs in prints.items()}
    shared: Counter = Counter()
    index = defaultdict(list)
    for student, fs in prints.items():
        for f in fs:
            index[f].append(student)
    for students in index.values():
        shared.update(combinations(sorted(students), 2))
    pairs = []
    for (first, second), common in shared.items():
        union = len(prints[first] | prints[second])
        similarity = common / union if union else 0.0
        if similarity >= THRESHOLD:
            pairs.append(Pair(assignment, cell, first, second, round(similarity, 3),
                              min(len(streams[first]), len(streams[second]))))
    return sorted(pairs, key=lambda p: (-p.similarity, p.first, p.second))


def _cells(notebook) -> dict[str, str]:
    return {c.metadata.nbgrader["grade_id"]: c.source for c in notebook.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade_id")}


def _solution_cells(master) -> list[str]:
    return [c.metadata.nbgrader["grade_id"] for c in master.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
