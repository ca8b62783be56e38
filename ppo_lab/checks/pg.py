"""Checks for chapter 1: ``pg_loss``."""
import torch

from .. import pg
from .core import Case, Check, Mistake, register
from .inputs import log_probs, normal, value_and_grads


def _cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    sizes = [1, 7, 256] if hidden else [5]
    cases = [Case(f"B = {b}", {"log_probs": log_probs(generator, b), "advantages": normal(generator, b)})
             for b in sizes]
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
    run=lambda answer, case: value_and_grads(answer, case, wrt=("log_probs",)),
    mistakes=(
        Mistake("missing_minus", "looks like the minus sign is missing: the loss must be MINIMISED",
                lambda log_probs, advantages: (log_probs * advantages).mean()),
        Mistake("sum_not_mean", "looks like a sum instead of a mean over the batch",
                lambda log_probs, advantages: -(log_probs * advantages).sum()),
        Mistake("probabilities_not_log", "looks like probabilities were used instead of log-probabilities",
                lambda log_probs, advantages: -(log_probs.exp() * advantages).mean()),
    ),
))
