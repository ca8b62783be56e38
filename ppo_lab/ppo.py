"""Chapters 3 and 4: PPO-Clip and its diagnostics; PPO-KL and the schedules used with them."""
from __future__ import annotations

import torch

from . import _validate


def _check_ratio_and_advantages(ratio: torch.Tensor, advantages: torch.Tensor, epsilon: float) -> None:
    _validate.tensor("ratio", ratio, ndim=(1, 2))
    _validate.tensor("advantages", advantages, ndim=(1, 2))
    _validate.same_shape(ratio=ratio, advantages=advantages)
    if (ratio <= 0).any():
        raise ValueError(f"ratio must be > 0 (it is pi_new / pi_old), got min {ratio.min().item():.3g}")
    _validate.in_open_interval("epsilon", epsilon, 0.0, 1.0)


def ppo_clip_objective(ratio: torch.Tensor, advantages: torch.Tensor, epsilon: float = 0.2) -> torch.Tensor:
    """The PPO-Clip loss ``-mean(min(r * A, clip(r, 1 - eps, 1 + eps) * A))``.

    Taking the minimum makes the objective pessimistic: once the ratio has moved more than
    eps in the direction the advantage rewards, the clipped term is the smaller one and it is
    constant in r, so that sample stops pushing. Moves that make things worse are never clipped.

    Args:
        ratio: ``[B]`` pi_new(a|s) / pi_old(a|s), differentiable.
        advantages: ``[B]`` advantage estimates (constants).
        epsilon: clip range, in (0, 1).

    Returns:
        0-dim loss to minimise (the negated clipped surrogate).
    """
    _check_ratio_and_advantages(ratio, advantages, epsilon)
    advantages = advantages.detach()
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon) * advantages
    return -torch.min(unclipped, clipped).mean()


def clip_active_mask(ratio: torch.Tensor, advantages: torch.Tensor, epsilon: float = 0.2) -> torch.Tensor:
    """Where the clip removes a sample's gradient.

    True exactly where the clipped term is strictly smaller than the unclipped one:
    ``(A > 0 and r > 1 + eps) or (A < 0 and r < 1 - eps)``. A ratio outside the range on the
    other side (e.g. A > 0 and r < 1 - eps) is NOT clipped: the objective still pulls it back.

    Returns:
        ``[B]`` bool tensor.
    """
    _check_ratio_and_advantages(ratio, advantages, epsilon)
    return ((advantages > 0) & (ratio > 1.0 + epsilon)) | ((advantages < 0) & (ratio < 1.0 - epsilon))


def ppo_objective_with_diagnostics(
    old_log_probs: torch.Tensor,
    new_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    epsilon: float = 0.2,
) -> dict:
    """The PPO-Clip loss plus the numbers to watch while training.

    Args:
        old_log_probs: ``[B]`` log pi_old(a|s) from the rollout (constants).
        new_log_probs: ``[B]`` log pi_new(a|s), differentiable.
        advantages: ``[B]`` advantage estimates.
        epsilon: clip range, in (0, 1).

    Returns:
        ``loss`` (0-dim tensor, as ``ppo_clip_objective``), and Python floats
        ``clip_fraction`` (share of samples with |r - 1| > eps), ``approx_kl``
        (mean of (r - 1) - log r, an unbiased, always non-negative estimate of
        KL(pi_old || pi_new)), ``ratio_mean`` and ``ratio_std`` (unbiased; 0.0 when B == 1).
    """
    _validate.tensor("old_log_probs", old_log_probs, ndim=(1, 2))
    _validate.tensor("new_log_probs", new_log_probs, ndim=(1, 2))
    _validate.tensor("advantages", advantages, ndim=(1, 2))
    _validate.same_shape(old_log_probs=old_log_probs, new_log_probs=new_log_probs, advantages=advantages)
    log_ratio = new_log_probs - old_log_probs.detach()
    ratio = log_ratio.exp()
    loss = ppo_clip_objective(ratio, advantages, epsilon)
    with torch.no_grad():
        # (r - 1) - log r computed from log r directly: no log of a tiny ratio.
        approx_kl = (torch.expm1(log_ratio) - log_ratio).mean().item()
        clip_fraction = ((ratio - 1.0).abs() > epsilon).float().mean().item()
        ratio_std = ratio.std().item() if ratio.numel() > 1 else 0.0
        ratio_mean = ratio.mean().item()
    return {
        "loss": loss,
        "clip_fraction": clip_fraction,
        "approx_kl": approx_kl,
        "ratio_mean": ratio_mean,
        "ratio_std": ratio_std,
    }


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

    _validate.tensor("ratio", ratio, ndim=(1,))
    _validate.tensor("advantages", advantages, ndim=(1,))
    _validate.same_shape(ratio=ratio, advantages=advantages)
    _validate.non_negative("beta", beta)
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
    beta = _validate.number("beta", beta)
    if beta <= 0:
        raise ValueError(f"beta must be > 0 (a zero beta can never grow back), got {beta}")
    kl = _validate.non_negative("kl", kl)
    target_kl = _validate.number("target_kl", target_kl)
    if target_kl <= 0:
        raise ValueError(f"target_kl must be > 0, got {target_kl}")
    if kl < target_kl / 1.5:
        return beta / 2.0
    if kl > target_kl * 1.5:
        return beta * 2.0
    return beta


def _progress(update, total_updates) -> float:
    total_updates = _validate.positive_int("total_updates", total_updates)
    if isinstance(update, bool) or not isinstance(update, int) or not 0 <= update <= total_updates:
        raise ValueError(f"update must be an integer in [0, total_updates={total_updates}], got {update!r}")
    return update / total_updates


def adaptive_epsilon(update: int, total_updates: int, start: float = 0.3, end: float = 0.1) -> float:
    """Clip range annealed linearly from ``start`` (update 0) to ``end`` (update total_updates)."""
    frac = _progress(update, total_updates)
    start = _validate.in_open_interval("start", start, 0.0, 1.0)
    end = _validate.in_open_interval("end", end, 0.0, 1.0)
    return start - (start - end) * frac


def get_lr(update: int, total_updates: int, initial_lr: float = 3e-4) -> float:
    """Learning rate annealed linearly from ``initial_lr`` to 0: ``initial_lr * (1 - update/total)``."""
    frac = _progress(update, total_updates)
    initial_lr = _validate.number("initial_lr", initial_lr)
    if initial_lr <= 0:
        raise ValueError(f"initial_lr must be > 0, got {initial_lr}")
    return initial_lr * (1.0 - frac)
