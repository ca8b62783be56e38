"""Chapter 7: continuous actions. A diagonal Gaussian policy, and the running statistics that
normalise observations and scale rewards.

With a torque instead of "left or right", the policy outputs a mean action mu(s) and a standard
deviation sigma per action dimension; an action is a ~ N(mu(s), sigma^2), one independent normal
per dimension, so its log-probability is a sum over the dimensions. sigma is kept as log(sigma):
any real number is a valid log-std, and exploration shrinks smoothly as it decreases.
"""
from __future__ import annotations

import math

import torch

from .. import validate

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log N(actions; mean, exp(log_std)^2), summed over the action dimension.

    Per dimension: ``-0.5 * ((a - mu) / sigma)^2 - log(sigma) - 0.5 * log(2 pi)``.

    Args:
        mean: ``[B, D]`` mean actions mu(s), differentiable.
        log_std: ``[D]`` (state-independent, shared by the batch) or ``[B, D]`` log sigma, differentiable.
        actions: ``[B, D]`` the actions taken (the unclipped samples).

    Returns:
        ``[B]`` log pi(a|s).
    """
    validate.tensor("mean", mean, ndim=(2,))
    validate.tensor("log_std", log_std, ndim=(1, 2))
    validate.tensor("actions", actions, ndim=(2,))
    validate.same_shape(mean=mean, actions=actions)
    if log_std.shape not in (mean.shape[1:], mean.shape):
        raise ValueError(
            f"log_std must have shape [D] = {list(mean.shape[1:])} or [B, D] = {list(mean.shape)} "
            f"(mean has shape {list(mean.shape)}), got {list(log_std.shape)}"
        )
    z = (actions - mean) * torch.exp(-log_std)  # the action in standard deviations from the mean
    return (-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI).sum(dim=-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of the diagonal Gaussian, summed over the action dimension (the last one).

    Per dimension ``0.5 + 0.5 * log(2 pi) + log(sigma)``: it depends on sigma only, not on the mean,
    so for a state-independent log_std it is the same in every state.

    Args:
        log_std: ``[D]`` or ``[B, D]`` log sigma, differentiable.

    Returns:
        ``[]`` for ``[D]``, ``[B]`` for ``[B, D]``, in nats.
    """
    validate.tensor("log_std", log_std, ndim=(1, 2))
    return (0.5 + _LOG_SQRT_2PI + log_std).sum(dim=-1)


def update_running_moments(
    mean: torch.Tensor, var: torch.Tensor, count, batch: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Merge a batch into running statistics with the parallel formula of Chan et al.

    With n = count earlier samples (mean m, population variance v) and the batch's B samples (mean
    m_b, population variance v_b), delta = m_b - m and n' = n + B:
        mean' = m + delta * B / n'
        var'  = (v * n + v_b * B + delta^2 * n * B / n') / n'
    This equals the mean and population variance of all n' samples together, without keeping them
    and without the cancellation of the naive E[x^2] - E[x]^2. With count = 0 the old mean and var
    are ignored: the result is the batch's own statistics.

    Args:
        mean: ``[...]`` running mean of the earlier samples.
        var: ``[...]`` their population variance (>= 0).
        count: how many earlier samples (a number >= 0, or a 0-dim tensor).
        batch: ``[B, ...]`` new samples, B >= 1; ``batch.shape[1:]`` must equal ``mean.shape``.

    Returns:
        ``(new_mean, new_var, count + B)``: new tensors (the inputs are not modified), and a float.
    """
    validate.tensor("batch", batch)
    if batch.dim() == 0:
        raise ValueError("batch must be [B, ...] (samples along the first dimension), got a 0-dim tensor")
    validate.tensor("mean", mean)
    validate.tensor("var", var)
    count = validate.non_negative("count", count)
    if mean.shape != batch.shape[1:]:
        raise ValueError(
            f"mean must have the shape of one sample, batch.shape[1:] = {list(batch.shape[1:])}, got {list(mean.shape)}"
        )
    validate.same_shape(mean=mean, var=var)
    if (var < 0).any():
        raise ValueError(f"var must be >= 0 (a variance), got min {var.min().item():.3g}")
    batch_count = batch.shape[0]
    batch_mean, batch_var = batch.mean(dim=0), batch.var(dim=0, correction=0)
    total = count + batch_count
    delta = batch_mean - mean
    new_mean = mean + delta * (batch_count / total)
    new_var = (var * count + batch_var * batch_count + delta.pow(2) * (count * batch_count / total)) / total
    return new_mean, new_var, total
