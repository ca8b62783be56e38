"""Chapter 1: the vanilla policy-gradient loss, and the reward-to-go that weights it."""
from __future__ import annotations

import torch

from .. import validate


def pg_loss(log_probs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """REINFORCE-style loss ``-(log_probs * advantages).mean()`` to minimise.

    Args:
        log_probs: ``[B]`` (or ``[T, N]``) log pi(a_t | s_t) of the taken actions, differentiable.
        advantages: ``[B]`` advantage estimates. Treated as constants: they score the action,
            they are not something to optimise, so no gradient flows into them.

    Returns:
        0-dim loss. Its gradient is the policy-gradient estimate, negated.
    """
    validate.tensor("log_probs", log_probs, ndim=(1, 2))
    validate.tensor("advantages", advantages, ndim=(1, 2))
    validate.same_shape(log_probs=log_probs, advantages=advantages)
    return -(log_probs * advantages.detach()).mean()


def reward_to_go(rewards: torch.Tensor, dones: torch.Tensor, gamma: float = 0.99) -> torch.Tensor:
    """Discounted sum of the rewards from step t to the end of its episode:
    ``G_t = r_t + gamma * (1 - dones[t]) * G_{t+1}``, with ``G_T = 0`` after the last step.

    An action cannot change the rewards that came before it, so weighting ``log pi(a_t|s_t)`` by
    ``G_t`` instead of the whole episode's return leaves the policy gradient unbiased and drops
    the noise of the earlier rewards. The sum stops at the end of the episode: ``dones[t] = 1``
    means the episode ended WITH step t, so nothing after it belongs to ``G_t``. The rollout's end
    counts as an episode end too (no bootstrapping here: chapter 5 adds a critic for that).

    Args:
        rewards: ``[T]`` or ``[T, N]`` (time-major, N parallel envs).
        dones: shaped like ``rewards``; 1 where the episode ended with step t, else 0.
        gamma: discount factor in [0, 1].

    Returns:
        ``[T]`` or ``[T, N]`` rewards-to-go, shaped like ``rewards``, with no gradient attached.
    """
    validate.tensor("rewards", rewards, ndim=(1, 2))
    if not isinstance(dones, torch.Tensor):
        raise ValueError(f"dones must be a torch.Tensor, got {type(dones).__name__}")
    validate.same_shape(rewards=rewards, dones=dones)
    dones = dones.detach().to(rewards.dtype)
    if not ((dones == 0) | (dones == 1)).all():
        raise ValueError("dones must contain only 0 and 1 (1 = the episode ended with this step)")
    gamma = validate.in_closed_interval("gamma", gamma, 0.0, 1.0)

    rewards = rewards.detach()
    returns = torch.zeros_like(rewards)
    following = torch.zeros_like(rewards[0])  # G_{t+1}; 0 after the last step of the rollout
    for t in reversed(range(rewards.shape[0])):
        following = rewards[t] + gamma * (1.0 - dones[t]) * following  # an episode's end cuts the sum
        returns[t] = following
    return returns
