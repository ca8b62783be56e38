"""Chapters 3 and 4: the reference functions of ppo_lab/exercises/ppo_clip.py and ppo_in_practice.py, and the exercise checks built on them.

Reference tests use hand-computed cases and properties (hypothesis), never the function's own code
re-run. Check tests take the solutions from the chapter's source notebook (what the autograder
treats as the right answer) and the mistake catalogues from ppo_lab/checks.
"""
import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ppo_lab
from ppo_lab import (
    adaptive_beta,
    adaptive_epsilon,
    clip_active_mask,
    get_lr,
    pg_loss,
    ppo_clip_objective,
    ppo_kl_objective,
    ppo_objective_with_diagnostics,
)
from ppo_lab.checks import get, verify
from ppo_lab.checks.registry import visible_seed
from ppo_lab.checks.student import run_answer

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ("03_ppo_clip", "04_ppo_in_practice")  # one check module serves both
SOURCES = [ROOT / "solutions" / c / f"{c}.ipynb" for c in CHAPTERS]
RELEASES = [ROOT / "notebooks" / c / f"{c}.ipynb" for c in CHAPTERS]
CHAPTER_CHECKS = [
    "test_ppo_clip_objective", "test_clip_active_mask", "test_ppo_objective_with_diagnostics",
    "test_ppo_kl_objective", "test_adaptive_beta", "test_adaptive_epsilon", "test_get_lr",
    "test_gradients_at_ratio_one", "test_surrogate_lower_bound_gap", "test_clip_boundary_kl",
    "test_lr_sweep_clip_fraction",
]
SLOW_CHECKS = {"test_lr_sweep_clip_fraction"}  # trains small policies

# The four clip cases, one sample each: (A > 0, r high), (A > 0, r low), (A < 0, r low), (A < 0, r high).
FOUR_RATIOS = torch.tensor([1.5, 0.5, 0.5, 1.5])
FOUR_ADVANTAGES = torch.tensor([1.0, 1.0, -1.0, -1.0])


# --- ppo_clip_objective ------------------------------------------------------------------------------

def test_clip_objective_four_cases_by_hand():
    ratio = FOUR_RATIOS.clone().requires_grad_(True)
    loss = ppo_clip_objective(ratio, FOUR_ADVANTAGES, epsilon=0.2)
    # per-sample min: min(1.5, 1.2)=1.2, min(0.5, 0.8)=0.5, min(-0.5, -0.8)=-0.8, min(-1.5, -1.2)=-1.5
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 0.8 - 1.5) / 4)
    (grad,) = torch.autograd.grad(loss, ratio)
    # clipped samples (1 and 3) have no gradient; the others have -A / B
    assert grad.tolist() == pytest.approx([0.0, -0.25, 0.0, 0.25])


def test_clip_objective_does_not_differentiate_advantages():
    advantages = FOUR_ADVANTAGES.clone().requires_grad_(True)
    loss = ppo_clip_objective(FOUR_RATIOS.clone().requires_grad_(True), advantages)
    assert torch.autograd.grad(loss, advantages, allow_unused=True)[0] is None


ratios_and_advantages = st.integers(1, 40).flatmap(lambda b: st.tuples(
    st.lists(st.floats(0.05, 5.0), min_size=b, max_size=b),
    st.lists(st.floats(-10.0, 10.0), min_size=b, max_size=b),
    st.floats(0.01, 0.99),
))


@given(ratios_and_advantages)
def test_clipped_surrogate_is_a_lower_bound_of_the_unclipped_one(data):
    ratio, advantages, epsilon = torch.tensor(data[0]), torch.tensor(data[1]), data[2]
    unclipped_loss = -(ratio * advantages).mean()
    assert ppo_clip_objective(ratio, advantages, epsilon).item() >= unclipped_loss.item() - 1e-5


