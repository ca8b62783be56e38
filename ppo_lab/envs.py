"""CartPole-v1 for many environments at once, with torch tensors in and out.

``BatchedCartPole(N)`` steps N independent carts with one batch of array operations. It follows
the Gymnasium vector-env API and reproduces ``gymnasium.make("CartPole-v1")`` exactly (same
physics in float64, same 500-step time limit), so anything learned here transfers to Gymnasium.
The point is speed: PPO needs a lot of experience, and stepping a thousand carts in one array
operation costs little more than stepping one.

Autoreset follows Gymnasium's ``AutoresetMode.SAME_STEP``: when an episode ends, ``step`` already
returns the first observation of the next episode, and the observation the episode ended in is in
``info["final_obs"]``. Keep it: a truncated episode is bootstrapped from V(final_obs).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

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


class BatchedCartPole:
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

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int, seed: int | None = None, device: str | torch.device = "cpu"):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
        self.single_observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(2)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rng = _make_rng(seed)
        # numpy views share memory with the tensors, so writes through env.state reach the physics.
        self._state = torch.zeros(self.num_envs, 4, dtype=torch.float64)
        self._elapsed = torch.zeros(self.num_envs, dtype=torch.int64)
        self._needs_reset = True

    @property
    def state(self) -> torch.Tensor:
        return self._state

    @state.setter
    def state(self, value) -> None:
        value = torch.as_tensor(value, dtype=torch.float64)
        if value.shape != (self.num_envs, 4):
            raise ValueError(f"state must have shape [{self.num_envs}, 4], got {list(value.shape)}")
        self._state.copy_(value)
        self._needs_reset = False

    @property
    def elapsed_steps(self) -> torch.Tensor:
        return self._elapsed

    @elapsed_steps.setter
    def elapsed_steps(self, value) -> None:
        value = torch.as_tensor(value)
        if value.shape not in ((), (self.num_envs,)) or value.is_floating_point() or (value < 0).any():
            raise ValueError(f"elapsed_steps must be non-negative integers of shape [{self.num_envs}], got {value!r}")
        self._elapsed.copy_(value)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a new episode in every environment.

        Returns:
            obs ``[N, 4]`` float32 and an empty info dict.
        """
        if options:
            raise ValueError(f"options are not supported by BatchedCartPole, got {options!r}")
        if seed is not None:
            self._rng = _make_rng(seed)
        self._state.numpy()[:] = self._initial_states(self.num_envs)
        self._elapsed.zero_()
        self._needs_reset = False
        return self._observation(self._state.numpy()), {}

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
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
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
        elapsed = self._elapsed.numpy()
        elapsed += 1
        # Like gymnasium's TimeLimit wrapper: truncated at the limit even if the pole also fell then.
        truncated = elapsed >= MAX_EPISODE_STEPS
        final_obs = self._observation(state)

        done = terminated | truncated
        obs = final_obs
        if done.any():
            state[done] = self._initial_states(int(done.sum()))
            elapsed[done] = 0
            obs = self._observation(state)
        reward = torch.ones(self.num_envs, dtype=torch.float32, device=self.device)
        terminated, truncated, done = (torch.from_numpy(flags).to(self.device) for flags in (terminated, truncated, done))
        return obs, reward, terminated, truncated, {"final_obs": final_obs, "_final_obs": done}

    def close(self) -> None:
        """Nothing to release; here for the vector-env API."""

    def _observation(self, state: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(state.astype(np.float32)).to(self.device)

    def _initial_states(self, count: int) -> np.ndarray:
        """``[count, 4]`` float64 states, each component uniform in [-0.05, 0.05), as gymnasium's reset."""
        return self._rng.uniform(RESET_LOW, RESET_HIGH, size=(count, 4))

    def _check_actions(self, actions) -> np.ndarray:
        """``[N]`` bool array, True = push right, from actions in {0, 1}."""
        if isinstance(actions, torch.Tensor):
            actions = actions.cpu().numpy()
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape [{self.num_envs}] (one per env), got {list(actions.shape)}")
        if actions.dtype.kind not in "iu":
            raise ValueError(f"actions must be integers 0 or 1, got dtype {actions.dtype}")
        push_right = actions == 1
        if not (push_right | (actions == 0)).all():
            raise ValueError(f"actions must be 0 (push left) or 1 (push right), got values {np.unique(actions).tolist()}")
        return push_right

    def __repr__(self) -> str:
        return f"BatchedCartPole(num_envs={self.num_envs}, device={str(self.device)!r})"


def _make_rng(seed) -> np.random.Generator:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return np.random.default_rng(seed)
