"""Chapter 2: the pieces of a trust-region update (ratio, KL, conjugate gradient)."""
from __future__ import annotations

from typing import Callable

import torch

from .. import validate


def probability_ratio(new_log_probs: torch.Tensor, old_log_probs: torch.Tensor) -> torch.Tensor:
    """``r = pi_new(a|s) / pi_old(a|s)``, computed as ``exp(new - old)`` in log space.

    Dividing raw probabilities underflows for unlikely actions (p ~ 1e-30 -> 0/0); the
    difference of log-probabilities does not. The old policy is fixed while we optimise the
    new one, so ``old_log_probs`` is detached.

    Args:
        new_log_probs: ``[B]`` log pi_new(a|s), differentiable.
        old_log_probs: ``[B]`` log pi_old(a|s) recorded when the data was collected.

    Returns:
        ``[B]`` ratios, differentiable with respect to ``new_log_probs`` only.
    """
    validate.tensor("new_log_probs", new_log_probs, ndim=(1,))
    validate.tensor("old_log_probs", old_log_probs, ndim=(1,))
    validate.same_shape(new_log_probs=new_log_probs, old_log_probs=old_log_probs)
    return torch.exp(new_log_probs - old_log_probs.detach())


def categorical_kl(old_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
    """``KL(pi_old || pi_new)`` per state for categorical policies.

    ``sum_a p_old(a) * (log p_old(a) - log p_new(a))``: the expectation is under the OLD
    policy, the one that collected the data (TRPO's constraint), so the order matters.

    Args:
        old_logits: ``[B, A]`` unnormalised logits of the old policy (treated as constants).
        new_logits: ``[B, A]`` unnormalised logits of the new policy, differentiable.

    Returns:
        ``[B]`` non-negative KL divergences.
    """
    validate.tensor("old_logits", old_logits, ndim=(2,))
    validate.tensor("new_logits", new_logits, ndim=(2,))
    validate.same_shape(old_logits=old_logits, new_logits=new_logits)
    old_log_p = torch.log_softmax(old_logits.detach(), dim=-1)
    new_log_p = torch.log_softmax(new_logits, dim=-1)
    return (old_log_p.exp() * (old_log_p - new_log_p)).sum(dim=-1)


def conjugate_gradient(
    Avp: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    n_steps: int = 10,
    tol: float = 1e-10,
) -> torch.Tensor:
    """Approximately solve ``A x = b`` using only matrix-vector products ``Avp(v) = A @ v``.

    TRPO needs ``F^{-1} g`` for the Fisher matrix ``F``, which is never formed: with n
    parameters it would have n^2 entries. Conjugate gradient only needs ``F @ v``, which
    autograd gives in one extra backward pass. Starts from x = 0 and stops early once the
    squared residual norm ``|b - A x|^2`` falls below ``tol``.

    Args:
        Avp: function mapping a vector ``[n]`` to ``A @ v`` ``[n]``, A symmetric positive definite.
        b: ``[n]`` right-hand side.
        n_steps: maximum number of CG iterations (>= 1).
        tol: stop when the squared residual norm is below this (>= 0).

    Returns:
        ``[n]`` approximate solution x.
    """
    validate.tensor("b", b, ndim=(1,))
    validate.positive_int("n_steps", n_steps)
    validate.non_negative("tol", tol)
    x = torch.zeros_like(b)
    residual = b.clone()  # b - A x with x = 0
    direction = residual.clone()
    residual_sq = residual @ residual
    for _ in range(n_steps):
        if residual_sq < tol:
            break
        A_direction = Avp(direction)
        if not isinstance(A_direction, torch.Tensor) or A_direction.shape != b.shape:
            raise ValueError(f"Avp must return a tensor of shape {list(b.shape)}, got {A_direction!r:.60}")
        curvature = direction @ A_direction
        if curvature <= 0:
            raise ValueError(f"Avp is not positive definite: d^T A d = {curvature.item():.3g} <= 0")
        step = residual_sq / curvature
        x = x + step * direction
        residual = residual - step * A_direction
        new_residual_sq = residual @ residual
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
    return x
