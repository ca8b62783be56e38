"""Chapter 5: Generalized Advantage Estimation, with bootstrapping done right."""
from __future__ import annotations

import torch

from .. import validate


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value=0.0,
    gamma: float = 0.99,
    gae_lambda: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages ``A_t = sum_k (gamma * lambda)^k * delta_{t+k}`` and returns ``A_t + V(s_t)``.

    ``delta_t = r_t + gamma * V(s_{t+1}) * (1 - done_t) - V(s_t)``: the one-step TD error.
    Three details decide whether the estimate is right:

    * ``dones[t] = 1`` means the episode TERMINATED with step t: nothing follows, so neither
      V(s_{t+1}) nor any later delta may leak back across it.
    * The rollout usually stops in the middle of an episode. The step after the last one is
      then not the end of the world: its value ``last_value = V(s_T)`` must be bootstrapped.
      Passing 0 there (the common tutorial version) pretends every rollout ends in a
      terminal state and biases the last advantages (downwards when V(s_T) > 0).
    * A time limit (truncation) inside the rollout is not a termination either: the episode
      could have gone on, worth ``V(final_obs)``. GAE only knows ``dones``, so the caller folds
      that value into the cut step's reward, ``r_t + gamma * V(final_obs)``, and marks the step
      done (``dones[t] = 1``): the bootstrap is in the reward, and the flag stops the recursion
      from running on into the next episode, which the env has already started.
      ``RolloutCollector.collect`` (``rollout.py``) does exactly this.

    Args:
        rewards: ``[T]`` or ``[T, N]`` (time-major, N parallel envs).
        values: ``[T]`` or ``[T, N]`` V(s_t) under the current critic.
        dones: ``[T]`` or ``[T, N]`` 1.0 where nothing may be bootstrapped past step t (the
            episode terminated there, or was truncated with its bootstrap already in the
            reward), else 0.0.
        last_value: V(s_T) of the state after the last step: a number, or ``[N]``.
        gamma: discount factor in [0, 1].
        gae_lambda: GAE parameter in [0, 1]; 0 gives the TD errors, 1 the discounted return
            (bootstrapped from ``last_value`` where the rollout ends mid-episode) minus V(s_t).

    Returns:
        ``(advantages, returns)``, both shaped like ``rewards``, with no gradient attached.
    """
    validate.tensor("rewards", rewards, ndim=(1, 2))
    validate.tensor("values", values, ndim=(1, 2))
    if not isinstance(dones, torch.Tensor):
        raise ValueError(f"dones must be a torch.Tensor, got {type(dones).__name__}")
    validate.same_shape(rewards=rewards, values=values, dones=dones)
    dones = dones.detach().to(rewards.dtype)
    if not ((dones == 0) | (dones == 1)).all():
        raise ValueError("dones must contain only 0 and 1 (1 = the episode terminated at this step)")
    gamma = validate.in_closed_interval("gamma", gamma, 0.0, 1.0)
    gae_lambda = validate.in_closed_interval("gae_lambda", gae_lambda, 0.0, 1.0)
    bootstrap = _last_value(last_value, rewards)

    rewards, values = rewards.detach(), values.detach()
    advantages = torch.zeros_like(rewards)
    next_value, next_advantage = bootstrap, torch.zeros_like(bootstrap)
    for t in reversed(range(rewards.shape[0])):
        alive = 1.0 - dones[t]  # 0 after a termination: nothing to bootstrap, nothing to carry back
        delta = rewards[t] + gamma * next_value * alive - values[t]
        next_advantage = delta + gamma * gae_lambda * alive * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


def _last_value(last_value, rewards: torch.Tensor) -> torch.Tensor:
    """``last_value`` as a tensor shaped like one time step of ``rewards`` (``[]`` or ``[N]``)."""
    step_shape = rewards.shape[1:]
    if isinstance(last_value, torch.Tensor):
        if last_value.numel() == 1 and last_value.dim() <= 1:
            last_value = last_value.reshape(())
        elif last_value.shape != step_shape:
            raise ValueError(
                f"last_value must be a number or have shape {list(step_shape)} (one value per env), "
                f"got shape {list(last_value.shape)}"
            )
        validate.tensor("last_value", last_value.to(rewards.dtype))
        return last_value.detach().to(rewards.dtype).expand(step_shape).clone()
    return torch.full(step_shape, validate.number("last_value", last_value), dtype=rewards.dtype)
