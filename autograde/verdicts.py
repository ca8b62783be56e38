"""Score the autograded items from what ``check`` recorded, in the grader's own process.

The records come from the student's box and are untrusted data: each is only a claim "my answer
produced these outputs", judged here by ``ppo_lab.checks.judge.verify`` on the grader's own copy
of the cases (regenerated from the seed the grader chose; the box only ever saw a copy). A grade
cell earns its points only if every ``check(...)`` call of the course's own (master) test cell
sent, while that cell ran, a record whose outputs match the reference on those cases.
"""
from __future__ import annotations

import ast
from ppo_lab.checks.protocol import Record

from .results import Item

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


def read_records(sent: list, allowed: dict[str, set]) -> tuple[dict, list[str]]:
    """The first well-formed record of each (grade_id, hidden) that a test cell calling that check
    sent (``sent``: [cell grade_id, record data] in arrival order; ``allowed``: cell grade_id ->
    its expected calls), and the runtime evidence of interference: a malformed record, or one
    made after student code changed the measuring code (``Record.changed``)."""
    records, problems = {}, []
    for cell, data in sent:
        try:
            record = Record.from_dict(data)
        except ValueError:
            problems.append("malformed-record")
            continue
        key = (record.grade_id, record.hidden)
        if key in allowed.get(cell, ()) and key not in records:
            records[key] = record
            problems += [f"changed:{name}" for name in record.changed]
    return records, sorted(set(problems))


def judge_call(grade_id: str, hidden: bool, record: Record | None, seed: int) -> tuple[bool, str, str | None]:
    """(passed, message, mistake) for one expected check call."""
    from ppo_lab.checks.judge import verify

    if record is None:
        return False, f"{grade_id}: the {'hidden' if hidden else 'visible'} check did not run " \
                      "(the test cell stopped before it, or the notebook did)", None
    if record.changed:
        return False, f"{grade_id}: no points: before this check ran, the notebook changed code that measures " \
                      f"answers ({', '.join(record.changed)})", "changed_measuring_code"
    try:
        verdict = verify(grade_id, hidden, seed, record.outputs)
    except Exception as error:  # noqa: BLE001 - a malformed claim is a wrong answer, never a crash
        return False, f"{grade_id}: the recorded answer could not be judged ({type(error).__name__})", None
    return verdict.passed, verdict.message, verdict.mistake


def score_test_cell(grade_id: str, notebook: str, master_source: str, max_score: float, records: dict,
                    seeds: dict[tuple[str, bool], int]) -> Item | None:
    """The item for a test cell that uses ``check``; None for any other grade cell."""
    calls = expected_calls(master_source)
    if not calls:
        return None
    passed, messages, mistake = True, [], None
    for check_id, hidden in calls:
        ok, message, call_mistake = judge_call(check_id, hidden, records.get((check_id, hidden)), seeds[check_id, hidden])
        passed = passed and ok
        messages.append(message)
        mistake = mistake or call_mistake
    return Item(grade_id, notebook, max_score if passed else 0.0, max_score, " | ".join(messages), mistake)
