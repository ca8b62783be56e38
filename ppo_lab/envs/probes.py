"""Probe environments: tiny problems whose right answer is known exactly, one part of PPO each.

When PPO fails on CartPole, anything could be wrong. A probe removes everything but one part:

* ``ConstantRewardProbe``: one step, obs 0, reward +1. V(0) = 1: the critic fits a constant.
* ``ObservationProbe``: one step, obs +1 or -1, reward = obs. V(+1) = +1, V(-1) = -1: the critic
  reads its input.
* ``DiscountingProbe``: two steps, obs 0 then 1, reward +1 at the end only. V(1) = 1 and
  V(0) = gamma: the first step is worth the discounted value of the second.
* ``ActionProbe``: one step, obs 0, two actions, +1 for action 1 and -1 for action 0.
  pi(1 | 0) -> 1: the policy gradient has the right sign.
* ``ObservationActionProbe``: one step, obs +1 or -1, +1 for the action matching the obs (1 for
  +1, 0 for -1), -1 otherwise. pi(1 | +1) -> 1 and pi(0 | -1) -> 1: each state is paired with its
  own advantage.

The first three have a single action, so the policy plays no part: only the critic, the returns
and the value loss are tested. The last two test the policy loss. Each probe lists its right
answers (``values``, ``best_actions``); ``ppo_lab.experiments.probes`` trains an agent on each
with an update of your choice and prints one pass/fail line per probe.

They are vector envs like ``BatchedCartPole`` (the same base, ``BatchedEnv``): N copies stepped
at once, SAME_STEP autoreset, torch tensors in and out, so ``train_ppo`` and ``RolloutCollector``
run on them unchanged. Observations are ``[N, 1]`` float32.
"""
from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from .batched import BatchedEnv


class ProbeEnv(BatchedEnv):
    """What the probes share. State per env: (observation, steps taken in the episode).

    Subclasses set ``num_actions``, ``episode_length``, ``values`` (``{obs: V(obs)}``, the true
    values, some depending on gamma: see ``true_values``), ``best_actions`` (``{obs: action}``),
    and define ``_reward`` and ``_first_obs``.
    """

    num_actions = 1
    episode_length = 1
    max_episode_steps = 100  # never reached: every episode terminates after episode_length steps
    isolates = ""  # the part of PPO this probe tests, in a few words
    values: dict = {}
    best_actions: dict = {}

    def __init__(self, num_envs: int, seed: int | None = None, device: str | torch.device = "cpu"):
        super().__init__(num_envs, seed, device, 2, spaces.Box(-1.0, 1.0, (1,), dtype=np.float32),
                         spaces.Discrete(self.num_actions))

    def true_values(self, gamma: float) -> dict:
        """``{obs: V(obs)}`` for discount ``gamma``."""
        return dict(self.values)

    def step(self, actions):
        """Act in every env; returns obs ``[N, 1]``, reward ``[N]``, terminated, truncated, info
        (as ``BatchedCartPole.step``; every episode terminates after ``episode_length`` steps)."""
        self._check_reset()
        actions = self._check_actions(actions)
        state = self._state.numpy()
        reward = self._reward(state[:, 0].copy(), state[:, 1].copy(), actions).astype(np.float32)
        state[:, 1] += 1
        state[:, 0] = self._next_obs(state[:, 0], state[:, 1])
        terminated = state[:, 1] >= self.episode_length
        return self._time_limit_and_autoreset(reward, terminated)

    def _reward(self, obs: np.ndarray, step: np.ndarray, actions: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _first_obs(self, count: int) -> np.ndarray:
        return np.zeros(count)

    def _next_obs(self, obs: np.ndarray, step: np.ndarray) -> np.ndarray:
        return obs  # one-step probes: the episode ends (and resets) here anyway

    def _initial_states(self, count: int) -> np.ndarray:
        return np.stack([self._first_obs(count), np.zeros(count)], axis=1)

    def _observation(self, state: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(state[:, :1].astype(np.float32)).to(self.device)

    def _check_actions(self, actions) -> np.ndarray:
        actions = self._one_action_per_env(actions)
        if actions.dtype.kind not in "iu" or ((actions < 0) | (actions >= self.num_actions)).any():
            raise ValueError(f"actions must be integers in [0, {self.num_actions}), got {np.unique(actions).tolist()}")
        return actions

    def _random_signs(self, count: int) -> np.ndarray:
        return np.where(self._rng.random(count) < 0.5, -1.0, 1.0)


class ConstantRewardProbe(ProbeEnv):
    """One step, observation 0, one action, reward +1: V(0) must become 1."""

    isolates = "the value of a constant reward (critic and value loss)"
    values = {0.0: 1.0}

    def _reward(self, obs, step, actions):
        return np.ones_like(obs)


class ObservationProbe(ProbeEnv):
    """One step, observation +1 or -1 at random, one action, reward = the observation:
    V(+1) = +1 and V(-1) = -1 (the critic must use its input)."""

    isolates = "reacting to the observation (the critic reads its input)"
    values = {1.0: 1.0, -1.0: -1.0}

    def _first_obs(self, count):
        return self._random_signs(count)

    def _reward(self, obs, step, actions):
        return obs


class DiscountingProbe(ProbeEnv):
    """Two steps: observation 0, then 1; reward 0, then +1 as the episode ends; one action.
    V(1) = 1 and V(0) = gamma: the first step's value comes only through the discounted bootstrap."""

    isolates = "discounting (the return of the first step is gamma * V(next))"
    episode_length = 2
    values = {1.0: 1.0}

    def true_values(self, gamma):
        return {0.0: gamma, 1.0: 1.0}

    def _next_obs(self, obs, step):
        return np.minimum(step, 1.0)

    def _reward(self, obs, step, actions):
        return (step == 1).astype(np.float64)


class ActionProbe(ProbeEnv):
    """One step, observation 0, two actions: +1 for action 1, -1 for action 0.
    pi(1 | 0) must go to 1 (and V(0) to 1)."""

    isolates = "an action-dependent reward (the policy gradient's sign)"
    num_actions = 2
    values = {0.0: 1.0}
    best_actions = {0.0: 1}

    def _reward(self, obs, step, actions):
        return np.where(actions == 1, 1.0, -1.0)


class ObservationActionProbe(ProbeEnv):
    """One step, observation +1 or -1 at random, two actions: +1 for the action that matches the
    observation (action 1 for +1, action 0 for -1), -1 otherwise. The policy must pair each state
    with its own advantage: pi(1 | +1) -> 1 and pi(0 | -1) -> 1."""

    isolates = "reward from observation and action together (each state with its own advantage)"
    num_actions = 2
    values = {1.0: 1.0, -1.0: 1.0}
    best_actions = {1.0: 1, -1.0: 0}

    def _first_obs(self, count):
        return self._random_signs(count)

    def _reward(self, obs, step, actions):
        return np.where((actions == 1) == (obs > 0), 1.0, -1.0)


PROBES = {cls.__name__: cls for cls in (ConstantRewardProbe, ObservationProbe, DiscountingProbe, ActionProbe,
                                         ObservationActionProbe)}

__all__ = ["PROBES", "ProbeEnv", *PROBES]
