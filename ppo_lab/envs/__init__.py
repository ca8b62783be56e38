"""CartPole-v1 and Pendulum-v1 for many environments at once, with torch tensors in and out.

``BatchedCartPole(N)`` steps N independent carts with one batch of array operations, and
``BatchedPendulum(N)`` N pendulums. Both follow the Gymnasium vector-env API and reproduce
``gymnasium.make("CartPole-v1")`` and ``gymnasium.make("Pendulum-v1")`` exactly (same physics in
float64, same time limits), so anything learned here transfers to Gymnasium. The point is speed:
PPO needs a lot of experience, and stepping a thousand carts in one array operation costs little
more than stepping one.

Autoreset follows Gymnasium's ``AutoresetMode.SAME_STEP``: when an episode ends, ``step`` already
returns the first observation of the next episode, and the observation the episode ended in is in
``info["final_obs"]``. Keep it: a truncated episode is bootstrapped from V(final_obs).
"""
from __future__ import annotations

import torch

from .batched import BatchedEnv
from .cartpole import BatchedCartPole
from .pendulum import BatchedPendulum

ENVS = {"CartPole": BatchedCartPole, "Pendulum": BatchedPendulum}


def make_env(name: str, num_envs: int, seed: int | None = None, device: str | torch.device = "cpu") -> BatchedEnv:
    """``ENVS[name](num_envs, seed, device)``: ``"CartPole"`` or ``"Pendulum"``."""
    if name not in ENVS:
        raise ValueError(f"env must be one of {sorted(ENVS)}, got {name!r}")
    return ENVS[name](num_envs, seed=seed, device=device)


__all__ = ["BatchedCartPole", "BatchedEnv", "BatchedPendulum", "ENVS", "make_env"]
