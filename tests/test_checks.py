"""The check protocol itself: what a student sees, what the grader records and verifies."""
import importlib
import json

import pytest
import torch

import ppo_lab
from ppo_lab.checks import answer_or_reference, check, get, verify
from ppo_lab.checks import protocol
from ppo_lab.checks.protocol import GRADING_DIR_VARIABLE, Record, decode, encode
from ppo_lab.checks.registry import visible_seed
from ppo_lab.checks.student import run_answer


def right_pg_loss(log_probs, advantages):
    return -(log_probs * advantages).mean()


def test_student_mode_passes_a_right_answer_and_says_so(capsys):
    check("test_pg_loss", right_pg_loss)
    check("test_pg_loss", right_pg_loss, hidden=True)
    assert "✓ test_pg_loss" in capsys.readouterr().out


def test_student_mode_names_expected_value_and_mistake():
    with pytest.raises(AssertionError) as failure:
        check("test_pg_loss", lambda log_probs, advantages: (log_probs * advantages).mean())
    message = str(failure.value)
    assert "should be" in message and "got" in message
    assert "minus sign" in message


def test_hidden_failures_do_not_reveal_values():
    with pytest.raises(AssertionError) as failure:
        check("test_pg_loss", lambda log_probs, advantages: -(log_probs * advantages).sum(), hidden=True)
    message = str(failure.value)
    assert "should be" not in message
    assert "sum instead of a mean" in message


@pytest.mark.parametrize("alias", [
    lambda: ppo_lab.pg_loss,
    lambda: ppo_lab.exercises.pg.pg_loss,
    lambda: (lambda log_probs, advantages: getattr(__import__("ppo_" + "lab"), "pg_" + "loss")(log_probs, advantages)),
    lambda: importlib.reload(importlib.import_module("ppo_lab.exercises.pg")).pg_loss,
])
def test_using_the_reference_earns_nothing_however_it_is_reached(alias):
    answer = alias()
    outputs, used_reference = run_answer(get("test_pg_loss"), answer, seed=3, hidden=True)
    verdict = verify("test_pg_loss", True, 3, outputs, used_reference)
    assert used_reference and not verdict.passed and verdict.mistake == "uses_reference"


def write_grading_cases(grading_dir, grade_id, hidden_seed):
    """What the grader does before the kernel starts: the cases of both calls, into the box."""
    item = get(grade_id)
    protocol.write_cases(grading_dir, grade_id, False, item.run, item.cases(visible_seed(grade_id), False))
    protocol.write_cases(grading_dir, grade_id, True, item.run, item.cases(hidden_seed, True))


@pytest.fixture
def published(monkeypatch):
    """The records check sends, as the grader receives them (a display message each)."""
    sent = []
    monkeypatch.setattr("IPython.display.display", lambda data, raw: sent.append(data[protocol.RECORD_MIME]))
    return sent


def test_grading_mode_runs_the_graders_cases_and_records_outputs_instead_of_judging(tmp_path, monkeypatch, published):
    write_grading_cases(tmp_path, "test_pg_loss", 987)
    monkeypatch.setenv(GRADING_DIR_VARIABLE, str(tmp_path))
    wrong = lambda log_probs, advantages: (log_probs * advantages).mean()  # noqa: E731
    check("test_pg_loss", wrong)  # no AssertionError inside the kernel: the grader decides
    check("test_pg_loss", right_pg_loss, hidden=True)
    visible, hidden = [Record.from_dict(data) for data in published]
    assert (visible.grade_id, visible.hidden, hidden.hidden) == ("test_pg_loss", False, True)
    assert not verify("test_pg_loss", False, visible_seed("test_pg_loss"), visible.outputs).passed
    assert verify("test_pg_loss", True, 987, hidden.outputs).passed
    # Outputs of the right answer on other inputs than the grader's fail.
    assert not verify("test_pg_loss", True, 988, hidden.outputs).passed


def test_grading_mode_without_the_graders_cases_records_nothing(tmp_path, monkeypatch, published):
    monkeypatch.setenv(GRADING_DIR_VARIABLE, str(tmp_path))
    with pytest.raises(RuntimeError, match="no hidden cases for 'test_pg_loss'"):
        check("test_pg_loss", right_pg_loss, hidden=True)
    assert published == []


def test_a_record_made_after_the_measuring_code_changed_says_so(tmp_path, monkeypatch, published):
    write_grading_cases(tmp_path, "test_pg_loss", 987)
    monkeypatch.setenv(GRADING_DIR_VARIABLE, str(tmp_path))
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *args, **kwargs: real(*args, **kwargs))
    check("test_pg_loss", right_pg_loss, hidden=True)
    assert "torch.autograd.grad" in Record.from_dict(published[0]).changed


def test_grading_mode_demos_run_the_students_answer(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(GRADING_DIR_VARIABLE, str(tmp_path))
    wrong = lambda log_probs, advantages: 0  # noqa: E731
    assert answer_or_reference(wrong, "test_pg_loss") is wrong


def _nested(depth):
    data = []
    for _ in range(depth):
        data = [data]
    return data


@pytest.mark.parametrize("data", ["", {}, [1], {"grade_id": 1, "hidden": False, "outputs": []},
                                  {"grade_id": "a", "hidden": "yes", "outputs": []},
                                  {"grade_id": "a", "hidden": True, "outputs": {}},
                                  {"grade_id": "a", "hidden": True, "outputs": [], "changed": [3]},
                                  {"grade_id": "a", "hidden": True, "outputs": _nested(100_000)}])
def test_malformed_records_are_refused(data):
    with pytest.raises(ValueError, match="malformed record"):
        Record.from_dict(data)


def test_the_hidden_seed_changes_the_hidden_cases():
    a = get("test_pg_loss").cases(1, hidden=True)
    b = get("test_pg_loss").cases(2, hidden=True)
    assert not torch.equal(a[1].kwargs["log_probs"], b[1].kwargs["log_probs"])


@pytest.mark.parametrize("forged", [
    "not a list",
    [],
    [{"tensor": {"data": [1.0], "dtype": "os.system", "shape": [1]}}],
    [{"value": "0.1"}],
    [{"unsupported": "Evil"}],
    [{"dict": {"value": {"tensor": {"data": [[1.0]], "dtype": "float32", "shape": [7, 7]}}}}],
])
def test_forged_or_malformed_records_fail_without_crashing(forged):
    assert not verify("test_pg_loss", False, visible_seed("test_pg_loss"), forged).passed


def test_encode_decode_round_trip():
    value = {"loss": torch.tensor(1.5), "mask": torch.tensor([True, False]), "n": 3, "xs": (0.5, None)}
    back = decode(json.loads(json.dumps(encode(value))))
    assert torch.equal(back["loss"], value["loss"]) and torch.equal(back["mask"], value["mask"])
    assert back["n"] == 3 and back["xs"] == [0.5, None]


def test_student_errors_become_messages_not_crashes():
    def broken(log_probs, advantages):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        check("test_pg_loss", broken)


def test_answer_or_reference_says_which_one_runs(capsys):
    assert answer_or_reference(right_pg_loss, "test_pg_loss") is right_pg_loss
    assert answer_or_reference(lambda log_probs, advantages: 0, "test_pg_loss") is ppo_lab.pg_loss
    out = capsys.readouterr().out
    assert "Using your pg_loss" in out and "uses ppo_lab.exercises.pg.pg_loss instead" in out


def test_unknown_check_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown check 'test_nope'"):
        check("test_nope", right_pg_loss)
