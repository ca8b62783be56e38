"""Checks for the contract functions of chapters 3 (PPO-Clip, its diagnostics) and 4 (PPO-KL, the schedules).

Each is judged against ``ppo_lab.exercises.ppo_clip`` and ``ppo_lab.exercises.ppo_in_practice``; ``ppo_derivations.py`` holds the chapter's extra exercises.
"""
from __future__ import annotations


from functools import partial

import torch

from ..exercises import ppo_clip, ppo_in_practice
from . import runners
from .inputs import log_probs, normal
from .protocol import Case
from .registry import Check, Mistake, register

# --- case makers ---------------------------------------------------------------------------------


def _ratios(generator: torch.Generator, *shape: int, spread: float = 0.35) -> torch.Tensor:
    """Positive ratios around 1, wide enough that every clip case occurs in a batch of ~10."""
    return torch.exp(normal(generator, *shape, scale=spread))


def _four_cases_batch() -> dict:
    """Each of the four clip cases twice, plus ratios inside the range (a hand-made batch)."""
    ratio = torch.tensor([1.5, 1.3, 0.5, 0.7, 0.6, 0.75, 1.4, 1.25, 1.0, 1.1, 0.9])
    advantages = torch.tensor([1.0, 0.5, 2.0, 0.3, -1.0, -0.4, -0.8, -1.5, 0.7, -0.2, 1.2])
    return {"ratio": ratio, "advantages": advantages}


def _ratio_advantage_cases(generator: torch.Generator, hidden: bool, *, time_major: bool = True) -> list[Case]:
    """Shared by every exercise taking ``(ratio, advantages, epsilon)``."""
    cases = [Case("a batch with each of the four clip cases, epsilon = 0.2", {**_four_cases_batch(), "epsilon": 0.2})]
    if not hidden:
        return cases
    cases += [
        Case("B = 1", {"ratio": _ratios(generator, 1) + 0.5, "advantages": normal(generator, 1).abs() + 0.1,
                       "epsilon": 0.2}),
        Case("large random batch, epsilon = 0.1", {"ratio": _ratios(generator, 300),
                                                    "advantages": normal(generator, 300), "epsilon": 0.1}),
        Case("all advantages positive, epsilon = 0.3", {"ratio": _ratios(generator, 40),
                                                         "advantages": normal(generator, 40).abs() + 0.05,
                                                         "epsilon": 0.3}),
        Case("all advantages negative", {"ratio": _ratios(generator, 40),
                                         "advantages": -normal(generator, 40).abs() - 0.05, "epsilon": 0.2}),
        Case("every ratio exactly 1", {"ratio": torch.ones(12), "advantages": normal(generator, 12), "epsilon": 0.2}),
    ]
    if time_major:
        cases.append(Case("[T, N] rollout", {"ratio": _ratios(generator, 16, 4),
                                             "advantages": normal(generator, 16, 4), "epsilon": 0.25}))
    return cases


# --- ppo_clip_objective --------------------------------------------------------------------------


def _clip_loss(combine=torch.min, clip_what="ratio", sign=-1.0, reduce=torch.mean):
    """Builds PPO-Clip losses, right or wrong in one named way (the mistake catalogue)."""

    def loss(ratio, advantages, epsilon=0.2):
        unclipped = ratio * advantages
        if clip_what == "ratio":
            clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages
        elif clip_what == "advantage":
            clipped = ratio * torch.clamp(advantages, 1 - epsilon, 1 + epsilon)
        elif clip_what == "product":
            clipped = torch.clamp(unclipped, 1 - epsilon, 1 + epsilon)
        else:  # "only": the clipped term alone, without the min
            return sign * reduce(torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages)
        return sign * reduce(combine(unclipped, clipped))

    return loss


register(Check(
    grade_id="test_ppo_clip_objective",
    make_cases=_ratio_advantage_cases,
    reference=ppo_clip.ppo_clip_objective,
    run=partial(runners.value_and_grads, wrt=("ratio",)),
    mistakes=(
        Mistake("max_instead_of_min", "looks like max instead of min: PPO takes the pessimistic (smaller) term",
                _clip_loss(combine=torch.max)),
        Mistake("clipped_advantage", "looks like the advantage was clipped instead of the ratio",
                _clip_loss(clip_what="advantage")),
        Mistake("clipped_product", "looks like ratio * advantage was clipped instead of the ratio alone",
                _clip_loss(clip_what="product")),
        Mistake("no_min", "looks like only the clipped term is used: without the min, moves that make "
                          "things worse are clipped too", _clip_loss(clip_what="only")),
        Mistake("missing_minus", "looks like the minus sign is missing: return the loss to MINIMISE",
                _clip_loss(sign=1.0)),
        Mistake("sum_not_mean", "looks like a sum instead of a mean over the batch", _clip_loss(reduce=torch.sum)),
    ),
))


