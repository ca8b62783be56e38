"""Checks for chapter 1: ``pg_loss``."""
import warnings
from functools import partial

import torch

from .. import pg
from . import runners
from .inputs import log_probs, normal
from .protocol import Case
from .registry import Check, Mistake, register


def _loss_with_normalised_advantages(log_probs, advantages):
    with warnings.catch_warnings():  # std of a single advantage is NaN; the warning would only be noise
        warnings.simplefilter("ignore", UserWarning)
        normalised = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return -(log_probs * normalised).mean()


def _cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    sizes = [1, 7, 256] if hidden else [5]
    cases = [Case(f"B = {b}", {"log_probs": log_probs(generator, b), "advantages": normal(generator, b)})
             for b in sizes]
    # A rollout kept time-major [T, N] (T steps of N envs): the mean runs over every element.
    rollout = (16, 8) if hidden else (4, 3)
    cases.append(Case("[T, N] rollout", {"log_probs": log_probs(generator, *rollout),
                                         "advantages": normal(generator, *rollout)}))
    if hidden:
        cases.append(Case("all advantages positive", {"log_probs": log_probs(generator, 9),
                                                      "advantages": normal(generator, 9).abs() + 0.1}))
        cases.append(Case("all advantages negative", {"log_probs": log_probs(generator, 9),
                                                      "advantages": -normal(generator, 9).abs() - 0.1}))
    return cases


register(Check(
    grade_id="test_pg_loss",
    make_cases=_cases,
    reference=pg.pg_loss,
    run=partial(runners.value_and_grads, wrt=("log_probs",)),
    mistakes=(
        Mistake("missing_minus", "looks like the minus sign is missing: the loss must be MINIMISED",
                lambda log_probs, advantages: (log_probs * advantages).mean()),
        Mistake("sum_not_mean", "looks like a sum instead of a mean over the batch",
                lambda log_probs, advantages: -(log_probs * advantages).sum()),
        Mistake("probabilities_not_log", "looks like probabilities were used instead of log-probabilities",
                lambda log_probs, advantages: -(log_probs.exp() * advantages).mean()),
        Mistake("normalised_advantages",
                "looks like the advantages were normalised inside the loss: pg_loss uses them as given",
                _loss_with_normalised_advantages),
        Mistake("mean_over_time_only", "looks like a mean over the first dimension only: average every element",
                lambda log_probs, advantages: -(log_probs * advantages).mean(0).sum()),
    ),
))
