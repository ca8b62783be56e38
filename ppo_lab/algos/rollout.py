"""Steps 1 and 2 of every update, for every trainer here: run the current policy in a vector env,
then compute GAE advantages on what it saw.

``RolloutCollector`` does this for PPO (``algos/ppo.py``), TRPO (``algos/trpo.py``) and chapter 1's
single oversized step. The rollout is time-major ``[T, N]`` while it is collected (GAE runs
backwards in time, per env) and flattened to ``[B]`` transitions at the end.

Details the usual tutorial code gets wrong are handled here:
  * a time limit (truncation) is not the end of the episode: gamma * V(final_obs) is added to
    the cut step's reward, and the step is still marked done so that GAE does not run on into
    the next episode (``compute_gae``'s docstring says why);
  * with Gymnasium's default NEXT_STEP autoreset, the step after an episode's end is no
    transition at all (the env ignores its action): it is dropped from the rollout;
  * a continuous action is clipped to the env's bounds only on its way into the env: the
    rollout keeps the sampled action, whose log-probability the policy gave (``env_step``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from ..models.actor_critic import ActorCritic, GaussianActorCritic
from ..exercises.continuous import update_running_moments
from ..envs import BatchedEnv, make_env
from ..exercises.gae import compute_gae


@dataclass
class Rollout:
    """One batch of experience, flattened to ``B`` transitions (``num_steps * num_envs`` minus the
    NEXT_STEP reset steps)."""

    obs: torch.Tensor  # [B, obs_dim] as the env gave them (an agent's ObsNormalizer normalises inside)
    actions: torch.Tensor  # [B] int64 (discrete) or [B, D] float32 (continuous: the sample, unclipped)
    log_probs: torch.Tensor  # [B] log pi_old(a|s) of the actions taken
    logits: torch.Tensor | None  # [B, A] pi_old's logits: a KL (penalty or constraint) needs the whole old
    # distribution. None for continuous actions.
    values: torch.Tensor  # [B] V(s) when acting
    advantages: torch.Tensor  # [B] GAE advantages
    returns: torch.Tensor  # [B] advantages + values: the critic's targets
    episode_returns: list  # returns of the episodes that ended during the rollout

    def __len__(self) -> int:
        return len(self.actions)


def env_and_agent(config, env=None, agent=None):
    """A trainer's seeded start: ``torch.manual_seed(config.seed)``, then the env (default
    ``make_env(config.env, config.num_envs, seed=config.seed)``) and the agent (default
    ``agent_for(env, config.hidden, config.norm_obs)``). A config without those fields (TRPO's)
    gets CartPole and the defaults. Returns ``(env, agent)``."""
    torch.manual_seed(config.seed)
    env = make_env(getattr(config, "env", "CartPole"), config.num_envs, seed=config.seed) if env is None else env
    if env.num_envs != config.num_envs:
        raise ValueError(f"env has {env.num_envs} environments but config.num_envs is {config.num_envs}")
    if agent is None:
        agent = agent_for(env, getattr(config, "hidden", 64), getattr(config, "norm_obs", False))
    return env, agent


def agent_for(env, hidden: int = 64, normalize_obs: bool = False) -> ActorCritic:
    """A new actor-critic sized for a vector env: ``ActorCritic`` for a Discrete action space,
    ``GaussianActorCritic`` for a 1-D Box; ``hidden`` and ``normalize_obs`` as they take them."""
    obs_dim, space = env.single_observation_space.shape[0], env.single_action_space
    if isinstance(space, spaces.Discrete):
        return ActorCritic(obs_dim, int(space.n), hidden, normalize_obs)
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return GaussianActorCritic(obs_dim, space.shape[0], hidden, normalize_obs)
    raise ValueError(f"no actor-critic here for action space {space} (need Discrete or a 1-D Box)")


class RewardScaler:
    """Divides rewards by the running standard deviation of the discounted return.

    Pendulum pays between -16.3 and 0 per step, so its returns are in the tens to hundreds and the
    critic's squared errors dwarf the policy loss. Dividing every reward by one positive number
    changes no policy's ranking, only the scale the critic must learn. The number is the std of
    the discounted return r_t + gamma r_{t-1} + ... accumulated per env, the scale of what V(s)
    predicts (as SB3's VecNormalize does it). Rewards are not centred: shifting them would change
    what ending an episode is worth.
    """

    def __init__(self, num_envs: int):
        self.discounted_return = torch.zeros(num_envs)  # per env, carried from one rollout into the next
        self.mean, self.var, self.count = torch.zeros(()), torch.ones(()), 0.0

    def __call__(self, rewards: torch.Tensor, dones: torch.Tensor, valid: torch.Tensor, gamma: float) -> torch.Tensor:
        """A rollout's rewards ``[T, N]``, scaled. Its discounted returns join the statistics first
        (one update per rollout: the scale is the same for all of its steps).

        Args:
            rewards: ``[T, N]`` the env's rewards.
            dones: ``[T, N]`` 1.0 where an episode ended (terminated or truncated): its return restarts.
            valid: ``[T, N]`` bool, False at NEXT_STEP reset steps (no transition: left out of the statistics).
            gamma: discount factor.
        """
        returns = torch.zeros_like(rewards)
        for t in range(len(rewards)):
            self.discounted_return = self.discounted_return * gamma + rewards[t]
            returns[t] = self.discounted_return
            self.discounted_return = self.discounted_return * (1.0 - dones[t])
        self.mean, self.var, self.count = update_running_moments(self.mean, self.var, self.count, returns[valid])
        return rewards / torch.sqrt(self.var + 1e-8)


class RolloutCollector:
    """Runs an agent in a vector env, one rollout at a time, carrying episodes across rollouts.

    Args:
        env: a vector env with discrete or continuous (1-D Box) actions: ``BatchedCartPole``,
            ``BatchedPendulum`` or a Gymnasium vector env, with SAME_STEP or Gymnasium's default
            NEXT_STEP autoreset.
        seed: seed of the first reset.
        scale_rewards: divide rewards by the running std of the discounted return (``RewardScaler``)
            before GAE; episode returns stay in the env's units.
        stagger_starts: after the first reset, put every env at a random step of its time limit
            (ppo_lab's envs only; draws from torch's random generator).
        bootstrap_truncated: add gamma * V(final_obs) to the reward of a step cut by the time limit
            (right). False treats the cut as a termination, as code that ORs the two flags does:
            chapter 7 measures what that costs.
    """

    def __init__(self, env, seed: int | None = None, scale_rewards: bool = False, stagger_starts: bool = False,
                 bootstrap_truncated: bool = True):
        if not callable(getattr(env, "step", None)) or not hasattr(env, "num_envs"):
            raise ValueError(f"env must be a vector env such as BatchedCartPole, got {type(env).__name__}")
        if not isinstance(bootstrap_truncated, bool):
            raise ValueError(f"bootstrap_truncated must be True or False, got {bootstrap_truncated!r}")
        self.bootstrap_truncated = bootstrap_truncated
        self.env, self.autoreset_mode = env, autoreset_mode(env)
        self.discrete = isinstance(env.single_action_space, spaces.Discrete)
        self.reward_scaler = RewardScaler(env.num_envs) if scale_rewards else None
        self.next_obs = as_obs(env.reset(seed=seed)[0])
        # With NEXT_STEP autoreset the step after an episode's end is not a transition: the env
        # ignores the action and only returns the first observation of the next episode.
        self.next_is_reset_step = torch.zeros(env.num_envs, dtype=torch.bool)
        self.running_return = torch.zeros(env.num_envs)
        # When every episode lasts the whole time limit (Pendulum: 200 steps), envs reset together
        # stay in lockstep, and a rollout shorter than an episode sees one phase of it only: all
        # envs swinging up, or all balancing, update after update. Starting each env's first
        # episode part-way through its time limit spreads them out for good. Those first episodes
        # are cut short (a truncation, bootstrapped as usual) and are left out of episode_returns.
        self.cut_short = torch.zeros(env.num_envs, dtype=torch.bool)
        if stagger_starts:
            if not isinstance(env, BatchedEnv):
                raise ValueError(f"stagger_starts needs one of ppo_lab's envs (their elapsed_steps are writable), "
                                 f"got {type(env).__name__}")
            env.elapsed_steps = torch.randint(env.max_episode_steps, (env.num_envs,))
            self.cut_short = env.elapsed_steps > 0

    @torch.no_grad()  # a rollout is data: nothing here is differentiated
    def collect(self, agent, num_steps: int, gamma: float = 0.99, gae_lambda: float = 0.95,
                gae_fn=compute_gae) -> Rollout:
        """Act ``num_steps`` times in every env with ``agent`` (an ``ActorCritic`` or
        ``GaussianActorCritic``); returns the rollout.

        ``gae_fn(rewards, values, dones, last_value, gamma, gae_lambda) -> (advantages, returns)``
        computes the advantages on the ``[T, N]`` rollout (default ``ppo_lab.exercises.gae.compute_gae``).
        """
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        T, N = num_steps, self.env.num_envs
        obs = torch.zeros(T, N, *self.next_obs.shape[1:])
        space = self.env.single_action_space
        actions = torch.zeros(T, N, dtype=torch.long) if self.discrete else torch.zeros(T, N, *space.shape)
        log_probs, values, rewards, bootstraps, dones = (torch.zeros(T, N) for _ in range(5))
        logits = torch.zeros(T, N, int(space.n)) if self.discrete else None
        valid = torch.ones(T, N, dtype=torch.bool)
        episode_returns = []
        for t in range(T):
            obs[t] = self.next_obs
            valid[t] = ~self.next_is_reset_step
            policy = agent.policy(self.next_obs)
            actions[t] = policy.sample()
            log_probs[t] = policy.log_prob(actions[t])
            if self.discrete:
                logits[t] = policy.logits
            values[t] = agent.value(self.next_obs)
            self.next_obs, reward, terminated, truncated, final_obs = env_step(self.env, actions[t], self.autoreset_mode)
            done = terminated | truncated
            self.running_return += reward  # NEXT_STEP reset steps have reward 0: they add nothing
            if done.any():
                episode_returns += self.running_return[done & ~self.cut_short].tolist()
                self.running_return[done] = 0.0
                self.cut_short &= ~done
            rewards[t] = reward

            # A time limit is not a terminal state: the cart could have kept going, and the return
            # after the cut is worth V(final_obs). GAE only knows terminations, so add that value to
            # this step's reward (below) and then cut the episode here (done = 1), which stops GAE
            # from looking past it into the next episode.
            cut_by_time_limit = truncated & ~terminated
            if self.bootstrap_truncated and cut_by_time_limit.any():
                bootstraps[t] = gamma * agent.value(final_obs) * cut_by_time_limit
            dones[t] = done.float()
            if self.autoreset_mode is AutoresetMode.NEXT_STEP:
                self.next_is_reset_step = done

        if self.reward_scaler is not None:
            rewards = self.reward_scaler(rewards, dones, valid, gamma)
        rewards = rewards + bootstraps  # the bootstrap values are already in the critic's (scaled) units
        # The rollout's end is bootstrapped from V(s_T) in every env still inside an episode.
        advantages, returns = gae_fn(rewards, values, dones, agent.value(self.next_obs), gamma, gae_lambda)
        keep = valid.flatten()  # [T, N] -> [B], without the NEXT_STEP reset steps
        return Rollout(obs=obs.flatten(0, 1)[keep], actions=actions.flatten(0, 1)[keep],
                       log_probs=log_probs.flatten()[keep],
                       logits=logits.flatten(0, 1)[keep] if self.discrete else None,
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
    """``env.step`` in torch tensors, for ppo_lab's batched envs and Gymnasium (numpy) vector envs alike.

    Continuous actions ``[N, D]`` are clipped to the env's bounds here, on their way into the env:
    a Gaussian policy samples outside them, but its log-probability is that of the sample, so the
    rollout keeps the sample and only the env sees the clipped torque.

    Returns:
        next_obs ``[N, obs_dim]``, reward ``[N]`` float32, terminated ``[N]`` bool, truncated
        ``[N]`` bool and final_obs ``[N, obs_dim]``: the observation each env really reached with
        this step. It differs from next_obs only where a SAME_STEP env has just reset; with
        NEXT_STEP autoreset next_obs is still the last observation of an episode that ended.
    """
    space = env.single_action_space
    if isinstance(space, spaces.Box):
        actions = actions.clamp(torch.as_tensor(space.low), torch.as_tensor(space.high))
    if isinstance(env, BatchedEnv):
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
