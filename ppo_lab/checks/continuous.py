"""Checks for chapter 7: ``gaussian_log_prob``, ``gaussian_entropy`` and ``update_running_moments``.

test_gaussian_log_prob          [B, D] means and actions, log_std [D] (one per dimension, as in the
                                chapter's agent) or [B, D] (one per state); value and gradients
test_gaussian_entropy           log_std [D] -> [] and [B, D] -> [B]; value and gradient
test_update_running_moments     batches [B, ...] merged into running statistics: count = 0, B = 1,
                                large batches into tiny counts and tiny ones into huge counts,
                                float32 data far from zero with a small spread
"""
from __future__ import annotations

import math
import warnings
from functools import partial

import torch

from ..exercises import continuous
from . import runners
from .inputs import normal
from .judge import compare
from .protocol import Case
from .registry import Check, Mistake, register

_LOG_2PI = math.log(2 * math.pi)


def _uniform(generator, *shape, low, high):
    return low + (high - low) * torch.rand(shape, generator=generator)


# --- gaussian_log_prob ---------------------------------------------------------------------------

def _log_prob_kwargs(generator, batch, dim, *, per_state, spread=1.5, low=-1.5, high=0.5):
    """mean [B, D]; log_std [D] or [B, D] in [low, high); actions = mean + spread standard deviations of noise."""
    mean = normal(generator, batch, dim)
    log_std = _uniform(generator, *((batch, dim) if per_state else (dim,)), low=low, high=high)
    actions = mean + spread * log_std.exp() * normal(generator, batch, dim)
    return {"mean": mean, "log_std": log_std, "actions": actions}


def _log_prob_cases(generator, hidden):
    if not hidden:
        return [
            Case("[B, D] actions (B = 4, D = 2), one log_std per dimension [D]",
                 _log_prob_kwargs(generator, 4, 2, per_state=False)),
            Case("[B, D] actions (B = 3, D = 2), one log_std per state and dimension [B, D]",
                 _log_prob_kwargs(generator, 3, 2, per_state=True)),
        ]
    return [
        Case("B = 1, D = 1, log_std [D]", _log_prob_kwargs(generator, 1, 1, per_state=False)),
        Case("B = 1, D = 3, log_std [B, D]", _log_prob_kwargs(generator, 1, 3, per_state=True)),
        Case("many states, D = 1 (as for Pendulum), log_std [D]", _log_prob_kwargs(generator, 64, 1, per_state=False)),
        Case("many states, D = 4, log_std [D]", _log_prob_kwargs(generator, 50, 4, per_state=False)),
        Case("many states, D = 6, log_std [B, D]", _log_prob_kwargs(generator, 40, 6, per_state=True)),
        Case("narrow and wide Gaussians (log_std from -4 to 2), log_std [B, D]",
             _log_prob_kwargs(generator, 20, 3, per_state=True, low=-4.0, high=2.0)),
        Case("actions far in the tails (several standard deviations out), log_std [D]",
             _log_prob_kwargs(generator, 16, 2, per_state=False, spread=6.0)),
    ]


def _wrong_log_prob(*, reduce="sum", variance=False, constant=True, normaliser=True, normaliser_over_batch=False):
    """gaussian_log_prob with one classic mistake switched on (every switch at its default is right)."""

    def wrong(mean, log_std, actions):
        # variance=True: exp(log_std) taken as the variance sigma^2, not as sigma
        log_sigma = 0.5 * log_std if variance else log_std
        z = (actions - mean) * torch.exp(-log_sigma)
        per_dim = -0.5 * z.pow(2) - (0.5 * _LOG_2PI if constant else 0.0)
        if normaliser and not normaliser_over_batch:
            per_dim = per_dim - log_sigma
        if reduce == "none":
            result = per_dim
        else:
            result = per_dim.mean(-1) if reduce == "mean" else per_dim.sum(-1)
        if normaliser_over_batch:  # every log sigma of the batch subtracted from every row
            result = result - log_sigma.sum()
        return result

    return wrong


LOG_PROB_MISTAKES = (
    Mistake("log_prob_not_summed", "looks like the per-dimension log-probabilities are returned as they are: "
            "the D dimensions are independent parts of ONE action, so their log-probabilities add up "
            "(.sum(-1), giving [B])", _wrong_log_prob(reduce="none")),
    Mistake("log_prob_mean_over_dims", "looks like a mean over the action dimensions instead of a sum: "
            "log pi(a|s) = sum over d of log N(a_d; mu_d, sigma_d^2)", _wrong_log_prob(reduce="mean")),
    Mistake("std_used_as_variance", "looks like exp(log_std) is used as the variance: it is the standard "
            "deviation sigma, so divide (a - mu)^2 by sigma^2 = exp(2 log_std) and subtract log sigma",
            _wrong_log_prob(variance=True)),
    Mistake("missing_log_2pi", "looks like the constant -0.5 * log(2 pi) per dimension is missing: "
            "it cancels in a ratio of two log-probs, but not in log pi itself", _wrong_log_prob(constant=False)),
    Mistake("missing_log_std", "looks like the normaliser -log sigma per dimension is missing: without it a "
            "wider Gaussian is not penalised, and the gradient with respect to log_std is wrong",
            _wrong_log_prob(normaliser=False)),
    Mistake("log_std_summed_over_batch", "looks like log_std is summed over the whole tensor (log_std.sum()): "
            "with a log_std per state [B, D], row b uses only its own log_std[b] (sum over the last dimension)",
            _wrong_log_prob(normaliser_over_batch=True)),
)

