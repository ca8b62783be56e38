"""The exercise checks of chapter 7 (``ppo_lab/checks/continuous.py``): right answers written
independently pass, each classic mistake loses its item with its name in the feedback, and the
hidden cases hold what the chapter promises ([B, D] and [D] log-stds, B = 1, large batches merged
into tiny counts)."""
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from ppo_lab.checks import check, get, verify
from ppo_lab.checks.continuous import ENTROPY_MISTAKES, LOG_PROB_MISTAKES, MOMENTS_MISTAKES
from ppo_lab.checks.registry import visible_seed
from ppo_lab.checks.student import run_answer

IDS = ("test_gaussian_log_prob", "test_gaussian_entropy", "test_update_running_moments")
MISTAKES = {"test_gaussian_log_prob": LOG_PROB_MISTAKES, "test_gaussian_entropy": ENTROPY_MISTAKES,
            "test_update_running_moments": MOMENTS_MISTAKES}


def _grade(grade_id, answer, hidden, seed=None):
    """Exactly what the grader does: run the answer on the cases, then judge the outputs."""
    seed = (7 if hidden else visible_seed(grade_id)) if seed is None else seed
    outputs, used_reference = run_answer(get(grade_id), answer, seed, hidden)
    return verify(grade_id, hidden, seed, outputs, used_reference)


# --- right answers, written another way ------------------------------------------------------------

def own_log_prob(mean, log_std, actions):
    return Normal(mean, log_std.exp()).log_prob(actions).sum(-1)


def own_entropy(log_std):
    return 0.5 * torch.log(2 * math.pi * math.e * torch.exp(2 * log_std)).sum(-1)


def own_moments(mean, var, count, batch):
    """Welford's update, one sample at a time (population variance from the sum of squared deviations)."""
    mean, m2, n = mean.clone(), var * count, float(count)
    for x in batch:
        n += 1
        delta = x - mean
        mean = mean + delta / n
        m2 = m2 + delta * (x - mean)
    return mean, m2 / n, n


OWN = {"test_gaussian_log_prob": own_log_prob, "test_gaussian_entropy": own_entropy,
       "test_update_running_moments": own_moments}


@pytest.mark.parametrize("grade_id", IDS)
@pytest.mark.parametrize("hidden", [False, True])
def test_an_independent_correct_answer_passes(grade_id, hidden):
    verdict = _grade(grade_id, OWN[grade_id], hidden)
    assert verdict.passed, verdict.message


# --- each classic mistake loses its item, named ----------------------------------------------------

@pytest.mark.parametrize("grade_id, mistake", [(g, m) for g in IDS for m in MISTAKES[g]],
                         ids=lambda value: getattr(value, "name", value))
@pytest.mark.parametrize("hidden", [False, True])
def test_each_classic_mistake_loses_its_item_and_is_named(grade_id, mistake, hidden):
    verdict = _grade(grade_id, mistake.implementation, hidden)
    assert not verdict.passed, f"{mistake.name} passed {grade_id}"
    assert verdict.mistake == mistake.name, verdict.message
    assert mistake.message in verdict.message


def test_every_exercise_has_at_least_two_named_mistakes():
    for grade_id in IDS:
        names = [m.name for m in get(grade_id).mistakes]
        assert len(names) >= 2 and len(set(names)) == len(names)


def test_a_mean_over_dims_keeps_the_points_only_where_d_is_one():
    """D = 1 (Pendulum) cannot tell a sum from a mean; the visible cases already have D = 2."""
    wrong = next(m for m in LOG_PROB_MISTAKES if m.name == "log_prob_mean_over_dims").implementation
    d_one = [case for case in get("test_gaussian_log_prob").cases(7, True) if case.kwargs["mean"].shape[1] == 1]
    assert d_one and all(torch.allclose(wrong(**c.kwargs), own_log_prob(**c.kwargs)) for c in d_one)
    assert not _grade("test_gaussian_log_prob", wrong, hidden=False).passed


# --- what the feedback says ------------------------------------------------------------------------

