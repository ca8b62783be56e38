"""Checks for chapter 9: ``dpo_loss``, ``group_advantages`` and ``leave_one_out_advantages``.

test_dpo_loss                     DPO's loss, its value and its gradients (none into the reference terms)
test_group_advantages             GRPO: centred on each prompt's group, scaled by its unbiased std + eps
test_group_advantages_unscaled    scale=False (Dr. GRPO): centred only
test_leave_one_out_advantages     RLOO: the baseline is the mean of the OTHER responses of the prompt
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from ..exercises import beyond_ppo
from . import runners
from .inputs import normal
from .protocol import Case
from .registry import Check, Mistake, register

# --- dpo_loss -----------------------------------------------------------------------------------

DPO_INPUTS = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


def _summed_logps(generator, b):
    """Summed log-probs of whole responses: a few to a few dozen nats below zero."""
    return -(3.0 + 27.0 * torch.rand(b, generator=generator))


def _dpo_kwargs(generator, b, beta=0.1, drift=1.0):
    """Reference log-probs, and a policy that has drifted from them by about ``drift`` nats."""
    ref_c, ref_r = _summed_logps(generator, b), _summed_logps(generator, b)
    return {"policy_chosen_logps": ref_c + normal(generator, b, scale=drift),
            "policy_rejected_logps": ref_r + normal(generator, b, scale=drift),
            "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r, "beta": beta}


def _dpo_cases(generator, hidden):
    if not hidden:
        return [Case("B = 4 pairs, beta = 0.1", {
            "policy_chosen_logps": torch.tensor([-12.0, -20.0, -7.5, -30.0]),
            "policy_rejected_logps": torch.tensor([-15.0, -18.0, -9.0, -26.0]),
            "ref_chosen_logps": torch.tensor([-13.0, -19.0, -9.5, -31.0]),
            "ref_rejected_logps": torch.tensor([-14.0, -21.0, -8.0, -25.0]),
            "beta": 0.1})]
    same = _dpo_kwargs(generator, 6, drift=0.0)
    # beta * margin of about -/+ 200: float32 sigmoid underflows to 0 there, and log(0) = -inf
    far = {"policy_chosen_logps": torch.tensor([-400.0, -5.0, -10.0]),
           "policy_rejected_logps": torch.tensor([-5.0, -400.0, -12.0]),
           "ref_chosen_logps": torch.tensor([-10.0, -10.0, -10.0]),
           "ref_rejected_logps": torch.tensor([-10.0, -10.0, -10.0]), "beta": 0.5}
    return [
        Case("B = 1", _dpo_kwargs(generator, 1)),
        Case("B = 64, beta = 0.1", _dpo_kwargs(generator, 64)),
        Case("beta = 0.5, the policy far from the reference", _dpo_kwargs(generator, 16, beta=0.5, drift=5.0)),
        Case("the policy still equals the reference (the first step of training)", same),
        Case("the policy has moved towards the rejected response on every pair",
             {**_dpo_pushed(generator, 8), "beta": 0.1}),
        Case("very large implicit-reward margins in both directions (numerical stability)", far),
    ]


def _dpo_pushed(generator, b):
    """Reference and policy log-probs where the policy moved towards the rejected responses."""
    ref_c, ref_r = _summed_logps(generator, b), _summed_logps(generator, b)
    shift = 1.0 + torch.rand(b, generator=generator)
    return {"policy_chosen_logps": ref_c - shift, "policy_rejected_logps": ref_r + shift,
            "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}


def _wrong_dpo(*, reference=True, swapped=False, beta_used=True, detach=True, log_of_sigmoid=False, reduce="mean",
               sign=-1.0, beta_chosen_only=False):
    """A ``dpo_loss`` with one classic mistake switched on (defaults are right)."""

    def wrong(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
        ref_c = ref_chosen_logps.detach() if detach else ref_chosen_logps
        ref_r = ref_rejected_logps.detach() if detach else ref_rejected_logps
        chosen = policy_chosen_logps - (ref_c if reference else 0.0)
        rejected = policy_rejected_logps - (ref_r if reference else 0.0)
        if swapped:
            chosen, rejected = rejected, chosen
        b = beta if beta_used else 1.0
        margin = b * chosen - rejected if beta_chosen_only else b * (chosen - rejected)
        log_likelihood = torch.log(torch.sigmoid(margin)) if log_of_sigmoid else F.logsigmoid(margin)
        return sign * (log_likelihood.sum() if reduce == "sum" else log_likelihood.mean())

    return wrong


DPO_MISTAKES = (
    Mistake("no_reference_terms", "looks like the reference log-probs are missing: DPO's implicit reward is "
            "beta * (log pi - log pi_ref); without pi_ref nothing ties the policy to where it started",
            _wrong_dpo(reference=False)),
    Mistake("chosen_rejected_swapped", "looks like chosen and rejected are swapped: the loss must be small when "
            "the CHOSEN response's log-ratio exceeds the rejected one's", _wrong_dpo(swapped=True)),
    Mistake("missing_minus", "looks like the minus sign is missing: logsigmoid is the log-likelihood of the "
            "preferences; the loss to minimise is its negative", _wrong_dpo(sign=1.0)),
    Mistake("beta_missing", "looks like beta is not used: the margin is beta * (chosen log-ratio - rejected "
            "log-ratio)", _wrong_dpo(beta_used=False)),
    Mistake("beta_on_chosen_only", "looks like beta multiplies only the chosen term: put brackets around the "
            "difference of the two log-ratios", _wrong_dpo(beta_chosen_only=True)),
    Mistake("reference_not_detached", "right value, but gradient flows into the reference log-probs: the "
            "reference is frozen, treat its terms as constants (.detach())", _wrong_dpo(detach=False)),
    Mistake("log_of_sigmoid", "right formula, but log(sigmoid(x)) underflows to -inf for large negative "
            "margins: use F.logsigmoid", _wrong_dpo(log_of_sigmoid=True)),
    Mistake("sum_not_mean", "looks like a sum over pairs instead of a mean", _wrong_dpo(reduce="sum")),
)

register(Check(
    grade_id="test_dpo_loss",
    make_cases=_dpo_cases,
    reference=beyond_ppo.dpo_loss,
    run=partial(runners.value_and_grads, wrt=DPO_INPUTS),
    mistakes=DPO_MISTAKES,
))

# --- group_advantages ---------------------------------------------------------------------------


def _group_rewards(generator, p, g, scale=1.0):
    """[P, G] rewards whose groups differ in level and spread, as prompts of different difficulty do."""
    level = normal(generator, p, 1, scale=2.0)
    spread = 0.2 + 2.0 * torch.rand(p, 1, generator=generator)
    return (level + spread * normal(generator, p, g)) * scale


VISIBLE_REWARDS = torch.tensor([[1.0, 0.0, 2.0, 1.0],
                                [-1.0, -3.0, 0.5, -0.5]])  # P = 2 prompts, G = 4 responses each


def _grouped_cases(generator, hidden, extra):
    """Cases of ``group_advantages`` with ``extra`` kwargs (e.g. scale=False) in every call."""
    if not hidden:
        return [Case("P = 2 prompts with G = 4 responses each", {"rewards": VISIBLE_REWARDS.clone(), **extra})]
    constant = _group_rewards(generator, 5, 6)
    constant[2] = 0.7  # every response to prompt 2 got the same reward
    return [
        Case("P = 1 prompt, G = 2", {"rewards": _group_rewards(generator, 1, 2), **extra}),
        Case("P = 16 prompts, G = 8", {"rewards": _group_rewards(generator, 16, 8), **extra}),
        Case("P = 3 prompts, G = 64", {"rewards": _group_rewards(generator, 3, 64), **extra}),
        Case("a prompt whose responses all got the same reward", {"rewards": constant, **extra}),
        Case("eps = 0.5", {"rewards": _group_rewards(generator, 6, 4, scale=0.3), "eps": 0.5, **extra}),
        Case("eps = 0", {"rewards": _group_rewards(generator, 4, 5), "eps": 0.0, **extra}),
        Case("rewards far from zero", {"rewards": 50.0 + _group_rewards(generator, 4, 8), **extra}),
    ]


def _wrong_group(*, dim=1, unbiased=True, batch=False, eps_mode="add", center=True, always_scale=False):
    """A ``group_advantages`` with one classic mistake switched on (defaults are right)."""

    def wrong(rewards, eps=1e-4, scale=True):
        if batch:
            mean, std = rewards.mean(), rewards.std(unbiased=unbiased)
        else:
            mean = rewards.mean(dim=dim, keepdim=True)
            std = rewards.std(dim=dim, keepdim=True, unbiased=unbiased)
        out = rewards - mean if center else rewards
        if not (scale or always_scale):
            return out
        if eps_mode == "none":
            return out / std
        if eps_mode == "sqrt":
            return out / torch.sqrt(std ** 2 + eps)
        return out / (std + eps)

    return wrong


GROUP_MISTAKES = (
    Mistake("statistics_over_prompts", "looks like the mean/std were taken over the wrong dimension (over the P "
            "prompts, dim 0): each response is compared with the G responses to ITS prompt, dim=1",
            _wrong_group(dim=0)),
    Mistake("batch_statistics", "looks like one mean/std over the whole batch: GRPO's baseline is each prompt's "
            "own group (mean over dim=1, keepdim=True)", _wrong_group(batch=True)),
    Mistake("population_std", "looks like the population std (unbiased=False): the contract uses torch's default, "
            "unbiased std (divide by G - 1)", _wrong_group(unbiased=False)),
    Mistake("mean_not_subtracted", "looks like the group mean was not subtracted: the advantage is the reward "
            "RELATIVE to the group", _wrong_group(center=False)),
    Mistake("eps_missing", "looks like eps is missing: a prompt whose responses all scored the same has std 0, "
            "and 0 / 0 is NaN; divide by (std + eps)", _wrong_group(eps_mode="none")),
    Mistake("eps_inside_sqrt", "looks like eps went inside a square root (sqrt(var + eps)): the contract divides "
            "by (std + eps)", _wrong_group(eps_mode="sqrt")),
)

UNSCALED_MISTAKES = (
    Mistake("scaled_anyway", "looks like the advantages were divided by the std although scale=False: Dr. GRPO "
            "only subtracts the group mean", _wrong_group(always_scale=True)),
    Mistake("statistics_over_prompts", "looks like the mean was taken over the wrong dimension (over the P "
            "prompts, dim 0): subtract each prompt's own group mean, dim=1", _wrong_group(dim=0)),
    Mistake("batch_statistics", "looks like one mean over the whole batch: the baseline is each prompt's own "
            "group mean (dim=1, keepdim=True)", _wrong_group(batch=True)),
)

register(Check(
    grade_id="test_group_advantages",
    make_cases=partial(_grouped_cases, extra={}),
    reference=beyond_ppo.group_advantages,
    mistakes=GROUP_MISTAKES,
))
register(Check(
    grade_id="test_group_advantages_unscaled",
    make_cases=partial(_grouped_cases, extra={"scale": False}),
    reference=beyond_ppo.group_advantages,
    mistakes=UNSCALED_MISTAKES,
))

# --- leave_one_out_advantages ---------------------------------------------------------------------


def _loo_cases(generator, hidden):
    if not hidden:
        return [Case("P = 2 prompts with G = 4 responses each", {"rewards": VISIBLE_REWARDS.clone()})]
    constant = _group_rewards(generator, 4, 5)
    constant[1] = -1.3
    return [
        Case("P = 1 prompt, G = 2", {"rewards": _group_rewards(generator, 1, 2)}),
        Case("P = 16 prompts, G = 8", {"rewards": _group_rewards(generator, 16, 8)}),
        Case("P = 2 prompts, G = 64", {"rewards": _group_rewards(generator, 2, 64)}),
        Case("G = 3, more prompts than responses", {"rewards": _group_rewards(generator, 9, 3)}),
        Case("a prompt whose responses all got the same reward", {"rewards": constant}),
        Case("rewards far from zero", {"rewards": 50.0 + _group_rewards(generator, 4, 8)}),
    ]


def _wrong_loo(*, itself=False, divide_by_g=False, dim=1, sign=1.0, batch=False):
    """A ``leave_one_out_advantages`` with one classic mistake switched on (defaults are right)."""

    def wrong(rewards):
        if batch:
            baseline = (rewards.sum() - rewards) / (rewards.numel() - 1)
        elif itself:
            baseline = rewards.mean(dim=dim, keepdim=True)
        else:
            g = rewards.shape[dim]
            baseline = (rewards.sum(dim=dim, keepdim=True) - rewards) / (g if divide_by_g else g - 1)
        return sign * (rewards - baseline)

    return wrong


LOO_MISTAKES = (
    Mistake("includes_itself", "looks like the baseline includes the response itself (the plain group mean): "
            "RLOO leaves it out, mean of the OTHER G - 1 rewards: (sum - r_i) / (G - 1)", _wrong_loo(itself=True)),
    Mistake("divides_by_g", "looks like the other rewards were summed but divided by G: there are G - 1 of them",
            _wrong_loo(divide_by_g=True)),
    Mistake("statistics_over_prompts", "looks like the other responses were taken over the wrong dimension (over "
            "the P prompts, dim 0): the baseline comes from the same prompt's responses, dim=1", _wrong_loo(dim=0)),
    Mistake("batch_leave_one_out", "looks like the baseline is the mean of every other response in the batch: "
            "only the same prompt's responses count", _wrong_loo(batch=True)),
    Mistake("sign_flipped", "looks like the sign is flipped: the advantage is the reward MINUS the others' mean",
            _wrong_loo(sign=-1.0)),
)

register(Check(
    grade_id="test_leave_one_out_advantages",
    make_cases=_loo_cases,
    reference=beyond_ppo.leave_one_out_advantages,
    mistakes=LOO_MISTAKES,
))
