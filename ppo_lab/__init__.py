"""ppo_lab: reference implementations, environments and tools for the PPO course.

Every exercise of the course has its reference version here (see ../shared/EXERCISE_API.md),
next to the tools the chapters use: ``BatchedCartPole``, ``BatchedPendulum``, the PPO and TRPO
trainers, ``evaluate``.
"""
from .models.actor_critic import ActorCritic, GaussianActorCritic
from .exercises.continuous import gaussian_entropy, gaussian_log_prob, update_running_moments
from .envs import BatchedCartPole, BatchedPendulum
from .exercises.gae import compute_gae
from .exercises.build_ppo import fixed_ppo_update, ppo_loss, ppo_update
from .exercises.pg import pg_loss, reward_to_go
from .exercises.ppo_clip import clip_active_mask, ppo_clip_objective, ppo_objective_with_diagnostics
from .exercises.ppo_in_practice import adaptive_beta, adaptive_epsilon, get_lr, ppo_kl_objective
from .exercises.rlhf import kl_penalized_rewards, preference_loss
from .exercises.beyond_ppo import dpo_loss, group_advantages, leave_one_out_advantages
from .algos.ppo import PPOConfig, evaluate, train_ppo
from .exercises.trpo import categorical_kl, conjugate_gradient, probability_ratio
from .algos.trpo import TRPOConfig, train_trpo

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
    "dpo_loss",
    "evaluate",
    "fixed_ppo_update",
    "gaussian_entropy",
    "gaussian_log_prob",
    "get_lr",
    "group_advantages",
    "kl_penalized_rewards",
    "leave_one_out_advantages",
    "pg_loss",
    "ppo_clip_objective",
    "ppo_kl_objective",
    "ppo_loss",
    "ppo_objective_with_diagnostics",
    "ppo_update",
    "preference_loss",
    "probability_ratio",
    "reward_to_go",
    "train_ppo",
    "train_trpo",
    "update_running_moments",
]