def test_visible_message_says_what_was_expected_and_what_came_back():
    std_as_variance = next(m for m in LOG_PROB_MISTAKES if m.name == "std_used_as_variance").implementation
    with pytest.raises(AssertionError, match=r"result\['value'\]\[\d+\] should be -?\d.*, got -?\d.*used as the variance"):
        check("test_gaussian_log_prob", std_as_variance)
    unweighted = next(m for m in MOMENTS_MISTAKES if m.name == "unweighted_merge").implementation
    with pytest.raises(AssertionError, match=r"result\['mean'\]\[\d+\] should be .*equal weights"):
        check("test_update_running_moments", unweighted)


def test_a_detached_log_prob_loses_its_item_on_the_gradients():
    def detached(mean, log_std, actions):
        return own_log_prob(mean, log_std, actions).detach()

    verdict = _grade("test_gaussian_log_prob", detached, hidden=False)
    assert not verdict.passed and "no gradient reaches" in verdict.message


def test_stubs_and_wrong_return_types_fail_with_a_message():
    def stub(*args, **kwargs):
        raise NotImplementedError()

    for grade_id in IDS:
        assert "NotImplementedError" in _grade(grade_id, stub, hidden=False).message
    only_mean = lambda mean, var, count, batch: own_moments(mean, var, count, batch)[0]  # noqa: E731
    assert "tuple (mean, var, count)" in _grade("test_update_running_moments", only_mean, hidden=False).message


def test_a_count_returned_as_a_0_dim_tensor_is_read_as_its_number():
    def tensor_count(mean, var, count, batch):
        new_mean, new_var, new_count = own_moments(mean, var, count, batch)
        return new_mean, new_var, torch.tensor(new_count)

    assert _grade("test_update_running_moments", tensor_count, hidden=True).passed


# --- the hidden cases hold what the chapter promises -----------------------------------------------

def test_hidden_log_prob_cases_have_both_log_std_shapes_and_b_equal_one():
    cases = get("test_gaussian_log_prob").cases(seed=1, hidden=True)
    shapes = [(tuple(c.kwargs["mean"].shape), tuple(c.kwargs["log_std"].shape)) for c in cases]
    assert any(len(log_std) == 1 for _, log_std in shapes) and any(len(log_std) == 2 for _, log_std in shapes)
    assert any(mean[0] == 1 and len(log_std) == 1 for mean, log_std in shapes)
    assert any(mean[0] == 1 and len(log_std) == 2 for mean, log_std in shapes)
    entropy = [tuple(c.kwargs["log_std"].shape) for c in get("test_gaussian_entropy").cases(seed=1, hidden=True)]
    assert {1, 2} == {len(shape) for shape in entropy} and any(shape[0] == 1 for shape in entropy if len(shape) == 2)


def test_hidden_moment_cases_merge_large_batches_into_tiny_counts_and_b_equal_one():
    cases = get("test_update_running_moments").cases(seed=1, hidden=True)
    sizes = [(c.kwargs["count"], len(c.kwargs["batch"])) for c in cases]
    assert any(count <= 2 and size >= 1000 for count, size in sizes)
    assert any(size == 1 for _, size in sizes) and any(count == 0 for count, _ in sizes)
    assert any(count >= 1e6 for count, _ in sizes)
    assert any(c.kwargs["batch"].dim() == 1 for c in cases)  # scalar samples, as for rewards


def test_the_far_from_zero_case_defeats_the_sum_of_squares_in_float32_only():
    """The visible float32 case is where E[x^2] - E[x]^2 fails; the same data in float64 passes it."""
    naive = next(m for m in MOMENTS_MISTAKES if m.name == "sum_of_squares").implementation
    case = get("test_update_running_moments").cases(visible_seed("test_update_running_moments"), False)[2]
    mean, var, _ = naive(**case.fresh_kwargs())
    right_mean, right_var, _ = own_moments(**case.fresh_kwargs())
    assert (var - right_var).abs().max() > 10 * right_var.max()
    as64 = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in case.fresh_kwargs().items()}
    np.testing.assert_allclose(naive(**as64)[1].numpy(), own_moments(**as64)[1].numpy(), rtol=1e-4)
