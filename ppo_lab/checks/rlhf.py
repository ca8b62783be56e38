"""Checks for chapter 8: ``preference_loss`` and ``kl_penalized_rewards``.

test_preference_loss               Bradley-Terry loss, value and gradients
test_kl_penalized_rewards          per-token KL penalty + score on the last token, full-length responses
test_kl_penalized_rewards_padding  right-padded responses of different lengths: a mask decides
                                   where the score lands and where rewards must be 0
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from ..exercises import rlhf
from . import runners
from .inputs import log_probs, normal
from .protocol import Case
from .registry import Check, Mistake, register

# --- preference_loss --------------------------------------------------------------------------


def _pair_scores(generator, b, scale=1.0):
    """Random reward-model scores for b pairs."""
    return {"chosen_rewards": normal(generator, b, scale=scale), "rejected_rewards": normal(generator, b, scale=scale)}


def _preference_cases(generator, hidden):
    if not hidden:
        return [Case("B = 4 pairs of reward-model scores", {"chosen_rewards": torch.tensor([2.0, 0.5, -1.0, 0.0]),
                                                            "rejected_rewards": torch.tensor([1.0, 1.5, -1.0, -3.0])})]
    # Margins beyond about -104 make float32 sigmoid underflow to 0, and log(0) = -inf.
    big = {"chosen_rewards": torch.tensor([-60.0, 60.0, 0.5, -70.0]),
           "rejected_rewards": torch.tensor([60.0, -60.0, 0.0, 50.0])}
    return [
        Case("B = 1", _pair_scores(generator, 1)),
        Case("B = 64", _pair_scores(generator, 64, scale=2.0)),
        Case("the chosen response always scores higher", {
            "chosen_rewards": normal(generator, 9).abs() + 0.5, "rejected_rewards": -normal(generator, 9).abs()}),
        Case("ties: chosen and rejected score the same", {
            "chosen_rewards": torch.tensor([0.3, -2.0, 5.0]), "rejected_rewards": torch.tensor([0.3, -2.0, 5.0])}),
        Case("very large margins in both directions (numerical stability)", big),
    ]


def _preference_log_of_sigmoid(chosen_rewards, rejected_rewards):
    return -torch.log(torch.sigmoid(chosen_rewards - rejected_rewards)).mean()


PREFERENCE_MISTAKES = (
    Mistake("chosen_rejected_swapped", "looks like chosen and rejected are swapped: the loss must be small "
            "when the CHOSEN response scores higher, -logsigmoid(chosen - rejected)",
            lambda chosen_rewards, rejected_rewards: -F.logsigmoid(rejected_rewards - chosen_rewards).mean()),
    Mistake("missing_minus", "looks like the minus sign is missing: logsigmoid is the log-LIKELIHOOD; the loss "
            "to minimise is its negative",
            lambda chosen_rewards, rejected_rewards: F.logsigmoid(chosen_rewards - rejected_rewards).mean()),
    Mistake("sigmoid_without_log", "looks like sigmoid without the log: Bradley-Terry maximises the LOG-probability "
            "of the observed preference",
            lambda chosen_rewards, rejected_rewards: -torch.sigmoid(chosen_rewards - rejected_rewards).mean()),
    Mistake("log_of_sigmoid", "right formula, but log(sigmoid(x)) underflows to -inf for large negative margins: "
            "use F.logsigmoid", _preference_log_of_sigmoid),
    Mistake("sum_not_mean", "looks like a sum over pairs instead of a mean",
            lambda chosen_rewards, rejected_rewards: -F.logsigmoid(chosen_rewards - rejected_rewards).sum()),
)

register(Check(
    grade_id="test_preference_loss",
    make_cases=_preference_cases,
    reference=rlhf.preference_loss,
    run=partial(runners.value_and_grads, wrt=("chosen_rewards", "rejected_rewards")),
    mistakes=PREFERENCE_MISTAKES,
))

# --- kl_penalized_rewards ---------------------------------------------------------------------


def _rewards_kwargs(generator, b, length, *, lengths=None, kl_coef=None, mask="none"):
    """kwargs for one call. With ``lengths``, row i has ``lengths[i]`` generated tokens and
    the log-probs at its padding positions are garbage (as a padded batch's would be), so an
    answer that forgets the mask gets different numbers there."""
    kwargs = {
        "scores": normal(generator, b, scale=2.0),
        "logprobs": log_probs(generator, b, length),
        "ref_logprobs": log_probs(generator, b, length),
        "kl_coef": round(0.01 + 0.5 * torch.rand((), generator=generator).item(), 3) if kl_coef is None else kl_coef,
    }
    if lengths is not None:
        kwargs["mask"] = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).float()
    elif mask == "ones":
        kwargs["mask"] = torch.ones(b, length)
    return kwargs


def _full_length_cases(generator, hidden):
    if not hidden:
        return [Case("B = 2 responses of L = 4 tokens, mask omitted (None)",
                     _rewards_kwargs(generator, 2, 4, kl_coef=0.1))]
    return [
        Case("B = 1, L = 1", _rewards_kwargs(generator, 1, 1)),
        Case("B = 16, L = 12, mask omitted", _rewards_kwargs(generator, 16, 12)),
        Case("mask given, all ones", _rewards_kwargs(generator, 5, 7, mask="ones")),
        Case("kl_coef = 0: only the scores remain", _rewards_kwargs(generator, 4, 6, kl_coef=0.0)),
        Case("large kl_coef", _rewards_kwargs(generator, 3, 5, kl_coef=2.0)),
    ]


def _padding_cases(generator, hidden):
    if not hidden:
        return [Case("B = 3 responses padded to L = 5 (lengths 5, 3, 1)",
                     _rewards_kwargs(generator, 3, 5, lengths=[5, 3, 1], kl_coef=0.1))]
    lengths = (torch.randint(1, 21, (24,), generator=generator)).tolist()
    lengths[0] = 20  # at least one response uses the full length
    return [
        Case("B = 1, padded", _rewards_kwargs(generator, 1, 8, lengths=[3])),
        Case("many responses of random lengths", _rewards_kwargs(generator, 24, 20, lengths=lengths)),
        Case("every response has a single token", _rewards_kwargs(generator, 4, 6, lengths=[1, 1, 1, 1])),
        Case("kl_coef = 0, padded", _rewards_kwargs(generator, 3, 6, lengths=[6, 2, 4], kl_coef=0.0)),
    ]


def _mask_or_ones(logprobs, mask):
    return torch.ones_like(logprobs) if mask is None else mask.to(logprobs.dtype)


def _wrong_rewards(*, kl_sign=-1.0, score_everywhere=False, mask_penalty=True, score_at_end=False,
                   score_first=False):
    """A ``kl_penalized_rewards`` with one classic mistake switched on (defaults are correct)."""

    def wrong(scores, logprobs, ref_logprobs, kl_coef=0.01, mask=None):
        m = _mask_or_ones(logprobs, mask)
        penalty = kl_sign * kl_coef * (logprobs - ref_logprobs)
        rewards = penalty * m if mask_penalty else penalty.clone()
        if score_everywhere:
            return rewards + scores[:, None] * m
        if score_at_end:  # the last column, even when it is padding
            index = torch.full((len(scores),), logprobs.shape[1] - 1)
        elif score_first:
            index = torch.zeros(len(scores), dtype=torch.long)
        else:
            index = m.sum(1).long() - 1
        rewards[torch.arange(len(scores)), index] += scores
        return rewards

    return wrong


REWARD_MISTAKES = (
    Mistake("kl_sign_flipped", "looks like the KL term has the wrong sign: moving away from the reference "
            "(logprobs > ref_logprobs) must be PENALISED, reward -kl_coef * (logprobs - ref_logprobs)",
            _wrong_rewards(kl_sign=1.0)),
    Mistake("score_on_every_token", "looks like the score was added to every token: the reward model judges "
            "the whole response, so its score goes on the LAST generated token only",
            _wrong_rewards(score_everywhere=True)),
    Mistake("score_on_first_token", "looks like the score was put on the first token: it belongs on the last "
            "generated token", _wrong_rewards(score_first=True)),
    Mistake("score_on_last_column", "looks like the score always lands in the last column: for a padded "
            "response that is padding; use the last position where mask == 1",
            _wrong_rewards(score_at_end=True)),
    Mistake("padding_not_masked", "looks like padding positions get a KL penalty: rewards must be 0 where "
            "mask == 0 (those log-probs belong to no generated token)", _wrong_rewards(mask_penalty=False)),
    Mistake("padding_not_masked_and_score_on_last_column", "looks like the mask is ignored altogether: zero "
            "the padding and put the score on the last generated token",
            _wrong_rewards(mask_penalty=False, score_at_end=True)),
)

for grade_id, make_cases in (
    ("test_kl_penalized_rewards", _full_length_cases),
    ("test_kl_penalized_rewards_padding", _padding_cases),
):
    register(Check(grade_id, make_cases, reference=rlhf.kl_penalized_rewards, mistakes=REWARD_MISTAKES))
