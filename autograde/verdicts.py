"""Score the autograded items from what ``check`` recorded, in the grader's own process.

The records come from the student's box and are untrusted data: each is only a claim "my answer
produced these outputs", which ``ppo_lab.checks.verify`` re-judges from scratch (it regenerates
the cases from the seed the grader chose and computes the reference outputs itself). A grade
cell earns its points only if every ``check(...)`` call in the course's own (master) test cell
has a record that verifies, and the answer did not use the reference.
"""
from __future__ import annotations

import ast
import json
from dataclasses import asdict, dataclass
from pathlib import Path

MAX_RECORDS_BYTES = 50_000_000


@dataclass
class Item:
    """One row of grades.csv: a grade cell of one student's notebook."""

    item: str  # grade_id
    notebook: str
    score: float | None  # None: waits for a manual grade
    max_score: float
    message: str = ""
    mistake: str | None = None
    flags: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def expected_calls(master_source: str) -> list[tuple[str, bool]]:
    """The ``check("<grade_id>", answer, hidden=...)`` calls of a master test cell, in order."""
    try:
        tree = ast.parse(master_source)
    except SyntaxError:
        return []
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "check" \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            hidden = any(k.arg == "hidden" and isinstance(k.value, ast.Constant) and k.value.value is True
                         for k in node.keywords)
            calls.append((node.args[0].value, hidden))
    return sorted(set(calls), key=calls.index)


def read_records(path: Path, windows: list, allowed: dict[str, set]) -> tuple[dict, list[dict], list[str]]:
    """Last well-formed record per (grade_id, hidden) written while a test cell that calls that
    check ran (``windows``: [cell grade_id, start byte, end byte]; ``allowed``: cell grade_id ->
    its expected (grade_id, hidden) calls); the records written at other times; problems seen."""
    records, outside, problems = {}, [], []
    if not path.is_file():
        return records, outside, problems
    with open(path, "rb") as f:
        data = f.read(MAX_RECORDS_BYTES + 1)
    if len(data) > MAX_RECORDS_BYTES:
        problems.append("records-too-large")
        data = data[:MAX_RECORDS_BYTES]
    offset = 0
    for line in data.splitlines(keepends=True):
        start, offset = offset, offset + len(line)
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = (record["grade_id"], record["hidden"])
            if not (isinstance(key[0], str) and isinstance(key[1], bool) and isinstance(record["outputs"], list)
                    and isinstance(record.get("used_reference"), bool)):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            problems.append("malformed-record")
            continue
        if any(begin <= start < end and key in allowed.get(cell, ()) for cell, begin, end in windows):
            records[key] = record
        elif len(outside) < 100:
            outside.append(record)
    return records, outside, problems


def forged(outside: list[dict], records: dict, hidden_seed: int) -> bool:
    """A record written outside the test cells (a copied test cell is harmless) that verifies
    where the test cell's own record does not: someone computed it."""
    for record in outside:
        key = (record["grade_id"], record["hidden"])
        if judge_call(*key, record, hidden_seed)[0] and not (key in records and judge_call(*key, records[key], hidden_seed)[0]):
            return True
    return False


def judge_call(grade_id: str, hidden: bool, record: dict | None, hidden_seed: int) -> tuple[bool, str, str | None, list[str]]:
    """(passed, message, mistake, flags) for one expected check call."""
    from ppo_lab.checks import core

    if record is None:
        return False, f"{grade_id}: the {'hidden' if hidden else 'visible'} check did not run " \
                      "(the test cell stopped before it, or the notebook did)", None, []
    seed = hidden_seed if hidden else core.visible_seed(grade_id)
    flags = [] if record.get("seed") == seed else ["forged-record"]
    try:
        verdict = core.verify(grade_id, hidden, seed, record["outputs"], record["used_reference"])
    except Exception as error:  # noqa: BLE001 - a malformed claim is a wrong answer, never a crash
        return False, f"{grade_id}: the recorded answer could not be judged ({type(error).__name__})", None, flags
    return verdict.passed, verdict.message, verdict.mistake, flags


def score_test_cell(grade_id: str, notebook: str, master_source: str, max_score: float, records: dict,
                    hidden_seed: int, reference_flagged: bool) -> Item | None:
    """The item for a test cell that uses ``check``; None for any other grade cell."""
    calls = expected_calls(master_source)
    if not calls:
        return None
    passed, messages, mistake, flags = True, [], None, []
    for check_id, hidden in calls:
        ok, message, call_mistake, call_flags = judge_call(check_id, hidden, records.get((check_id, hidden)), hidden_seed)
        passed = passed and ok
        messages.append(message)
        mistake = mistake or call_mistake
        flags += call_flags
        if call_mistake == "uses_reference":
            flags.append("reference-called")
    if reference_flagged:
        passed = False
        flags.append("reference")
        messages.append(f"{grade_id}: the exercise uses ppo_lab's reference implementation; no points for it")
    return Item(grade_id, notebook, max_score if passed else 0.0, max_score, " | ".join(messages), mistake,
                ";".join(sorted(set(flags))))