register(Check("test_gaussian_log_prob", _log_prob_cases, reference=continuous.gaussian_log_prob,
               run=partial(runners.output_and_grads, wrt=("mean", "log_std")), mistakes=LOG_PROB_MISTAKES))


# --- gaussian_entropy ----------------------------------------------------------------------------

def _entropy_cases(generator, hidden):
    log_std = lambda *shape, low=-1.5, high=0.5: {"log_std": _uniform(generator, *shape, low=low, high=high)}  # noqa: E731
    if not hidden:
        return [Case("log_std [D] (D = 2): one entropy, shape []", log_std(2)),
                Case("log_std [B, D] (B = 3, D = 2): one entropy per state, shape [B]", log_std(3, 2))]
    return [
        Case("log_std [D], D = 1", log_std(1)),
        Case("log_std [D], D = 5", log_std(5)),
        Case("log_std [B, D], B = 1, D = 1", log_std(1, 1)),
        Case("log_std [B, D], B = 1, D = 4", log_std(1, 4)),
        Case("log_std [B, D], many states, D = 3", log_std(64, 3)),
        Case("very narrow and very wide Gaussians (log_std from -6 to 3), [B, D]", log_std(10, 2, low=-6.0, high=3.0)),
    ]


def _wrong_entropy(*, reduce="sum", variance=False, half=True):
    def wrong(log_std):
        log_sigma = 0.5 * log_std if variance else log_std
        per_dim = (0.5 if half else 0.0) + 0.5 * _LOG_2PI + log_sigma
        if reduce == "none":
            return per_dim
        if reduce == "all":
            return per_dim.sum()
        return per_dim.mean(-1) if reduce == "mean" else per_dim.sum(-1)

    return wrong


ENTROPY_MISTAKES = (
    Mistake("entropy_not_summed", "looks like the per-dimension entropies are returned as they are: the entropy "
            "of independent dimensions is their sum (over the last dimension)", _wrong_entropy(reduce="none")),
    Mistake("entropy_summed_over_batch", "looks like the entropy is summed over every element (.sum()): for "
            "[B, D] there is one entropy per state, shape [B] (sum over the last dimension only)",
            _wrong_entropy(reduce="all")),
    Mistake("entropy_mean_over_dims", "looks like a mean over the action dimensions instead of a sum",
            _wrong_entropy(reduce="mean")),
    Mistake("entropy_std_used_as_variance", "looks like exp(log_std) is used as the variance: per dimension the "
            "entropy is 0.5 * log(2 pi e sigma^2) = 0.5 + 0.5 log(2 pi) + log sigma", _wrong_entropy(variance=True)),
    Mistake("entropy_missing_half", "looks like the 0.5 per dimension is missing: 0.5 * log(2 pi e sigma^2) has "
            "0.5 * log(e) = 0.5 in it, besides 0.5 * log(2 pi) + log sigma", _wrong_entropy(half=False)),
)

register(Check("test_gaussian_entropy", _entropy_cases, reference=continuous.gaussian_entropy,
               run=partial(runners.output_and_grads, wrt=("log_std",)), mistakes=ENTROPY_MISTAKES))


# --- update_running_moments ----------------------------------------------------------------------

def _moments(generator, count, batch_size, sample_shape=(), *, old_mean=0.0, new_mean=0.0, old_spread=1.0,
             new_spread=1.0, dtype=torch.float32):
    """Running statistics of ``count`` earlier samples and a new batch [B, *sample_shape]."""
    mean = (old_mean + old_spread * torch.randn(sample_shape, generator=generator)).to(dtype)
    var = (old_spread * _uniform(generator, *sample_shape, low=0.2, high=1.5)).pow(2).to(dtype)
    batch = (new_mean + new_spread * normal(generator, batch_size, *sample_shape)).to(dtype)
    return {"mean": mean, "var": var, "count": count, "batch": batch}


