"""The check protocol itself: what a student sees, what the grader records and verifies."""
import importlib
import json

import pytest
import torch

import ppo_lab
from ppo_lab.checks import answer_or_reference, check, get, verify
from ppo_lab.checks.core import GRADING_DIR_VARIABLE, decode, encode, run_answer, visible_seed


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
    lambda: ppo_lab.pg.pg_loss,
    lambda: (lambda log_probs, advantages: getattr(__import__("ppo_" + "lab"), "pg_" + "loss")(log_probs, advantages)),
    lambda: importlib.reload(importlib.import_module("ppo_lab.pg")).pg_loss,
])
def test_using_the_reference_earns_nothing_however_it_is_reached(alias):
    answer = alias()
    outputs, used_reference = run_answer(get("test_pg_loss"), answer, seed=3, hidden=True)
    verdict = verify("test_pg_loss", True, 3, outputs, used_reference)
    assert used_reference and not verdict.passed and verdict.mistake == "uses_reference"


def test_grading_mode_records_outputs_instead_of_judging(tmp_path, monkeypatch):
    (tmp_path / "seed").write_text("987\n")
    monkeypatch.setenv(GRADING_DIR_VARIABLE, str(tmp_path))
    wrong = lambda log_probs, advantages: (log_probs * advantages).mean()  # noqa: E731
    check("test_pg_loss", wrong)  # no AssertionError inside the kernel: the grader decides
    check("test_pg_loss", right_pg_loss, hidden=True)
    visible, hidden = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert visible["seed"] == visible_seed("test_pg_loss") and hidden["seed"] == 987
    assert not verify("test_pg_loss", False, visible["seed"], visible["outputs"]).passed
    assert verify("test_pg_loss", True, 987, hidden["outputs"]).passed


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
    assert "Using your pg_loss" in out and "uses ppo_lab.pg.pg_loss instead" in out


def test_unknown_check_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown check 'test_nope'"):
        check("test_nope", right_pg_loss)