@settings(deadline=None)
@given(st.integers(1, 30), st.integers(2, 6), st.floats(0.01, 0.99), st.integers(0, 2**31 - 1))
def test_at_ratio_one_the_clip_gradient_is_the_policy_gradient(batch, num_actions, epsilon, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, num_actions, generator=generator, requires_grad=True)
    actions = torch.randint(0, num_actions, (batch,), generator=generator)
    advantages = torch.randn(batch, generator=generator)
    log_probs = torch.log_softmax(logits, -1)[torch.arange(batch), actions]
    ratio = torch.exp(log_probs - log_probs.detach())
    (clip_grad,) = torch.autograd.grad(ppo_clip_objective(ratio, advantages, epsilon), logits, retain_graph=True)
    (pg_grad,) = torch.autograd.grad(pg_loss(log_probs, advantages), logits)
    torch.testing.assert_close(clip_grad, pg_grad)


def test_clip_objective_accepts_time_major_rollouts():
    ratio, advantages = FOUR_RATIOS.view(2, 2), FOUR_ADVANTAGES.view(2, 2)
    assert ppo_clip_objective(ratio, advantages).item() == pytest.approx(ppo_clip_objective(FOUR_RATIOS, FOUR_ADVANTAGES).item())


# --- clip_active_mask ------------------------------------------------------------------------------

def test_clip_active_mask_four_cases_and_boundaries():
    assert clip_active_mask(FOUR_RATIOS, FOUR_ADVANTAGES, 0.2).tolist() == [True, False, True, False]
    # exactly at 1 +/- eps (0.25 is exact in binary) and A = 0: the terms are equal, nothing is removed
    ratio = torch.tensor([1.25, 0.75, 1.5, 0.5])
    advantages = torch.tensor([1.0, -1.0, 0.0, 0.0])
    assert clip_active_mask(ratio, advantages, 0.25).tolist() == [False, False, False, False]


@given(ratios_and_advantages)
def test_clip_active_mask_is_exactly_where_the_gradient_vanishes(data):
    ratio = torch.tensor(data[0]).requires_grad_(True)
    advantages, epsilon = torch.tensor(data[1]), data[2]
    near_boundary = ((ratio.detach() - (1 + epsilon)).abs() < 1e-4) | ((ratio.detach() - (1 - epsilon)).abs() < 1e-4)
    mask = clip_active_mask(ratio.detach(), advantages, epsilon)
    assert mask.dtype == torch.bool
    # the float32 values the function sees (a tiny float64 advantage is 0 in float32)
    expected = [(a > 0 and r > 1 + epsilon) or (a < 0 and r < 1 - epsilon)
                for r, a in zip(ratio.tolist(), advantages.tolist())]
    keep = ~near_boundary
    assert mask[keep].tolist() == [e for e, k in zip(expected, keep.tolist()) if k]
    # per-sample gradient of the loss: zero where the mask is True, -A/B elsewhere
    (grad,) = torch.autograd.grad(ppo_clip_objective(ratio, advantages, epsilon), ratio)
    expected_grad = torch.where(mask, torch.zeros_like(advantages), -advantages / len(advantages))
    torch.testing.assert_close(grad[keep], expected_grad[keep])


# --- ppo_objective_with_diagnostics ------------------------------------------------------------------

def test_diagnostics_by_hand():
    old = torch.log(torch.tensor([0.5, 0.5]))
    new = torch.log(torch.tensor([0.6, 0.25])).requires_grad_(True)  # ratios 1.2 and 0.5
    result = ppo_objective_with_diagnostics(old, new, torch.tensor([1.0, -1.0]), epsilon=0.1)
    assert set(result) == {"loss", "clip_fraction", "approx_kl", "ratio_mean", "ratio_std"}
    assert result["loss"].item() == pytest.approx(-(1.1 - 0.9) / 2)  # min(1.2, 1.1), min(-0.5, -0.9)
    assert result["clip_fraction"] == pytest.approx(1.0)
    assert result["approx_kl"] == pytest.approx(((0.2 - math.log(1.2)) + (-0.5 - math.log(0.5))) / 2, rel=1e-5)
    assert result["ratio_mean"] == pytest.approx(0.85)
    assert result["ratio_std"] == pytest.approx(0.7 / math.sqrt(2), rel=1e-5)
    assert all(type(result[key]) is float for key in ("clip_fraction", "approx_kl", "ratio_mean", "ratio_std"))


