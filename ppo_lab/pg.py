"""Chapter 1: the vanilla policy-gradient loss."""
from __future__ import annotations

import torch

from . import _validate


def pg_loss(log_probs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """REINFORCE-style loss ``-(log_probs * advantages).mean()`` to minimise.

    Args:
        log_probs: ``[B]`` (or ``[T, N]``) log pi(a_t | s_t) of the taken actions, differentiable.
        advantages: ``[B]`` advantage estimates. Treated as constants: they score the action,
            they are not something to optimise, so no gradient flows into them.

    Returns:
        0-dim loss. Its gradient is the policy-gradient estimate, negated.
    """
    _validate.tensor("log_probs", log_probs, ndim=(1, 2))
    _validate.tensor("advantages", advantages, ndim=(1, 2))
    _validate.same_shape(log_probs=log_probs, advantages=advantages)
    return -(log_probs * advantages.detach()).mean()
