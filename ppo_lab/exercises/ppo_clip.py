"""Chapter 3's reference answers: the PPO-Clip objective, where the clip acts, and the diagnostics to
watch while training."""
from __future__ import annotations

import torch

from .. import validate



def _check_ratio_and_advantages(ratio: torch.Tensor, advantages: torch.Tensor, epsilon: float) -> None:
    validate.tensor("ratio", ratio, ndim=(1, 2))
    validate.tensor("advantages", advantages, ndim=(1, 2))
    validate.same_shape(ratio=ratio, advantages=advantages)
    if (ratio <= 0).any():
        raise ValueError(f"ratio must be > 0 (it is pi_new / pi_old), got min {ratio.min().item():.3g}")
    validate.in_open_interval("epsilon", epsilon, 0.0, 1.0)


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
    validate.tensor("old_log_probs", old_log_probs, ndim=(1, 2))
    validate.tensor("new_log_probs", new_log_probs, ndim=(1, 2))
    validate.tensor("advantages", advantages, ndim=(1, 2))
    validate.same_shape(old_log_probs=old_log_probs, new_log_probs=new_log_probs, advantages=advantages)
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