# --- clip_active_mask ----------------------------------------------------------------------------


def _mask_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    cases = _ratio_advantage_cases(generator, hidden)
    # Exactly on the boundary (0.25 is exact in binary) and A = 0: nothing is clipped there.
    boundary = Case("ratios exactly at 1 +/- epsilon and zero advantages", {
        "ratio": torch.tensor([1.25, 0.75, 1.25, 0.75, 1.5, 0.5]),
        "advantages": torch.tensor([1.0, -1.0, -1.0, 1.0, 0.0, 0.0]),
        "epsilon": 0.25,
    })
    return cases + [boundary] if hidden else cases


register(Check(
    grade_id="test_clip_active_mask",
    make_cases=_mask_cases,
    reference=ppo_clip.clip_active_mask,
    mistakes=(
        Mistake("clip_fraction_definition",
                "looks like |ratio - 1| > epsilon (the clip_fraction rule): a ratio outside the range on the "
                "side the advantage does not reward still has its gradient",
                lambda ratio, advantages, epsilon=0.2: (ratio - 1).abs() > epsilon),
        Mistake("wrong_sides", "looks like the sides are swapped: A > 0 is clipped above 1 + eps, A < 0 below 1 - eps",
                lambda ratio, advantages, epsilon=0.2: ((advantages > 0) & (ratio < 1 - epsilon))
                | ((advantages < 0) & (ratio > 1 + epsilon))),
        Mistake("non_strict", "looks like >= instead of >: exactly at 1 +/- eps both terms are equal, nothing is removed",
                lambda ratio, advantages, epsilon=0.2: ((advantages >= 0) & (ratio >= 1 + epsilon))
                | ((advantages <= 0) & (ratio <= 1 - epsilon))),
        Mistake("not_bool", "returns numbers, not a bool tensor: compare, do not multiply",
                lambda ratio, advantages, epsilon=0.2: (((advantages > 0) & (ratio > 1 + epsilon))
                                                        | ((advantages < 0) & (ratio < 1 - epsilon))).float()),
    ),
))


# --- ppo_objective_with_diagnostics -------------------------------------------------------------


def _diagnostic_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(description, shape, epsilon=0.2, advantages=None):
        old = log_probs(generator, *shape)
        return Case(description, {
            "old_log_probs": old,
            "new_log_probs": old + normal(generator, *shape, scale=0.3),
            "advantages": normal(generator, *shape) if advantages is None else advantages,
            "epsilon": epsilon,
        })

    unlikely = log_probs(generator, 8) - 110.0  # exp() of these underflows to 0 in float32
    cases = [
        case("random batch, B = 10", (10,)),
        Case("includes very unlikely actions (log-probs below -100)", {
            "old_log_probs": unlikely, "new_log_probs": unlikely + normal(generator, 8, scale=0.2),
            "advantages": normal(generator, 8), "epsilon": 0.2}),
    ]
    if hidden:
        cases += [
            case("B = 1", (1,)),
            case("large batch, epsilon = 0.1", (500,), epsilon=0.1),
            case("all advantages positive", (30,), advantages=normal(generator, 30).abs() + 0.05),
            case("all advantages negative", (30,), advantages=-normal(generator, 30).abs() - 0.05),
            case("[T, N] rollout, epsilon = 0.3", (12, 5), epsilon=0.3),
        ]
    return cases


def _diagnostics(*, ratio_from="log", detach_old=True, kl="k3", clip_fraction="outside", unbiased=True,
                 combine=torch.min):
    """Builds diagnostics functions, right or wrong in one named way (the mistake catalogue)."""

    def diagnostics(old_log_probs, new_log_probs, advantages, epsilon=0.2):
        old = old_log_probs.detach() if detach_old else old_log_probs
        ratio = torch.exp(new_log_probs - old) if ratio_from == "log" else new_log_probs.exp() / old.exp()
        loss = _clip_loss(combine=combine)(ratio, advantages, epsilon)
        r = ratio.detach()
        kl_terms = {"k3": (r - 1) - r.log(), "reverse": r * r.log() - (r - 1), "k1": -r.log()}[kl]
        if clip_fraction == "outside":
            clipped = (r - 1).abs() > epsilon
        else:  # where the clip removes the gradient
            clipped = ((advantages > 0) & (r > 1 + epsilon)) | ((advantages < 0) & (r < 1 - epsilon))
        return {
            "loss": loss,
            "clip_fraction": clipped.float().mean().item(),
            "approx_kl": kl_terms.mean().item(),
            "ratio_mean": r.mean().item(),
            "ratio_std": r.std(unbiased=unbiased).item() if r.numel() > 1 else 0.0,
        }

    return diagnostics


