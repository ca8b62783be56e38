"""The actor-critic that PPO trains: a policy network and a value network, side by side.

Actor and critic are separate 64-64 tanh MLPs (no shared layers), so the value loss can never
disturb the policy's features. Orthogonal initialisation with a tiny last layer for the actor
makes the first policy almost uniform over actions: every action gets explored at the start.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Categorical


def _layer(in_features: int, out_features: int, gain: float) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(obs_dim: int, out_dim: int, hidden: int, out_gain: float) -> nn.Sequential:
    return nn.Sequential(
        _layer(obs_dim, hidden, math.sqrt(2)),
        nn.Tanh(),
        _layer(hidden, hidden, math.sqrt(2)),
        nn.Tanh(),
        _layer(hidden, out_dim, out_gain),
    )


class ActorCritic(nn.Module):
    """pi(a|s) over discrete actions and V(s).

    Args:
        obs_dim: size of one observation (4 for CartPole).
        num_actions: number of discrete actions (2 for CartPole).
        hidden: width of both hidden layers.
    """

    def __init__(self, obs_dim: int = 4, num_actions: int = 2, hidden: int = 64):
        super().__init__()
        for name, value in (("obs_dim", obs_dim), ("num_actions", num_actions), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.actor = _mlp(obs_dim, num_actions, hidden, out_gain=0.01)
        self.critic = _mlp(obs_dim, 1, hidden, out_gain=1.0)

    def policy(self, obs: torch.Tensor) -> Categorical:
        """The action distribution for a batch of observations ``[B, obs_dim]`` (batch shape ``[B]``)."""
        # validate_args=False: logits straight from the network need no checking, and the check
        # costs about as much as the network itself at these sizes.
        return Categorical(logits=self.actor(obs), validate_args=False)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s) for ``[B, obs_dim]`` observations, shape ``[B]``."""
        return self.critic(obs).squeeze(-1)

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False) -> torch.Tensor:
        """Actions ``[B]`` (int64) for observations ``[B, obs_dim]`` (tensor or numpy array).

        ``deterministic=True`` takes the most likely action (for evaluation); otherwise samples.
        """
        logits = self.actor(torch.as_tensor(obs, dtype=torch.float32))
        if deterministic:
            return logits.argmax(dim=-1)
        return Categorical(logits=logits, validate_args=False).sample()
