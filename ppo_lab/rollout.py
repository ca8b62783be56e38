"""Collect a batch of experience with the current policy, with advantages, ready for one update.

Used where an update is studied on its own (chapter 1's oversized step) and by the TRPO trainer.
The rollout is time-major ``[T, N]`` while it is collected (GAE runs backwards in time per env)
and flattened to ``[B = T * N]`` at the end.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from gymnasium.vector import AutoresetMode

from .gae import compute_gae


@dataclass
class Rollout:
    """One batch of experience, flattened to ``B = num_steps * num_envs`` transitions."""

    obs: torch.Tensor  # [B, obs_dim]
    actions: torch.Tensor  # [B] int64
    log_probs: torch.Tensor  # [B] log pi_old(a|s) of the actions taken
    logits: torch.Tensor  # [B, A] pi_old's logits: a KL constraint needs the whole old distribution
    values: torch.Tensor  # [B] V(s) when acting
    advantages: torch.Tensor  # [B] GAE advantages
    returns: torch.Tensor  # [B] advantages + values: the critic's targets
    episode_returns: list  # returns of the episodes that ended during the rollout

    def __len__(self) -> int:
        return len(self.actions)


class RolloutCollector:
    """Runs an agent in a vector env, one rollout at a time, carrying episodes across rollouts.

    Args:
        env: a ``BatchedCartPole`` (or any vector env with its interface: tensors in and out,
            SAME_STEP autoreset, ``info["final_obs"]`` ``[N, obs_dim]`` for every env).
        seed: seed of the first reset.
    """

    def __init__(self, env, seed: int | None = None):
        if not callable(getattr(env, "step", None)) or not hasattr(env, "num_envs"):
            raise ValueError(f"env must be a vector env such as BatchedCartPole, got {type(env).__name__}")
        if getattr(env, "metadata", {}).get("autoreset_mode") is not AutoresetMode.SAME_STEP:
            raise ValueError("env must autoreset in the same step (AutoresetMode.SAME_STEP), as BatchedCartPole does")
        self.env = env
        self.next_obs = torch.as_tensor(env.reset(seed=seed)[0], dtype=torch.float32)
        self.running_return = torch.zeros(env.num_envs)

    @torch.no_grad()  # a rollout is data: nothing here is differentiated
    def collect(self, agent, num_steps: int, gamma: float = 0.99, gae_lambda: float = 0.95) -> Rollout:
        """Act ``num_steps`` times in every env with ``agent`` (an ``ActorCritic``); returns the rollout."""
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        steps = []
        episode_returns = []
        for _ in range(num_steps):
            obs = self.next_obs
            logits = agent.actor(obs)
            policy = torch.distributions.Categorical(logits=logits)
            action = policy.sample()
            self.next_obs, reward, terminated, truncated, info = self.env.step(action)
            done = terminated | truncated
            self.running_return += reward
            episode_returns += self.running_return[done].tolist()
            self.running_return[done] = 0.0
            # A time limit is not a terminal state: what the cart would have earned after the cut
            # is worth V(final_obs), so add it to the last reward. Then the episode is cut for GAE
            # (done = 1) so it does not look past the reset into the next episode.
            cut_by_time_limit = (truncated & ~terminated).float()
            reward = reward + gamma * agent.value(info["final_obs"]) * cut_by_time_limit
            steps.append((obs, action, policy.log_prob(action), logits, agent.value(obs), reward, done.float()))

        obs, actions, log_probs, logits, values, rewards, dones = (torch.stack(column) for column in zip(*steps))
        advantages, returns = compute_gae(rewards, values, dones, agent.value(self.next_obs), gamma, gae_lambda)
        return Rollout(obs=obs.flatten(0, 1), actions=actions.flatten(), log_probs=log_probs.flatten(),
                       logits=logits.flatten(0, 1), values=values.flatten(), advantages=advantages.flatten(),
                       returns=returns.flatten(), episode_returns=episode_returns)