register(Check(
    grade_id="test_ppo_objective_with_diagnostics",
    make_cases=_diagnostic_cases,
    reference=ppo_clip.ppo_objective_with_diagnostics,
    run=runners.diagnostics,
    mistakes=(
        Mistake("ratio_from_probabilities",
                "looks like the ratio was computed from probabilities: exp(log p) underflows to 0 for unlikely "
                "actions and 0/0 gives NaN; use exp(new_log_probs - old_log_probs)", _diagnostics(ratio_from="prob")),
        Mistake("old_not_detached", "looks like old_log_probs are not detached: gradient flows into the old policy",
                _diagnostics(detach_old=False)),
        Mistake("kl_wrong_direction", "looks like approx_kl estimates KL(new || old) (r log r - (r - 1)); the "
                                      "contract's estimator is (r - 1) - log r, for KL(old || new)",
                _diagnostics(kl="reverse")),
        Mistake("kl_k1", "looks like approx_kl is mean(-log r): unbiased but often negative; use (r - 1) - log r",
                _diagnostics(kl="k1")),
        Mistake("clip_fraction_is_active_mask", "looks like clip_fraction counts only clip-active samples "
                                                "(clip_active_mask); the contract counts every |r - 1| > epsilon",
                _diagnostics(clip_fraction="active")),
        Mistake("biased_std", "looks like ratio_std is the biased std (unbiased=False); use torch's default",
                _diagnostics(unbiased=False)),
        Mistake("max_instead_of_min", "looks like max instead of min in the loss", _diagnostics(combine=torch.max)),
    ),
))


# --- ppo_kl_objective and adaptive_beta ------------------------------------------------------------


def _kl_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(description, batch, actions, beta, advantages=None):
        old_logits = normal(generator, batch, actions)
        return Case(description, {
            "ratio": _ratios(generator, batch, spread=0.2),
            "advantages": normal(generator, batch) if advantages is None else advantages,
            "old_logits": old_logits,
            "new_logits": old_logits + normal(generator, batch, actions, scale=0.5),
            "beta": beta,
        })

    cases = [case("B = 6, 3 actions, beta = 0.5", 6, 3, 0.5)]
    if hidden:
        cases += [
            case("B = 1, 2 actions", 1, 2, 1.0),
            case("large batch, 5 actions, beta = 0.01", 200, 5, 0.01),
            case("all advantages positive", 20, 2, 2.0, advantages=normal(generator, 20).abs() + 0.05),
            case("all advantages negative", 20, 4, 0.3, advantages=-normal(generator, 20).abs() - 0.05),
            case("beta = 0 (no penalty)", 10, 3, 0.0),
        ]
    return cases


def _kl_loss(*, direction="old_new", penalty_sign=1.0, sign=-1.0, detach_old=True):
    """Builds PPO-KL losses, right or wrong in one named way (the mistake catalogue)."""

    def loss(ratio, advantages, old_logits, new_logits, beta=0.01):
        old_log_p = torch.log_softmax(old_logits.detach() if detach_old else old_logits, dim=-1)
        new_log_p = torch.log_softmax(new_logits, dim=-1)
        if direction == "old_new":
            kl = (old_log_p.exp() * (old_log_p - new_log_p)).sum(-1)
        else:
            kl = (new_log_p.exp() * (new_log_p - old_log_p)).sum(-1)
        return sign * ((ratio * advantages).mean() - penalty_sign * beta * kl.mean())

    return loss


register(Check(
    grade_id="test_ppo_kl_objective",
    make_cases=_kl_cases,
    reference=ppo_in_practice.ppo_kl_objective,
    run=partial(runners.value_and_grads, wrt=("ratio", "new_logits", "old_logits")),
    mistakes=(
        Mistake("kl_wrong_direction", "looks like KL(new || old): the penalty is KL(old || new), the expectation "
                                      "under the policy that collected the data", _kl_loss(direction="new_old")),
        Mistake("penalty_sign", "looks like the KL is added to the surrogate instead of subtracted",
                _kl_loss(penalty_sign=-1.0)),
        Mistake("objective_not_loss", "looks like the objective to MAXIMISE (surrogate - beta * KL); return its "
                                      "negation, the loss", _kl_loss(sign=1.0)),
        Mistake("old_not_detached", "looks like old_logits are not detached: gradient flows into the old policy",
                _kl_loss(detach_old=False)),
    ),
))


