"""Pendulum-v1 for N pendulums at once: Gymnasium's physics in float64, its 200-step limit (every episode
ends by truncation)."""
from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from .batched import BatchedEnv, _bad_rows

# Gymnasium's Pendulum-v1 constants.
PENDULUM_GRAVITY = 10.0
PENDULUM_MASS = 1.0
PENDULUM_LENGTH = 1.0
PENDULUM_DT = 0.05  # seconds per step (semi-implicit Euler)
MAX_SPEED = 8  # rad/s; the angular velocity is clipped to [-8, 8] (an int, as in gymnasium)
MAX_TORQUE = 2.0  # actions are clipped to [-2, 2] N m
PENDULUM_MAX_EPISODE_STEPS = 200


class BatchedPendulum(BatchedEnv):
    """N Pendulum-v1 environments stepped together; obs/actions are torch tensors.

    Swing a pendulum up and hold it upright with a bounded torque. There is no failure state:
    every episode runs the 200 steps of the time limit and ends by truncation, so every episode
    end must be bootstrapped. As with ``BatchedCartPole``, the physics runs in float64 numpy,
    operation for operation as in gymnasium's pendulum.py, and matches Gymnasium exactly.

    Args:
        num_envs: number of environments N (a positive int).
        seed: seeds the start states; ``reset(seed=...)`` re-seeds it. ``BatchedPendulum(1,
            seed=s).reset()`` starts where ``gymnasium.make("Pendulum-v1").reset(seed=s)`` does.
        device: torch device of the returned observations, rewards and flags.

    Attributes:
        state: ``[N, 2]`` float64 CPU tensor (theta, theta_dot): theta in radians, 0 = upright, not
            wrapped (as in gymnasium it keeps counting turns); theta_dot in rad/s. Writable like
            ``BatchedCartPole.state``.
        elapsed_steps: ``[N]`` int64 CPU tensor, steps taken in each current episode (writable).
    """

    max_episode_steps = PENDULUM_MAX_EPISODE_STEPS

    def __init__(self, num_envs: int, seed: int | None = None, device: str | torch.device = "cpu"):
        high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)
        torque = spaces.Box(-MAX_TORQUE, MAX_TORQUE, shape=(1,), dtype=np.float32)
        super().__init__(num_envs, seed, device, 2, spaces.Box(-high, high, dtype=np.float32), torque)

    def step(self, actions):
        """Apply one torque to every pendulum for one step of 0.05 s.

        Args:
            actions: ``[N, 1]`` floating-point torques in N m (a torch tensor, numpy array or
                list); values outside [-2, 2] are clipped to it, as gymnasium does. float64
                actions are used as float64, any other float type as float32 (the action space's).

        Returns:
            obs ``[N, 3]`` float32 (cos theta, sin theta, theta_dot; a reset observation where the
            episode just ended), reward ``[N]`` float32: -(theta^2 + 0.1 theta_dot^2 + 0.001
            torque^2) of the state before the step with theta wrapped to [-pi, pi), between
            -16.27 and 0; terminated ``[N]`` bool (always False), truncated ``[N]`` bool (the
            200-step time limit was reached; every episode ends this way), and info with
            ``final_obs`` and ``_final_obs`` as in ``BatchedCartPole.step``.
        """
        self._check_reset()
        torque = np.clip(self._check_actions(actions), -MAX_TORQUE, MAX_TORQUE)
        state = self._state.numpy()
        theta, theta_dot = state.T
        # Same operations in the same order (and the same float32 torque) as gymnasium's pendulum.py.
        costs = _angle_normalize(theta) ** 2 + 0.1 * theta_dot**2 + 0.001 * (torque**2)
        new_theta_dot = theta_dot + (
            3 * PENDULUM_GRAVITY / (2 * PENDULUM_LENGTH) * np.sin(theta)
            + 3.0 / (PENDULUM_MASS * PENDULUM_LENGTH**2) * torque
        ) * PENDULUM_DT
        new_theta_dot = np.clip(new_theta_dot, -MAX_SPEED, MAX_SPEED)
        # The angle moves with the NEW velocity (semi-implicit Euler).
        state[:, 0], state[:, 1] = theta + new_theta_dot * PENDULUM_DT, new_theta_dot
        return self._time_limit_and_autoreset(-costs, np.zeros(self.num_envs, dtype=bool))

    def _observation(self, state: np.ndarray) -> torch.Tensor:
        theta, theta_dot = state.T
        obs = np.stack([np.cos(theta), np.sin(theta), theta_dot], axis=1)
        return torch.from_numpy(obs.astype(np.float32)).to(self.device)

    def _initial_states(self, count: int) -> np.ndarray:
        """``[count, 2]`` float64 states: theta uniform in [-pi, pi), theta_dot in [-1, 1), as gymnasium's reset."""
        return self._rng.uniform([-np.pi, -1.0], [np.pi, 1.0], size=(count, 2))

    def _check_actions(self, actions) -> np.ndarray:
        """``[N]`` torques (float32 or float64 numpy) from ``[N, 1]`` actions; NaN is refused."""
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu()
            if actions.is_floating_point() and actions.dtype != torch.float64:
                actions = actions.float()
            actions = actions.numpy()
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs, 1):
            raise ValueError(
                f"actions must have shape [{self.num_envs}, 1] (one torque per env), got {list(actions.shape)}"
            )
        if actions.dtype.kind != "f":
            raise ValueError(f"actions must be floating-point torques, got dtype {actions.dtype}")
        if actions.dtype != np.float64:
            actions = actions.astype(np.float32, copy=False)
        if np.isnan(actions).any():
            raise ValueError(f"actions contain NaN (envs {_bad_rows(np.isnan(actions))}); a torque must be a number")
        return actions[:, 0]


def _angle_normalize(theta: np.ndarray) -> np.ndarray:
    """theta wrapped to [-pi, pi), as gymnasium's ``angle_normalize``."""
    return ((theta + np.pi) % (2 * np.pi)) - np.pi