def _moments_cases(generator, hidden):
    if not hidden:
        return [
            Case("count = 0: the result is the batch's own mean and population variance (the old ones are ignored)",
                 _moments(generator, 0, 4, (2,), old_mean=5.0, new_mean=1.0)),
            Case("a batch of B = 5 samples of shape [3] into statistics of 10 earlier samples",
                 _moments(generator, 10, 5, (3,), old_mean=1.0, new_mean=-1.0, new_spread=2.0)),
            Case("float32 observations far from zero (about 1000) with a small spread (about 0.01)",
                 _moments(generator, 8, 4, (2,), old_mean=1000.0, new_mean=1000.0, old_spread=0.01,
                          new_spread=0.01)),
        ]
    return [
        Case("count = 0 and B = 1: one sample, variance 0", _moments(generator, 0, 1, (3,), old_mean=4.0)),
        Case("B = 1: one sample into 5 earlier ones", _moments(generator, 5, 1, (2,), new_mean=3.0)),
        Case("scalar samples: batch [B], statistics of shape [] (as for rewards)",
             _moments(generator, 12, 7, (), old_mean=-3.0, new_mean=-8.0, new_spread=4.0)),
        Case("a large batch (5,000 samples) merged into a tiny count (2)",
             _moments(generator, 2, 5000, (3,), old_mean=-3.0, new_mean=50.0, new_spread=2.0)),
        Case("a tiny batch (3 samples) merged into a huge count (1e6)",
             _moments(generator, 1e6, 3, (3,), old_mean=2.0, new_mean=-2.0)),
        Case("samples of shape [2, 3]", _moments(generator, 20, 6, (2, 3), new_mean=1.0, new_spread=0.5)),
        Case("count given as a float", _moments(generator, 7.0, 9, (4,), old_mean=1.0)),
        Case("float64 statistics and batch", _moments(generator, 30, 11, (2,), new_mean=2.0, dtype=torch.float64)),
        Case("float32 observations far from zero with a small spread, a larger batch",
             _moments(generator, 100, 64, (3,), old_mean=500.0, new_mean=500.0, old_spread=0.02, new_spread=0.02)),
    ]


def _moments_judge(got, want, case):
    """``compare``, with a count returned as a 0-dim tensor read as the number it holds."""
    if isinstance(got, dict) and isinstance(got.get("count"), torch.Tensor) and got["count"].dim() == 0:
        got = {**got, "count": got["count"].item()}
    return compare(got, want, case)


def _batch_moments(batch, correction=0):
    with warnings.catch_warnings():  # the sample variance of one sample is NaN; torch's warning would only be noise
        warnings.simplefilter("ignore", UserWarning)
        return batch.mean(dim=0), batch.var(dim=0, correction=correction)


def _unweighted_merge(mean, var, count, batch):
    batch_mean, batch_var = _batch_moments(batch)
    if count == 0:  # even this version knows there is nothing to average with
        return batch_mean, batch_var, count + len(batch)
    return (mean + batch_mean) / 2, (var + batch_var) / 2, count + len(batch)


def _wrong_chan(*, correction=0, delta_term=True, swap_weights=False, count_update=True):
    """The parallel formula with one classic mistake switched on (every switch at its default is right)."""

    def wrong(mean, var, count, batch):
        batch_count = len(batch)
        batch_mean, batch_var = _batch_moments(batch, correction)
        total = count + batch_count
        delta = batch_mean - mean
        weight = count / total if swap_weights else batch_count / total
        new_mean = mean + delta * weight
        spread = delta.pow(2) * (count * batch_count / total) if delta_term else 0.0
        new_var = (var * count + batch_var * batch_count + spread) / total
        return new_mean, new_var, total if count_update else count

    return wrong


def _sum_of_squares(mean, var, count, batch):
    """E[x^2] - E[x]^2 over all the samples, from running sums of x and x^2."""
    total = count + len(batch)
    sum_x = mean * count + batch.sum(dim=0)
    sum_x2 = (var + mean.pow(2)) * count + batch.pow(2).sum(dim=0)
    new_mean = sum_x / total
    return new_mean, sum_x2 / total - new_mean.pow(2), total


MOMENTS_MISTAKES = (
    Mistake("unweighted_merge", "looks like the old and the batch statistics are averaged with equal weights: "
            "weigh them by their counts (the batch's mean moves the running mean by delta * B / (count + B))",
            _unweighted_merge),
    Mistake("sample_variance", "looks like the batch's variance is the sample variance (divided by B - 1): "
            "var is the population variance (divide by B: batch.var(dim=0, correction=0))",
            _wrong_chan(correction=1)),
    Mistake("missing_delta_term", "looks like the term delta^2 * count * B / (count + B) is missing: the spread "
            "between the two means adds to the variance of the merged samples", _wrong_chan(delta_term=False)),
    Mistake("weights_swapped", "looks like the weights are swapped: the mean moves towards the batch by "
            "delta * B / (count + B), not delta * count / (count + B)", _wrong_chan(swap_weights=True)),
    Mistake("sum_of_squares", "looks like the variance is E[x^2] - E[x]^2: right on paper, but in float32 it "
            "cancels catastrophically for data far from zero with a small spread; use the parallel formula with "
            "delta = batch_mean - mean", _sum_of_squares),
    Mistake("count_not_updated", "mean and var look right but the count does not: return count + B",
            _wrong_chan(count_update=False)),
)

register(Check("test_update_running_moments", _moments_cases, reference=continuous.update_running_moments,
               run=partial(runners.named, names=("mean", "var", "count")), judge=_moments_judge,
               mistakes=MOMENTS_MISTAKES))