def _beta_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    kls = [0.001, 0.012, 0.05] if not hidden else [0.0, 0.0066, 0.0068, 0.0149, 0.0151, 0.2]
    cases = [Case(f"target_kl = 0.01, kl {'far ' if kl in (0.001, 0.05, 0.0, 0.2) else ''}"
                  f"{'below' if kl < 0.01 else 'above'} target", {"beta": 0.5, "kl": kl, "target_kl": 0.01})
             for kl in kls]
    if hidden:
        beta = float(torch.rand(1, generator=generator)) + 0.1
        cases += [Case("another beta and target_kl, kl within the band",
                       {"beta": beta, "kl": 0.021, "target_kl": 0.02}),
                  Case("another beta and target_kl, kl above the band", {"beta": beta, "kl": 0.5, "target_kl": 0.05})]
    return cases


register(Check(
    grade_id="test_adaptive_beta",
    make_cases=_beta_cases,
    reference=ppo_in_practice.adaptive_beta,
    mistakes=(
        Mistake("reversed", "looks reversed: a KL below target means the penalty is too STRONG, so beta halves",
                lambda beta, kl, target_kl=0.01: beta * 2 if kl < target_kl / 1.5 else
                beta / 2 if kl > target_kl * 1.5 else beta),
        Mistake("no_band", "looks like kl is compared with target_kl itself; keep beta while "
                           "target/1.5 <= kl <= target*1.5",
                lambda beta, kl, target_kl=0.01: beta / 2 if kl < target_kl else beta * 2 if kl > target_kl else beta),
        Mistake("factor_1_5", "looks like beta is scaled by 1.5; the rule halves or doubles it",
                lambda beta, kl, target_kl=0.01: beta / 1.5 if kl < target_kl / 1.5 else
                beta * 1.5 if kl > target_kl * 1.5 else beta),
    ),
))


# --- schedules -----------------------------------------------------------------------------------


def _schedule_cases(generator: torch.Generator, hidden: bool, *, extra: dict) -> list[Case]:
    """Updates 0, middle and last of a run; hidden: other totals and hyperparameters."""
    plan = [(0, 10), (4, 10), (10, 10)]
    if hidden:
        total = int(torch.randint(3, 500, (1,), generator=generator))
        plan += [(0, 1), (1, 1), (1, 3), (total // 3, total), (total - 1, total)]
    cases = [Case(f"update {'0' if u == 0 else 'total_updates' if u == t else 'in between'}",
                  {"update": u, "total_updates": t}) for u, t in plan]
    if hidden:
        cases += [Case(f"non-default {', '.join(extra)}", {"update": 3, "total_updates": 7, **extra})]
    return cases


register(Check(
    grade_id="test_adaptive_epsilon",
    make_cases=lambda generator, hidden: _schedule_cases(generator, hidden, extra={"start": 0.4, "end": 0.05}),
    reference=ppo_in_practice.adaptive_epsilon,
    mistakes=(
        Mistake("reversed", "looks reversed: epsilon starts at `start` (update 0) and ends at `end`",
                lambda update, total_updates, start=0.3, end=0.1: end + (start - end) * update / total_updates),
        Mistake("integer_division", "looks like integer division (update // total_updates is 0 until the end)",
                lambda update, total_updates, start=0.3, end=0.1: start - (start - end) * (update // total_updates)),
        Mistake("off_by_one", "looks like (update + 1) / total_updates: update 0 must give `start`",
                lambda update, total_updates, start=0.3, end=0.1:
                start - (start - end) * min(1.0, (update + 1) / total_updates)),
    ),
))

register(Check(
    grade_id="test_get_lr",
    make_cases=lambda generator, hidden: _schedule_cases(generator, hidden, extra={"initial_lr": 2.5e-3}),
    reference=ppo_in_practice.get_lr,
    run=partial(runners.scaled, factor=1e4),  # lrs are ~1e-4: compare on a readable scale
    mistakes=(
        Mistake("rising", "looks like the lr grows with update: it should fall from initial_lr to 0",
                lambda update, total_updates, initial_lr=3e-4: initial_lr * update / total_updates),
        Mistake("integer_division", "looks like integer division (update // total_updates is 0 until the end)",
                lambda update, total_updates, initial_lr=3e-4: initial_lr * (1 - update // total_updates)),
        Mistake("off_by_one", "looks like (update + 1) / total_updates: update 0 must give initial_lr",
                lambda update, total_updates, initial_lr=3e-4:
                initial_lr * max(0.0, 1 - (update + 1) / total_updates)),
    ),
))