def test_diagnostics_gradient_flows_only_into_the_new_policy():
    old = torch.tensor([-1.0, -2.0, -0.5]).requires_grad_(True)
    new = torch.tensor([-0.9, -2.3, -0.5]).requires_grad_(True)
    loss = ppo_objective_with_diagnostics(old, new, torch.tensor([1.0, -1.0, 0.5]))["loss"]
    grad_new, grad_old = torch.autograd.grad(loss, [new, old], allow_unused=True)
    assert grad_old is None and grad_new.abs().sum() > 0


def test_diagnostics_survive_very_unlikely_actions_and_batch_of_one():
    old = torch.tensor([-115.0])
    result = ppo_objective_with_diagnostics(old, old + 0.1, torch.tensor([2.0]))
    assert result["ratio_mean"] == pytest.approx(math.exp(0.1), rel=1e-5)
    assert result["ratio_std"] == 0.0 and math.isfinite(result["approx_kl"])


# --- ppo_kl_objective and adaptive_beta --------------------------------------------------------------

def test_kl_objective_by_hand():
    old_logits = torch.tensor([[0.0, 0.0]])  # p_old = (0.5, 0.5)
    new_logits = torch.tensor([[math.log(3.0), 0.0]])  # p_new = (0.75, 0.25)
    kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(old || new), not (new || old)
    loss = ppo_kl_objective(torch.tensor([1.5]), torch.tensor([2.0]), old_logits, new_logits, beta=0.5)
    assert loss.item() == pytest.approx(-(3.0 - 0.5 * kl), rel=1e-6)


def test_kl_objective_does_not_differentiate_the_old_policy():
    old_logits = torch.randn(4, 3, requires_grad=True)
    new_logits = torch.randn(4, 3, requires_grad=True)
    loss = ppo_kl_objective(torch.ones(4), torch.ones(4), old_logits, new_logits, beta=1.0)
    grad_new, grad_old = torch.autograd.grad(loss, [new_logits, old_logits], allow_unused=True)
    assert (grad_old is None or not grad_old.any()) and grad_new.abs().sum() > 0


@given(st.floats(1e-4, 10.0), st.floats(1e-4, 1.0), st.floats(0.0, 2.0))
def test_adaptive_beta_halves_doubles_or_keeps(beta, target, kl_over_target):
    kl = kl_over_target * target
    new_beta = adaptive_beta(beta, kl, target)
    if kl < target / 1.5:
        assert new_beta == pytest.approx(beta / 2)
    elif kl > target * 1.5:
        assert new_beta == pytest.approx(beta * 2)
    else:
        assert new_beta == beta


# --- schedules -------------------------------------------------------------------------------------

