"""ppo_lab: reference implementations, environments and tools for the PPO course.

Every exercise of the course has its reference version here (see ../shared/EXERCISE_API.md),
next to the tools the chapters use: ``BatchedCartPole``, ``BatchedPendulum``, the PPO and TRPO
trainers, ``evaluate``.
"""
from .agent import ActorCritic, GaussianActorCritic
from .continuous import gaussian_entropy, gaussian_log_prob, update_running_moments
from .envs import BatchedCartPole, BatchedPendulum
from .gae import compute_gae
from .pg import pg_loss, reward_to_go
from .ppo import (
    adaptive_beta,
    adaptive_epsilon,
    clip_active_mask,
    get_lr,
    ppo_clip_objective,
    ppo_kl_objective,
    ppo_objective_with_diagnostics,
)
from .rlhf import kl_penalized_rewards, preference_loss
from .train import PPOConfig, evaluate, train_ppo
from .trpo import categorical_kl, conjugate_gradient, probability_ratio
from .trpo_train import TRPOConfig, train_trpo

__all__ = [
    "ActorCritic",
    "BatchedCartPole",
    "BatchedPendulum",
    "GaussianActorCritic",
    "PPOConfig",
    "TRPOConfig",
    "adaptive_beta",
    "adaptive_epsilon",
    "categorical_kl",
    "clip_active_mask",
    "compute_gae",
    "conjugate_gradient",
    "evaluate",
    "gaussian_entropy",
    "gaussian_log_prob",
    "get_lr",
    "kl_penalized_rewards",
    "pg_loss",
    "ppo_clip_objective",
    "ppo_kl_objective",
    "ppo_objective_with_diagnostics",
    "preference_loss",
    "probability_ratio",
    "reward_to_go",
    "train_ppo",
    "train_trpo",
    "update_running_moments",
]
