"""ppo_lab: reference implementations, environments and tools for the PPO course.

Every exercise of the course has its reference version here (see ../shared/EXERCISE_API.md).
"""
from .gae import compute_gae
from .pg import pg_loss
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
from .trpo import categorical_kl, conjugate_gradient, probability_ratio

__all__ = [
    "adaptive_beta",
    "adaptive_epsilon",
    "categorical_kl",
    "clip_active_mask",
    "compute_gae",
    "conjugate_gradient",
    "get_lr",
    "kl_penalized_rewards",
    "pg_loss",
    "ppo_clip_objective",
    "ppo_kl_objective",
    "ppo_objective_with_diagnostics",
    "preference_loss",
    "probability_ratio",
]