@given(st.integers(1, 10_000), st.floats(1e-6, 1.0))
def test_get_lr_endpoints_and_linearity(total, initial_lr):
    assert get_lr(0, total, initial_lr) == pytest.approx(initial_lr)
    assert get_lr(total, total, initial_lr) == pytest.approx(0.0, abs=1e-12)
    if total >= 2:  # equal steps: the second difference of a linear schedule is 0
        a, b, c = (get_lr(u, total, initial_lr) for u in (0, total // 2, 2 * (total // 2)))
        assert (c - b) == pytest.approx(b - a, abs=1e-9)
        assert b == pytest.approx(initial_lr * (1 - (total // 2) / total))


@given(st.integers(1, 10_000), st.floats(0.01, 0.99), st.floats(0.01, 0.99))
def test_adaptive_epsilon_endpoints_and_linearity(total, start, end):
    assert adaptive_epsilon(0, total, start, end) == pytest.approx(start)
    assert adaptive_epsilon(total, total, start, end) == pytest.approx(end)
    middle = total // 2
    assert adaptive_epsilon(middle, total, start, end) == pytest.approx(start + (end - start) * middle / total)


# --- bad input: ValueError naming the argument -------------------------------------------------------

NAN = float("nan")


@pytest.mark.parametrize("call, argument", [
    (lambda: ppo_clip_objective(torch.ones(3), torch.ones(4)), "ratio"),
    (lambda: ppo_clip_objective(torch.tensor([1.0, NAN]), torch.ones(2)), "ratio"),
    (lambda: ppo_clip_objective(torch.ones(2), torch.tensor([1.0, float("inf")])), "advantages"),
    (lambda: ppo_clip_objective(torch.tensor([1.0, -0.5]), torch.ones(2)), "ratio"),
    (lambda: ppo_clip_objective(torch.ones(2), torch.ones(2), epsilon=0.0), "epsilon"),
    (lambda: ppo_clip_objective(torch.ones(2), torch.ones(2), epsilon=1.0), "epsilon"),
    (lambda: ppo_clip_objective(torch.ones(2), torch.ones(2), epsilon=-0.1), "epsilon"),
    (lambda: clip_active_mask(torch.ones(2), torch.ones(2), epsilon=1.5), "epsilon"),
    (lambda: clip_active_mask(torch.ones(2, 3), torch.ones(3, 2)), "advantages"),
    (lambda: ppo_objective_with_diagnostics(torch.zeros(3), torch.zeros(2), torch.ones(3)), "new_log_probs"),
    (lambda: ppo_objective_with_diagnostics(torch.tensor([NAN]), torch.zeros(1), torch.ones(1)), "old_log_probs"),
    (lambda: ppo_kl_objective(torch.ones(2), torch.ones(2), torch.zeros(3, 2), torch.zeros(3, 2)), "ratio"),
    (lambda: ppo_kl_objective(torch.ones(2), torch.ones(2), torch.zeros(2, 2), torch.zeros(2, 2), beta=-1.0), "beta"),
    (lambda: adaptive_beta(0.0, 0.01), "beta"),
    (lambda: adaptive_beta(1.0, -0.01), "kl"),
    (lambda: adaptive_beta(1.0, 0.01, target_kl=0.0), "target_kl"),
    (lambda: get_lr(-1, 10), "update"),
    (lambda: get_lr(11, 10), "update"),
    (lambda: get_lr(2.5, 10), "update"),
    (lambda: get_lr(0, 0), "total_updates"),
    (lambda: get_lr(0, 10, initial_lr=0.0), "initial_lr"),
    (lambda: adaptive_epsilon(11, 10), "update"),
    (lambda: adaptive_epsilon(0, 10, start=1.2), "start"),
    (lambda: adaptive_epsilon(0, 10, end=0.0), "end"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


# --- the checks: solutions earn the points, classic mistakes do not ----------------------------------

def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _nbgrader(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


@pytest.fixture(scope="module")
def solutions() -> dict:
    """The source notebooks' set-up cells and every solution cell, run in one namespace."""
    namespace: dict = {}
    for source in SOURCES:
        setup = next(c for c in _cells(source) if c["cell_type"] == "code")
        exec("\n".join(line for line in "".join(setup["source"]).splitlines() if not line.startswith("%")), namespace)
        for cell in _cells(source):
            if cell["cell_type"] == "code" and _nbgrader(cell).get("solution"):
                exec("".join(cell["source"]), namespace)
    return namespace


def _function_of(grade_id: str) -> str:
    return "lr_sweep" if grade_id == "test_lr_sweep_clip_fraction" else grade_id.removeprefix("test_")


def _verdict(grade_id, answer, seed, hidden):
    outputs, used_reference = run_answer(get(grade_id), answer, seed, hidden)
    return verify(grade_id, hidden, seed, outputs, used_reference)


@pytest.mark.parametrize("grade_id", CHAPTER_CHECKS)
def test_the_solution_passes_visible_and_hidden_cases(grade_id, solutions):
    torch.set_num_threads(1)
    answer = solutions[_function_of(grade_id)]
    assert _verdict(grade_id, answer, visible_seed(grade_id), hidden=False).passed
    for seed in (1, 2) if grade_id in SLOW_CHECKS else (1, 2, 3, 4, 5):
        verdict = _verdict(grade_id, answer, seed, hidden=True)
        assert verdict.passed, verdict.message


MISTAKES = [(grade_id, mistake) for grade_id in CHAPTER_CHECKS for mistake in get(grade_id).mistakes]


@pytest.mark.parametrize("grade_id, mistake", MISTAKES, ids=[f"{g}-{m.name}" for g, m in MISTAKES])
def test_each_classic_mistake_loses_the_points_and_is_named(grade_id, mistake):
    torch.set_num_threads(1)
    verdicts = [_verdict(grade_id, mistake.implementation, visible_seed(grade_id), hidden=False),
                _verdict(grade_id, mistake.implementation, 7, hidden=True)]
    assert not verdicts[1].passed  # the test cell runs both: failing the hidden cases loses its points
    assert mistake.name in {v.mistake for v in verdicts}
    named = next(v for v in verdicts if v.mistake == mistake.name)
    assert mistake.message in named.message


def test_every_exercise_has_at_least_two_recognised_mistakes():
    assert all(len(get(grade_id).mistakes) >= 2 for grade_id in CHAPTER_CHECKS)


def test_visible_feedback_says_what_was_expected_and_what_came_back(solutions):
    def max_not_min(ratio, advantages, epsilon=0.2):
        return -torch.max(ratio * advantages, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages).mean()

    verdict = _verdict("test_ppo_clip_objective", max_not_min, visible_seed("test_ppo_clip_objective"), hidden=False)
    assert "should be" in verdict.message and ", got" in verdict.message
    assert "looks like max instead of min" in verdict.message


def test_unimplemented_stubs_earn_nothing():
    def stub(*args, **kwargs):
        raise NotImplementedError()

    for grade_id in CHAPTER_CHECKS:
        verdict = _verdict(grade_id, stub, visible_seed(grade_id), hidden=False)
        assert not verdict.passed and "not implemented" in verdict.message


def test_calling_the_reference_earns_nothing():
    verdict = _verdict("test_ppo_clip_objective", lambda *a, **k: ppo_lab.ppo_clip_objective(*a, **k), 3, True)
    assert not verdict.passed and verdict.mistake == "uses_reference"


# --- the notebooks' structure ----------------------------------------------------------------------

@pytest.mark.parametrize("path", [*SOURCES, *RELEASES], ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_every_graded_cell_has_points_and_checks_its_own_grade_id(path):
    graded = [c for c in _cells(path) if _nbgrader(c).get("grade")]
    ids = [_nbgrader(c)["grade_id"] for c in graded]
    assert len(ids) == len(set(ids))
    assert set(CHAPTER_CHECKS) <= {i for p in (SOURCES if "solutions" in path.parts else RELEASES)
                                   for i in (_nbgrader(c).get("grade_id") for c in _cells(p))}
    for cell in graded:
        meta = _nbgrader(cell)
        assert meta["schema_version"] == 3 and meta["points"] > 0
        if cell["cell_type"] == "code":
            assert f'check("{meta["grade_id"]}"' in "".join(cell["source"])
        else:  # written answers: derivations and reflections, manually graded
            assert meta["grade_id"].startswith(("derivation_", "reflection_")) and meta["solution"]


@pytest.mark.parametrize("release", RELEASES, ids=CHAPTERS)
def test_release_has_stubs_and_no_solutions_or_hidden_tests(release):
    text = "".join("".join(c["source"]) for c in _cells(release))
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text and "hidden=True" not in text
    stubs = [c for c in _cells(release) if c["cell_type"] == "code" and _nbgrader(c).get("solution")]
    assert stubs and all("raise NotImplementedError()" in "".join(c["source"]) for c in stubs)
    assert all(not c.get("outputs") for c in _cells(release) if c["cell_type"] == "code")
