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

# Gymnasium's Pendulum-v1 constants.
PENDULUM_GRAVITY = 10.0
PENDULUM_MASS = 1.0
PENDULUM_LENGTH = 1.0
PENDULUM_DT = 0.05  # seconds per step (semi-implicit Euler)
MAX_SPEED = 8  # rad/s; the angular velocity is clipped to [-8, 8] (an int, as in gymnasium)
MAX_TORQUE = 2.0  # actions are clipped to [-2, 2] N m
PENDULUM_MAX_EPISODE_STEPS = 200


class BatchedEnv:
    """What every batched env here shares: the vector-env API, a writable float64 state, the time
    limit of ``gymnasium.make`` and SAME_STEP autoreset. Subclasses supply the physics (``step``),
    ``_observation`` and ``_initial_states``."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
    max_episode_steps: int  # episodes are truncated after this many steps (gymnasium's TimeLimit)

    def __init__(self, num_envs, seed, device, state_dim: int, observation_space: spaces.Box, action_space):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.single_observation_space = observation_space
        self.single_action_space = action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rng = _make_rng(seed)
        # numpy views share memory with the tensors, so writes through env.state reach the physics.
        self._state = torch.zeros(self.num_envs, state_dim, dtype=torch.float64)
        self._elapsed = torch.zeros(self.num_envs, dtype=torch.int64)
        self._needs_reset = True

    @property
    def state(self) -> torch.Tensor:
        return self._state

    @state.setter
    def state(self, value) -> None:
        value = torch.as_tensor(value, dtype=torch.float64)
        if value.shape != self._state.shape:
            raise ValueError(f"state must have shape {list(self._state.shape)}, got {list(value.shape)}")
        if not torch.isfinite(value).all():
            raise ValueError(f"state must be finite, got NaN or inf in envs {_bad_rows(~torch.isfinite(value))}")
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
            obs ``[N, obs_dim]`` float32 and an empty info dict.
        """
        if options:
            raise ValueError(f"options are not supported by {type(self).__name__}, got {options!r}")
        if seed is not None:
            self._rng = _make_rng(seed)
        self._state.numpy()[:] = self._initial_states(self.num_envs)
        self._elapsed.zero_()
        self._needs_reset = False
        return self._observation(self._state.numpy()), {}

    def close(self) -> None:
        """Nothing to release; here for the vector-env API."""

    def _check_reset(self) -> None:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")

    def _time_limit_and_autoreset(self, reward: np.ndarray, terminated: np.ndarray):
        """The end of every ``step``, once the physics has moved ``self.state``: count the step,
        truncate at the time limit, start a new episode wherever one ended. ``reward`` ``[N]`` and
        ``terminated`` ``[N]`` bool are numpy arrays; returns what ``step`` returns."""
        state, elapsed = self._state.numpy(), self._elapsed.numpy()
        elapsed += 1
        # Like gymnasium's TimeLimit wrapper: truncated at the limit even if the episode also terminated then.
        truncated = elapsed >= self.max_episode_steps
        final_obs = self._observation(state)

        done = terminated | truncated
        obs = final_obs
        if done.any():
            state[done] = self._initial_states(int(done.sum()))
            elapsed[done] = 0
            obs = self._observation(state)
        reward = torch.from_numpy(np.asarray(reward, dtype=np.float32)).to(self.device)
        terminated, truncated, done = (torch.from_numpy(flags).to(self.device) for flags in (terminated, truncated, done))
        return obs, reward, terminated, truncated, {"final_obs": final_obs, "_final_obs": done}

    def _observation(self, state: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def _initial_states(self, count: int) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_envs={self.num_envs}, device={str(self.device)!r})"


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


ENVS = {"CartPole": BatchedCartPole, "Pendulum": BatchedPendulum}


def make_env(name: str, num_envs: int, seed: int | None = None, device: str | torch.device = "cpu") -> BatchedEnv:
    """``ENVS[name](num_envs, seed, device)``: ``"CartPole"`` or ``"Pendulum"``."""
    if name not in ENVS:
        raise ValueError(f"env must be one of {sorted(ENVS)}, got {name!r}")
    return ENVS[name](num_envs, seed=seed, device=device)


def _angle_normalize(theta: np.ndarray) -> np.ndarray:
    """theta wrapped to [-pi, pi), as gymnasium's ``angle_normalize``."""
    return ((theta + np.pi) % (2 * np.pi)) - np.pi


def _bad_rows(mask) -> list[int]:
    """Indices of the rows of a ``[N, ...]`` bool mask with any True."""
    return np.flatnonzero(np.asarray(mask).reshape(len(mask), -1).any(axis=1)).tolist()


def _make_rng(seed) -> np.random.Generator:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return np.random.default_rng(seed)
