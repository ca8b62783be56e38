"""The actor-critics that PPO trains: a policy network and a value network, side by side.

Actor and critic are separate tanh MLPs with two hidden layers (64 wide unless asked otherwise)
and no shared layers, so the value loss can never disturb the policy's features. Orthogonal
initialisation with a tiny last layer for the actor makes the first policy almost uniform over
actions: every action gets explored at the start.
``ActorCritic`` chooses among discrete actions; ``GaussianActorCritic`` outputs continuous ones.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal

from .. import validate
from ..exercises.continuous import update_running_moments


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


class ObsNormalizer(nn.Module):
    """``(obs - mean) / sqrt(var + 1e-8)``, clipped to [-10, 10], with the running mean and variance
    of every observation trained on.

    Inputs of very different scales (a robot's joint angles next to its velocities) make the first
    layer's job harder; normalised, every input starts on the same footing. Pendulum's are already
    of order 1, and there it did not help (see ``PPOConfig.fast_pendulum``). The statistics are
    buffers, not parameters: the optimizer never touches them, ``update`` does, and they are saved
    with the agent, so evaluation normalises exactly as training did.
    """

    def __init__(self, obs_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("var", torch.ones(obs_dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))  # float64: exact past 2^24 samples

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # The clip keeps a rare extreme observation from saturating the network.
        return ((obs - self.mean) / torch.sqrt(self.var + 1e-8)).clamp(-10.0, 10.0)

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        """Merge a batch of raw observations ``[B, obs_dim]`` into the statistics."""
        mean, var, count = update_running_moments(self.mean, self.var, self.count, obs)
        self.mean.copy_(mean)
        self.var.copy_(var)
        self.count.fill_(count)


class ActorCritic(nn.Module):
    """pi(a|s) over discrete actions and V(s).

    Args:
        obs_dim: size of one observation (4 for CartPole).
        num_actions: number of discrete actions (2 for CartPole).
        hidden: width of both hidden layers.
        normalize_obs: put an ``ObsNormalizer`` (attribute ``obs_norm``) in front of both networks;
            the trainer feeds it (``PPOConfig.norm_obs``). Off: ``obs_norm`` passes obs through.
    """

    def __init__(self, obs_dim: int = 4, num_actions: int = 2, hidden: int = 64, normalize_obs: bool = False):
        super().__init__()
        for name, value in (("obs_dim", obs_dim), ("num_actions", num_actions), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(normalize_obs, bool):
            raise ValueError(f"normalize_obs must be True or False, got {normalize_obs!r}")
        self.obs_norm = ObsNormalizer(obs_dim) if normalize_obs else nn.Identity()
        self.actor = _mlp(obs_dim, num_actions, hidden, out_gain=0.01)
        self.critic = _mlp(obs_dim, 1, hidden, out_gain=1.0)

    def policy(self, obs: torch.Tensor) -> Categorical:
        """The action distribution for a batch of observations ``[B, obs_dim]`` (batch shape ``[B]``)."""
        # validate_args=False: logits straight from the network need no checking, and the check
        # costs about as much as the network itself at these sizes.
        return Categorical(logits=self.actor(self.obs_norm(obs)), validate_args=False)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s) for ``[B, obs_dim]`` observations, shape ``[B]``."""
        return self.critic(self.obs_norm(obs)).squeeze(-1)

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False) -> torch.Tensor:
        """Actions ``[B]`` (int64) for observations ``[B, obs_dim]`` (tensor or numpy array).

        ``deterministic=True`` takes the most likely action (for evaluation); otherwise samples.
        """
        logits = self.actor(self.obs_norm(torch.as_tensor(obs, dtype=torch.float32)))
        if deterministic:
            return logits.argmax(dim=-1)
        return Categorical(logits=logits, validate_args=False).sample()


class GaussianActorCritic(ActorCritic):
    """pi(a|s) = N(mu(s), diag(sigma^2)) over continuous actions, and V(s).

    The actor network outputs the mean action mu(s) (its tiny last layer starts every mean near
    0); log sigma is one learned parameter per action dimension, the same in every state. That is
    the usual choice for PPO: exploration is one number per dimension that the policy gradient
    shrinks as the policy grows confident, and it cannot collapse in some states only.

    Actions are NOT clipped here: PPO's log-probabilities belong to the sampled action, and the
    env's bounds are applied where the rollout hands the action to the env (``rollout.env_step``).

    Args:
        obs_dim: size of one observation (3 for Pendulum).
        action_dim: number of action dimensions D (1 for Pendulum).
        hidden: width of both hidden layers.
        normalize_obs: as in ``ActorCritic``.
        log_std_init: the initial log sigma (0: sigma = 1).
    """

    def __init__(self, obs_dim: int = 3, action_dim: int = 1, hidden: int = 64, normalize_obs: bool = False,
                 log_std_init: float = 0.0):
        if isinstance(action_dim, bool) or not isinstance(action_dim, int) or action_dim < 1:
            raise ValueError(f"action_dim must be a positive integer, got {action_dim!r}")
        log_std_init = validate.number("log_std_init", log_std_init)
        super().__init__(obs_dim, action_dim, hidden, normalize_obs)  # self.actor: obs -> mu(s), [B, D]
        self.log_std = nn.Parameter(torch.full((action_dim,), log_std_init))

    def policy(self, obs: torch.Tensor) -> Independent:
        """The action distribution for ``[B, obs_dim]`` observations: batch shape ``[B]``, event
        shape ``[D]``; ``log_prob`` of ``[B, D]`` actions and ``entropy()`` are summed over D, ``[B]``."""
        mean = self.actor(self.obs_norm(obs))
        # Independent(..., 1): the D normals are one action, so log-probs add up (the chapter's gaussian_log_prob).
        return Independent(Normal(mean, self.log_std.exp(), validate_args=False), 1, validate_args=False)

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False) -> torch.Tensor:
        """Actions ``[B, D]`` (float32, unclipped) for observations ``[B, obs_dim]`` (tensor or numpy array).

        ``deterministic=True`` takes the mean action mu(s) (for evaluation); otherwise samples.
        """
        obs = torch.as_tensor(obs, dtype=torch.float32)
        if deterministic:
            return self.actor(self.obs_norm(obs))  # mu(s), without building the distribution
        return self.policy(obs).sample()
