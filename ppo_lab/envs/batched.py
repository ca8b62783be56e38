"""The vector-env base that ``BatchedCartPole`` and ``BatchedPendulum`` share: N envs stepped as one batch
of array operations, Gymnasium's vector API, SAME_STEP autoreset and the time limit."""
from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space


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

    def _one_action_per_env(self, actions) -> np.ndarray:
        """``actions`` (tensor or array) as a numpy array of shape ``[N]``: one discrete action per env."""
        if isinstance(actions, torch.Tensor):
            actions = actions.cpu().numpy()
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape [{self.num_envs}] (one per env), got {list(actions.shape)}")
        return actions

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




def _bad_rows(mask) -> list[int]:
    """Indices of the rows of a ``[N, ...]`` bool mask with any True."""
    return np.flatnonzero(np.asarray(mask).reshape(len(mask), -1).any(axis=1)).tolist()


def _make_rng(seed) -> np.random.Generator:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return np.random.default_rng(seed)
