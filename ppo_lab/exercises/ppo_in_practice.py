"""Chapter 4's reference answers: PPO-KL's penalised objective and its adaptive beta, and the
schedules of epsilon and the learning rate."""
from __future__ import annotations

import torch

from .. import validate


def ppo_kl_objective(
    ratio: torch.Tensor,
    advantages: torch.Tensor,
    old_logits: torch.Tensor,
    new_logits: torch.Tensor,
    beta: float = 0.01,
) -> torch.Tensor:
    """PPO-KL: a KL penalty instead of a clip, ``-(mean(r * A) - beta * mean(KL(old || new)))``.

    Args:
        ratio: ``[B]`` probability ratios, differentiable.
        advantages: ``[B]`` advantage estimates (constants).
        old_logits: ``[B, A]`` logits of the policy that collected the data.
        new_logits: ``[B, A]`` logits of the current policy, differentiable.
        beta: penalty weight (>= 0); adapt it between updates with ``adaptive_beta``.
    """
    from .trpo import categorical_kl

    validate.tensor("ratio", ratio, ndim=(1,))
    validate.tensor("advantages", advantages, ndim=(1,))
    validate.same_shape(ratio=ratio, advantages=advantages)
    validate.non_negative("beta", beta)
    kl = categorical_kl(old_logits, new_logits)
    if kl.shape != ratio.shape:
        raise ValueError(
            f"old_logits/new_logits have batch size {kl.shape[0]} but ratio has shape {list(ratio.shape)}"
        )
    return -((ratio * advantages.detach()).mean() - beta * kl.mean())


def adaptive_beta(beta: float, kl: float, target_kl: float = 0.01) -> float:
    """The PPO paper's rule for the KL weight, applied after each update.

    ``kl`` is what the update produced: KL(pi_old || pi_new) between the policy that collected
    the rollout and the updated one, averaged over the rollout's states and measured once the
    update is over (``train_ppo`` does this; the mean of the approx_kl logged during the epochs
    under-measures it, since the first steps see a policy that has barely moved).
    If it came out below target / 1.5 the penalty is too strong: halve beta.
    Above target * 1.5 it is too weak: double beta. Otherwise keep it.
    """
    beta = validate.number("beta", beta)
    if beta <= 0:
        raise ValueError(f"beta must be > 0 (a zero beta can never grow back), got {beta}")
    kl = validate.non_negative("kl", kl)
    target_kl = validate.number("target_kl", target_kl)
    if target_kl <= 0:
        raise ValueError(f"target_kl must be > 0, got {target_kl}")
    if kl < target_kl / 1.5:
        return beta / 2.0
    if kl > target_kl * 1.5:
        return beta * 2.0
    return beta


def _progress(update, total_updates) -> float:
    total_updates = validate.positive_int("total_updates", total_updates)
    if isinstance(update, bool) or not isinstance(update, int) or not 0 <= update <= total_updates:
        raise ValueError(f"update must be an integer in [0, total_updates={total_updates}], got {update!r}")
    return update / total_updates


def adaptive_epsilon(update: int, total_updates: int, start: float = 0.3, end: float = 0.1) -> float:
    """Clip range annealed linearly from ``start`` (update 0) to ``end`` (update total_updates)."""
    frac = _progress(update, total_updates)
    start = validate.in_open_interval("start", start, 0.0, 1.0)
    end = validate.in_open_interval("end", end, 0.0, 1.0)
    return start - (start - end) * frac


def get_lr(update: int, total_updates: int, initial_lr: float = 3e-4) -> float:
    """Learning rate annealed linearly from ``initial_lr`` to 0: ``initial_lr * (1 - update/total)``."""
    frac = _progress(update, total_updates)
    initial_lr = validate.number("initial_lr", initial_lr)
    if initial_lr <= 0:
        raise ValueError(f"initial_lr must be > 0, got {initial_lr}")
    return initial_lr * (1.0 - frac)
