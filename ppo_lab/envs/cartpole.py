"""CartPole-v1 for N carts at once: Gymnasium's physics in float64, its 500-step limit."""
from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces

from .batched import BatchedEnv

# Gymnasium's CartPole-v1 constants.
GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
TOTAL_MASS = MASS_POLE + MASS_CART
HALF_POLE_LENGTH = 0.5
POLE_MASS_LENGTH = MASS_POLE * HALF_POLE_LENGTH
FORCE_MAG = 10.0
TAU = 0.02  # seconds per step (explicit Euler)
THETA_THRESHOLD = 12 * 2 * math.pi / 360  # 12 degrees, in radians
X_THRESHOLD = 2.4
MAX_EPISODE_STEPS = 500
RESET_LOW, RESET_HIGH = -0.05, 0.05


class BatchedCartPole(BatchedEnv):
    """N CartPole-v1 environments stepped together; obs/actions are torch tensors.

    The physics runs in float64 numpy arithmetic on the CPU, operation for operation as in
    gymnasium's cartpole.py, so results match Gymnasium bit for bit (torch's own sin/cos differ
    in the last bit for ~0.2% of angles, and the cart amplifies that into visible differences);
    numpy is also the faster of the two on arrays this small.

    Args:
        num_envs: number of environments N (a positive int).
        seed: seeds the reset noise; ``reset(seed=...)`` re-seeds it.
        device: torch device of the returned observations, rewards and flags.

    Attributes:
        state: ``[N, 4]`` float64 CPU tensor (x, x_dot, theta, theta_dot). Writable: assign a new
            ``[N, 4]`` value or edit it in place, and the next ``step`` starts from there.
        elapsed_steps: ``[N]`` int64 CPU tensor, steps taken in each current episode (writable).
    """

    max_episode_steps = MAX_EPISODE_STEPS

    def __init__(self, num_envs: int, seed: int | None = None, device: str | torch.device = "cpu"):
        high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
        super().__init__(num_envs, seed, device, 4, spaces.Box(-high, high, dtype=np.float32), spaces.Discrete(2))

    def step(self, actions):
        """Push every cart left (action 0) or right (action 1) for one step of 0.02 s.

        Args:
            actions: ``[N]`` integers in {0, 1}: a torch tensor, numpy array or list.

        Returns:
            obs ``[N, 4]`` float32 (a reset observation where the episode just ended),
            reward ``[N]`` float32 (1 for every step, including the last),
            terminated ``[N]`` bool (pole fell or cart left the track),
            truncated ``[N]`` bool (the 500-step time limit was reached),
            info with ``final_obs`` ``[N, 4]`` float32 (the true next observation of every env:
            the last observation of the episode where one ended) and ``_final_obs`` ``[N]`` bool
            (True where an episode ended at this step).
        """
        self._check_reset()
        push_right = self._check_actions(actions)
        state = self._state.numpy()
        x, x_dot, theta, theta_dot = state.T
        # Same operations in the same order as gymnasium's cartpole.py: bit-identical results.
        force = np.where(push_right, FORCE_MAG, -FORCE_MAG)
        cos_theta, sin_theta = np.cos(theta), np.sin(theta)
        temp = (force + POLE_MASS_LENGTH * np.square(theta_dot) * sin_theta) / TOTAL_MASS
        theta_acc = (GRAVITY * sin_theta - cos_theta * temp) / (
            HALF_POLE_LENGTH * (4.0 / 3.0 - MASS_POLE * np.square(cos_theta) / TOTAL_MASS)
        )
        x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos_theta / TOTAL_MASS
        # Each new component from the old ones, as in gymnasium's explicit Euler step.
        state[:, 0], state[:, 1], state[:, 2], state[:, 3] = (
            x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot, theta_dot + TAU * theta_acc
        )
        # |x| > 2.4 is exactly x < -2.4 or x > 2.4 (abs is exact), in fewer operations.
        terminated = (np.abs(state[:, 0]) > X_THRESHOLD) | (np.abs(state[:, 2]) > THETA_THRESHOLD)
        return self._time_limit_and_autoreset(np.ones(self.num_envs, dtype=np.float32), terminated)

    def _observation(self, state: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(state.astype(np.float32)).to(self.device)

    def _initial_states(self, count: int) -> np.ndarray:
        """``[count, 4]`` float64 states, each component uniform in [-0.05, 0.05), as gymnasium's reset."""
        return self._rng.uniform(RESET_LOW, RESET_HIGH, size=(count, 4))

    def _check_actions(self, actions) -> np.ndarray:
        """``[N]`` bool array, True = push right, from actions in {0, 1}."""
        actions = self._one_action_per_env(actions)
        if actions.dtype.kind not in "iu":
            raise ValueError(f"actions must be integers 0 or 1, got dtype {actions.dtype}")
        push_right = actions == 1
        if not (push_right | (actions == 0)).all():
            raise ValueError(f"actions must be 0 (push left) or 1 (push right), got values {np.unique(actions).tolist()}")
        return push_right


