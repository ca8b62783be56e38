"""Steps 1 and 2 of every update, for every trainer here: run the current policy in a vector env,
then compute GAE advantages on what it saw.

``RolloutCollector`` does this for PPO (``train.py``), TRPO (``trpo_train.py``) and chapter 1's
single oversized step. The rollout is time-major ``[T, N]`` while it is collected (GAE runs
backwards in time, per env) and flattened to ``[B]`` transitions at the end.

Two details the usual tutorial code gets wrong are handled here:
  * a time limit (truncation) is not the end of the episode: gamma * V(final_obs) is added to
    the cut step's reward, and the step is still marked done so that GAE does not run on into
    the next episode (``compute_gae``'s docstring says why);
  * with Gymnasium's default NEXT_STEP autoreset, the step after an episode's end is no
    transition at all (the env ignores its action): it is dropped from the rollout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from .agent import ActorCritic
from .envs import BatchedCartPole
from .gae import compute_gae


@dataclass
class Rollout:
    """One batch of experience, flattened to ``B`` transitions (``num_steps * num_envs`` minus the
    NEXT_STEP reset steps)."""

    obs: torch.Tensor  # [B, obs_dim]
    actions: torch.Tensor  # [B] int64
    log_probs: torch.Tensor  # [B] log pi_old(a|s) of the actions taken
    logits: torch.Tensor  # [B, A] pi_old's logits: a KL (penalty or constraint) needs the whole old distribution
    values: torch.Tensor  # [B] V(s) when acting
    advantages: torch.Tensor  # [B] GAE advantages
    returns: torch.Tensor  # [B] advantages + values: the critic's targets
    episode_returns: list  # returns of the episodes that ended during the rollout

    def __len__(self) -> int:
        return len(self.actions)


def env_and_agent(config, env=None, agent=None):
    """A trainer's seeded start: ``torch.manual_seed(config.seed)``, then the env (default
    ``BatchedCartPole(config.num_envs, seed=config.seed)``) and the agent (default a new
    ``ActorCritic`` sized for the env). Returns ``(env, agent)``."""
    torch.manual_seed(config.seed)
    env = BatchedCartPole(config.num_envs, seed=config.seed) if env is None else env
    if env.num_envs != config.num_envs:
        raise ValueError(f"env has {env.num_envs} environments but config.num_envs is {config.num_envs}")
    if agent is None:
        agent = ActorCritic(env.single_observation_space.shape[0], int(env.single_action_space.n))
    return env, agent


class RolloutCollector:
    """Runs an agent in a vector env, one rollout at a time, carrying episodes across rollouts.

    Args:
        env: a vector env with discrete actions: ``BatchedCartPole`` or a Gymnasium vector env,
            with SAME_STEP or Gymnasium's default NEXT_STEP autoreset.
        seed: seed of the first reset.
    """

    def __init__(self, env, seed: int | None = None):
        if not callable(getattr(env, "step", None)) or not hasattr(env, "num_envs"):
            raise ValueError(f"env must be a vector env such as BatchedCartPole, got {type(env).__name__}")
        self.env, self.autoreset_mode = env, autoreset_mode(env)
        self.next_obs = as_obs(env.reset(seed=seed)[0])
        # With NEXT_STEP autoreset the step after an episode's end is not a transition: the env
        # ignores the action and only returns the first observation of the next episode.
        self.next_is_reset_step = torch.zeros(env.num_envs, dtype=torch.bool)
        self.running_return = torch.zeros(env.num_envs)

    @torch.no_grad()  # a rollout is data: nothing here is differentiated
    def collect(self, agent, num_steps: int, gamma: float = 0.99, gae_lambda: float = 0.95,
                gae_fn=compute_gae) -> Rollout:
        """Act ``num_steps`` times in every env with ``agent`` (an ``ActorCritic``); returns the rollout.

        ``gae_fn(rewards, values, dones, last_value, gamma, gae_lambda) -> (advantages, returns)``
        computes the advantages on the ``[T, N]`` rollout (default ``ppo_lab.gae.compute_gae``).
        """
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        T, N = num_steps, self.env.num_envs
        obs = torch.zeros(T, N, *self.next_obs.shape[1:])
        actions = torch.zeros(T, N, dtype=torch.long)
        log_probs, values, rewards, dones = (torch.zeros(T, N) for _ in range(4))
        logits = torch.zeros(T, N, int(self.env.single_action_space.n))
        valid = torch.ones(T, N, dtype=torch.bool)
        episode_returns = []
        for t in range(T):
            obs[t] = self.next_obs
            valid[t] = ~self.next_is_reset_step
            policy = agent.policy(self.next_obs)
            actions[t] = policy.sample()
            log_probs[t] = policy.log_prob(actions[t])
            logits[t] = policy.logits
            values[t] = agent.value(self.next_obs)
            self.next_obs, reward, terminated, truncated, final_obs = env_step(self.env, actions[t], self.autoreset_mode)
            done = terminated | truncated
            self.running_return += reward  # NEXT_STEP reset steps have reward 0: they add nothing
            if done.any():
                episode_returns += self.running_return[done].tolist()
                self.running_return[done] = 0.0

            # A time limit is not a terminal state: the cart could have kept going, and the return
            # after the cut is worth V(final_obs). GAE only knows terminations, so add that value to
            # this step's reward and then cut the episode here (done = 1), which stops GAE from
            # looking past it into the next episode.
            cut_by_time_limit = truncated & ~terminated
            if cut_by_time_limit.any():
                reward = reward + gamma * agent.value(final_obs) * cut_by_time_limit
            rewards[t] = reward
            dones[t] = done.float()
            if self.autoreset_mode is AutoresetMode.NEXT_STEP:
                self.next_is_reset_step = done

        # The rollout's end is bootstrapped from V(s_T) in every env still inside an episode.
        advantages, returns = gae_fn(rewards, values, dones, agent.value(self.next_obs), gamma, gae_lambda)
        keep = valid.flatten()  # [T, N] -> [B], without the NEXT_STEP reset steps
        return Rollout(obs=obs.flatten(0, 1)[keep], actions=actions.flatten()[keep],
                       log_probs=log_probs.flatten()[keep], logits=logits.flatten(0, 1)[keep],
                       values=values.flatten()[keep], advantages=advantages.flatten()[keep],
                       returns=returns.flatten()[keep], episode_returns=episode_returns)


def autoreset_mode(env) -> AutoresetMode:
    """The env's autoreset mode (Gymnasium's default NEXT_STEP when it does not say)."""
    mode = getattr(env, "metadata", {}).get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        raise ValueError(f"env must autoreset (NEXT_STEP or SAME_STEP), got autoreset_mode={mode!r}")
    return mode


def as_obs(obs) -> torch.Tensor:
    return torch.as_tensor(obs, dtype=torch.float32)


def env_step(env, actions: torch.Tensor, mode: AutoresetMode):
    """``env.step`` in torch tensors, for BatchedCartPole and Gymnasium (numpy) vector envs alike.

    Returns:
        next_obs ``[N, obs_dim]``, reward ``[N]`` float32, terminated ``[N]`` bool, truncated
        ``[N]`` bool and final_obs ``[N, obs_dim]``: the observation each env really reached with
        this step. It differs from next_obs only where a SAME_STEP env has just reset; with
        NEXT_STEP autoreset next_obs is still the last observation of an episode that ended.
    """
    if isinstance(env, BatchedCartPole):
        next_obs, reward, terminated, truncated, info = env.step(actions)
        return next_obs, reward, terminated, truncated, info["final_obs"]
    next_obs, reward, terminated, truncated, info = env.step(actions.cpu().numpy())
    next_obs = as_obs(next_obs)
    final_obs = next_obs
    if mode is AutoresetMode.SAME_STEP and "_final_obs" in info:
        ended = torch.as_tensor(info["_final_obs"], dtype=torch.bool)
        final_obs = next_obs.clone()
        final_obs[ended] = as_obs(np.stack(info["final_obs"][info["_final_obs"]]))
    return (
        next_obs,
        torch.as_tensor(reward, dtype=torch.float32),
        torch.as_tensor(terminated, dtype=torch.bool),
        torch.as_tensor(truncated, dtype=torch.bool),
        final_obs,
    )
