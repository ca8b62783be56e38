"""PPO from start to finish: this file and the rollout it calls (``rollout.py``), top to bottom.

One update of PPO:
  1. Rollout (``RolloutCollector``, shared with TRPO): run the current policy for ``num_steps``
     steps in ``num_envs`` environments and store what happened (observations, actions, their
     log-probabilities, values, rewards).
  2. Advantages: Generalized Advantage Estimation over the rollout, bootstrapping wherever an
     episode did not really end (time-limit truncation, end of the rollout).
  3. Optimisation (``ppo_update``, chapter 6): ``num_epochs`` passes over the rollout in
     ``num_minibatches`` shuffled minibatches, minimising the PPO-Clip loss + value loss - entropy bonus.
Then the rollout is thrown away and the next update collects a fresh one with the new policy.

Every reference function of the course appears where it is used: ``compute_gae`` (chapter 5),
``ppo_update`` and ``ppo_loss`` (chapter 6, ``exercises/build_ppo.py``), which use
``ppo_objective_with_diagnostics`` (chapter 3), ``get_lr`` (chapter 4), ``update_running_moments``
(chapter 7) in the observation normaliser and the reward scaler.

Discrete (CartPole) and continuous (Pendulum) actions go through the same code: the policy is a
torch distribution either way (``Categorical`` or a diagonal Gaussian), and all PPO needs from it
is ``log_prob`` of the taken actions and ``entropy``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from tqdm.auto import tqdm

from ..models.actor_critic import ObsNormalizer
from ..envs import ENVS, make_env
from .config import TrainerConfig, one_torch_thread
from ..exercises.gae import compute_gae
from ..exercises.pg import pg_loss
from ..exercises.build_ppo import STAT_KEYS, ppo_update
from ..exercises.ppo_in_practice import adaptive_beta, get_lr, ppo_kl_objective
from .rollout import RolloutCollector, as_obs, autoreset_mode, env_and_agent, env_step
from ..exercises.trpo import categorical_kl


@dataclass
class PPOConfig(TrainerConfig):
    """PPO's hyperparameters. The first block are the usual defaults (tuned for MuJoCo/Atari-sized
    problems); ``PPOConfig.fast_cartpole()`` is a setting that solves CartPole in seconds,
    ``PPOConfig.fast_pendulum()`` one that learns Pendulum in about two."""

    clip_epsilon: float = 0.2  # clip range: past 1 +/- eps in the rewarded direction a sample stops pushing
    learning_rate: float = 3e-4  # Adam step size at the start (annealed to 0 if anneal_lr)
    num_epochs: int = 10  # passes over each rollout
    num_minibatches: int = 32  # minibatches per pass
    gamma: float = 0.99  # discount factor
    gae_lambda: float = 0.95  # GAE bias/variance trade-off
    entropy_coef: float = 0.01  # weight of the entropy bonus (keeps exploring)
    value_coef: float = 0.5  # weight of the value loss
    max_grad_norm: float | None = 0.5  # gradients are rescaled to at most this global norm (None: not clipped)
    num_steps: int = 2048  # steps per env per rollout (rollout = num_steps * num_envs transitions)
    num_envs: int = 8  # parallel environments
    total_timesteps: int = 500_000  # env steps over the whole run
    anneal_lr: bool = True  # linear decay of the learning rate to 0 over the run (get_lr)
    target_kl: float | None = None  # stop an update's epochs early once approx KL exceeds this
    norm_adv: bool = True  # normalise advantages per minibatch (mean 0, std 1)
    clip_value_loss: bool = False  # clip V(s) to V_old(s) +/- clip_epsilon in the value loss (OpenAI baselines')
    adam_eps: float = 1e-5  # Adam's epsilon (PyTorch's default is 1e-8)
    objective: str = "clip"  # policy loss: "clip" (PPO-Clip), "kl" (PPO-KL) or "pg" (vanilla policy gradient)
    kl_beta: float = 1.0  # PPO-KL: initial penalty weight, adapted after every update (adaptive_beta)
    kl_target: float = 0.01  # PPO-KL: the KL per update that adaptive_beta steers towards
    env: str = "CartPole"  # the default env: "CartPole" (BatchedCartPole) or "Pendulum" (BatchedPendulum)
    hidden: int = 64  # width of both hidden layers of the default agent's actor and critic
    norm_obs: bool = False  # normalise observations by their running mean and std (the agent's ObsNormalizer)
    scale_rewards: bool = False  # divide rewards by the running std of the discounted return (RewardScaler)
    stagger_starts: bool = False  # start each env's first episode at a random step of its time limit (RolloutCollector)
    bootstrap_truncated: bool = True  # bootstrap a time-limit cut from V(final_obs); False: treat it as a termination
    seed: int = 1

    def __post_init__(self):
        self.check(positive_ints=("num_epochs", "num_minibatches", "num_steps", "num_envs", "total_timesteps", "hidden"),
                   positive=("learning_rate", "kl_beta", "kl_target", "adam_eps"),
                   non_negative=("entropy_coef", "value_coef"), fractions=("gamma", "gae_lambda"),
                   open_fractions=("clip_epsilon",), flags=("anneal_lr", "norm_adv", "norm_obs", "scale_rewards",
                                                        "stagger_starts", "bootstrap_truncated", "clip_value_loss"))
        if self.max_grad_norm is not None:
            self.check(positive=("max_grad_norm",))
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValueError(f"target_kl must be > 0 or None (off), got {self.target_kl!r}")
        if self.objective not in ("clip", "kl", "pg"):
            raise ValueError(f"objective must be 'clip', 'kl' or 'pg', got {self.objective!r}")
        if self.objective == "pg" and self.num_epochs != 1:
            # A second pass would reuse data from an older policy without any correction for it.
            raise ValueError(f"objective='pg' (vanilla policy gradient) needs num_epochs=1, got {self.num_epochs}")
        if self.env not in ENVS:
            raise ValueError(f"env must be one of {sorted(ENVS)}, got {self.env!r}")
        if self.num_steps * self.num_envs < 2 * self.num_minibatches:
            raise ValueError(
                f"num_minibatches={self.num_minibatches} is too many for a rollout of "
                f"num_steps * num_envs = {self.num_steps * self.num_envs} transitions (need >= 2 per minibatch)"
            )
        if self.total_timesteps < self.num_steps * self.num_envs:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is less than one rollout "
                f"(num_steps * num_envs = {self.num_steps * self.num_envs})"
            )

    @property
    def num_updates(self) -> int:
        """Number of rollout + optimisation rounds in a run."""
        return self.total_timesteps // (self.num_steps * self.num_envs)

    @classmethod
    def fast_cartpole(cls, **overrides) -> "PPOConfig":
        """A setting that solves CartPole-v1 in about a second of CPU time (measured in bench/).

        The cost of PPO on a problem this small is the number of Adam steps, not env steps
        (BatchedCartPole steps 32 carts about as fast as one). So: one minibatch per epoch (each
        Adam step sees the whole 1,024-transition rollout, a low-noise gradient), which tolerates a
        learning rate 27x the default; 20 epochs squeeze each rollout, and the clip keeps those
        epochs from moving the policy too far. No entropy bonus: CartPole needs little exploration.
        gamma and gae_lambda stay at the defaults (0.98 / 0.8 needed ~1.5x more env steps here).
        On 32 seeds kept out of bench/, learning rates 7e-3 to 1e-2 solved 10-25% sooner than
        5e-3; 10 or 15 epochs, and 64 envs x 16 steps, were slower.
        """
        tuned = dict(
            num_envs=32, num_steps=32, num_minibatches=1, num_epochs=20, learning_rate=8e-3,
            entropy_coef=0.0, total_timesteps=51_200,  # 50 updates
        )  # fmt: skip
        return cls(**{**tuned, **overrides})

    @classmethod
    def fast_pendulum(cls, **overrides) -> "PPOConfig":
        """A setting that learns Pendulum-v1 in about 1.5 s of CPU time and ~28k env steps: a
        deterministic 20-episode mean >= -200, where random torques score about -1,240 (bench/).

        As for CartPole, the cost is Adam steps and the rollout's sequential steps, not env steps:
        64 pendulums x 25 steps per rollout, 2 minibatches x 10 epochs at a learning rate of 7e-3,
        hidden layers 32 wide (64 learned no sooner and took 1.5x the time). Measured on 8 seeds
        kept out of bench/, one change at a time (the budget is 120k env steps):
        * scale_rewards is essential: without it 3 of 8 seeds got there, in 77k-91k steps.
          Returns in the hundreds make the critic's squared errors drown the policy's loss.
        * so is stagger_starts: without it 4 of 8. Every episode lasts 200 steps, so envs reset
          together stay in lockstep and each 25-step rollout shows one phase of the episode.
        * norm_obs stays off: with it 1.3x the steps. Pendulum's observations are already of
          order 1, and the moving statistics shift the networks' inputs after every update.
        * gamma 0.95: 0.9 (the RL Zoo's) took 1.5x the time, 0.99 1.9x; 5 epochs, 1 minibatch or
          a learning rate of 3e-3 took 1.3-1.6x the steps; 16 envs x 100 steps 1.9x the time.
        """
        tuned = dict(
            env="Pendulum", num_envs=64, num_steps=25, num_minibatches=2, num_epochs=10, learning_rate=7e-3,
            hidden=32, gamma=0.95, gae_lambda=0.95, entropy_coef=0.0, scale_rewards=True, stagger_starts=True,
            total_timesteps=120_000,  # 75 updates; the learning rate anneals to 0 over them
        )  # fmt: skip
        return cls(**{**tuned, **overrides})

@one_torch_thread
def train_ppo(
    config: PPOConfig | None = None, env=None, *, progress: bool = True, callback=None, agent=None, gae_fn=None,
    update_fn=None,
):
    """Train an actor-critic with PPO.

    Args:
        config: hyperparameters (default ``PPOConfig()``).
        env: a vector env with discrete or continuous (1-D Box) actions: ``BatchedCartPole``,
            ``BatchedPendulum`` (default: ``make_env(config.env, config.num_envs, seed=config.seed)``)
            or a Gymnasium vector env, with SAME_STEP or Gymnasium's default NEXT_STEP autoreset.
        progress: show a progress bar.
        callback: called after every update with that update's history row; return True to stop.
        agent: an ``ActorCritic`` or ``GaussianActorCritic`` to keep training, built with
            ``normalize_obs=config.norm_obs`` (default: a new one for the env, ``config.hidden``
            wide, seeded by config.seed).
        gae_fn: the advantage estimator, called as ``gae_fn(rewards, values, dones, last_value,
            gamma, gae_lambda) -> (advantages, returns)`` (default ``ppo_lab.exercises.gae.compute_gae``;
            pass your own to train with it).
        update_fn: the optimisation phase of every update, called as ``update_fn(agent, optimizer,
            rollout, config) -> dict`` (default ``ppo_lab.exercises.build_ppo.ppo_update``; pass your
            own to train with it). It must return ``ppo_update``'s means. PPO-KL and vanilla PG
            (``config.objective``) call it with the keyword ``policy_objective`` as well, which
            only ppo_lab's ``ppo_update`` takes: with your own update, keep ``objective="clip"``.

    Returns:
        ``(agent, history)``: history has one dict per update (see ``_history_row``).

    Runs on the CPU, on one torch thread (see ``config.one_torch_thread``): a seeded run is reproducible.
    """
    config = PPOConfig() if config is None else config
    if not isinstance(config, PPOConfig):
        raise ValueError(f"config must be a PPOConfig, got {type(config).__name__}")
    env, agent = env_and_agent(config, env, agent)
    if config.objective == "kl" and not isinstance(env.single_action_space, spaces.Discrete):
        raise ValueError("objective='kl' needs discrete actions (its penalty is categorical_kl of the logits)")
    if config.norm_obs != isinstance(getattr(agent, "obs_norm", None), ObsNormalizer):
        raise ValueError(f"config.norm_obs is {config.norm_obs} but the agent was built with "
                         f"normalize_obs={not config.norm_obs}: they must agree")
    collector = RolloutCollector(env, seed=config.seed, scale_rewards=config.scale_rewards,
                                 stagger_starts=config.stagger_starts, bootstrap_truncated=config.bootstrap_truncated)
    gae_fn = compute_gae if gae_fn is None else gae_fn
    if update_fn is not None and config.objective != "clip":
        raise ValueError(f"objective={config.objective!r} trains with ppo_lab's ppo_update only; an update_fn of "
                         f"your own trains PPO-Clip (objective='clip')")
    update_fn = ppo_update if update_fn is None else update_fn
    # fused=True: one kernel for the whole Adam update instead of a few per parameter tensor.
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=config.adam_eps, fused=True)
    history, start, global_step = [], time.perf_counter(), 0
    kl_beta = config.kl_beta

    bar = tqdm(total=config.num_updates, disable=not progress, desc="PPO", unit="update")
    for update in range(config.num_updates):
        lr = get_lr(update, config.num_updates, config.learning_rate) if config.anneal_lr else config.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr

        # ---- 1. and 2. Rollout with the current policy, then GAE advantages (ppo_lab/algos/rollout.py) ----
        rollout = collector.collect(agent, config.num_steps, config.gamma, config.gae_lambda, gae_fn)
        global_step += config.num_steps * config.num_envs

        # ---- 3. Optimisation: num_epochs passes of minibatch steps on this rollout (ppo_update) ----
        if config.objective == "clip":
            stats = update_fn(agent, optimizer, rollout, config)
        else:  # PPO-KL or vanilla PG: the same update with another policy term in the loss
            stats = update_fn(agent, optimizer, rollout, config,
                              policy_objective=_policy_objective(config.objective, rollout, kl_beta))
        _check_stats(stats)
        if config.objective == "kl":
            # PPO-KL adapts beta from how far this whole update moved the policy: the exact KL between
            # the policy that collected the rollout and the updated one, averaged over the rollout's
            # states, measured now (as in the PPO paper). The approx_kl logged during the epochs is
            # not that number: its first steps see a policy that has barely moved (0 at step one),
            # so its mean under-measures the update. Measured before norm_obs changes the inputs.
            with torch.no_grad():
                update_kl = categorical_kl(rollout.logits, agent.policy(rollout.obs).logits).mean().item()
        if config.norm_obs:
            # Only now: the rollout's log-probs and values were computed with the old statistics, and
            # the epochs above had to see the same inputs (ratio = 1 at their first step).
            agent.obs_norm.update(rollout.obs)
        if config.objective == "kl":
            # The paper's rule, from the KL the update produced: halve the penalty if the policy moved
            # less than kl_target / 1.5, double it if it moved more than 1.5 * kl_target.
            kl_beta = adaptive_beta(kl_beta, max(0.0, update_kl), config.kl_target)

        row = _history_row(update, global_step, lr, stats, rollout.values, rollout.returns, rollout.episode_returns,
                           start)
        history.append(row)
        bar.update(1)
        bar.set_postfix(mean_return=f"{row['mean_episode_return']:.1f}")
        if callback is not None and callback(row):
            break
    bar.close()
    return agent, history


def _policy_objective(objective: str, rollout, kl_beta: float):
    """The policy term of PPO-KL or vanilla PG, as ``ppo_update``'s ``policy_objective`` hook:
    ``(batch, policy, new_log_probs, advantages) -> Tensor[]`` on the minibatch ``batch`` of ``rollout``."""
    if objective == "kl":  # a KL penalty instead of the clip; the penalty needs pi_old's whole distribution
        def kl_penalised(batch, policy, new_log_probs, advantages):
            ratio = torch.exp(new_log_probs - rollout.log_probs[batch])
            return ppo_kl_objective(ratio, advantages, rollout.logits[batch], policy.logits, kl_beta)

        return kl_penalised

    def policy_gradient(batch, policy, new_log_probs, advantages):
        # One step per rollout, where the ratio is 1 and PPO's gradient is this one anyway.
        return pg_loss(new_log_probs, advantages)

    return policy_gradient


def _check_stats(stats) -> None:
    """An update_fn must report what ppo_update reports (the history rows are made of it)."""
    if not isinstance(stats, dict) or not set(STAT_KEYS) <= set(stats):
        got = sorted(stats) if isinstance(stats, dict) else type(stats).__name__
        raise ValueError(f"update_fn must return a dict with the keys {', '.join(STAT_KEYS)} and num_steps "
                         f"(the means over its optimizer steps), got {got}")


def _history_row(update, global_step, lr, stats, values, returns, finished_returns, start) -> dict:
    """One update's diagnostics as plain Python numbers (``stats``: the update's means, see ``ppo_update``)."""
    # Explained variance: 1 = the critic predicts the returns perfectly, 0 = no better than their mean.
    returns_var = returns.var().item()
    explained_variance = float("nan") if returns_var == 0 else 1.0 - (returns - values).var().item() / returns_var
    return {
        "update": update + 1,
        "global_step": global_step,
        "learning_rate": lr,
        **{key: float(stats[key]) for key in STAT_KEYS},
        "explained_variance": explained_variance,
        "episode_returns": finished_returns,
        "mean_episode_return": float(np.mean(finished_returns)) if finished_returns else float("nan"),
        "wall_time": time.perf_counter() - start,
    }


@one_torch_thread
def evaluate(agent, env=None, *, episodes: int = 20, deterministic: bool = True, seed: int | None = None) -> list[float]:
    """Returns of ``episodes`` complete episodes of ``agent``, run in parallel.

    Args:
        agent: anything with ``act(obs [N, obs_dim] tensor, deterministic) -> actions [N]`` (or
            ``[N, D]`` for continuous actions, clipped to the env's bounds on their way in).
        env: None (a ``BatchedCartPole`` with one env per episode), a number of CartPole envs, an
            env name (``"CartPole"`` or ``"Pendulum"``: one env per episode), or a vector env
            (ppo_lab's or Gymnasium's); it is reset with ``seed``.
        episodes: how many episodes to return.
        deterministic: take the most likely action (discrete) or the mean action (Gaussian)
            instead of sampling.
        seed: seed for the environment resets.

    Every env plays the same number of episodes (the first ones it finishes), so short episodes
    are not over-represented the way "the first 20 episodes to finish" would be.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if isinstance(env, str):
        env = make_env(env, episodes, seed=seed)
    elif env is None or isinstance(env, int):
        num_envs = episodes if env is None else env
        if isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"env must be a vector env, an env name, a positive number of envs or None, got {env!r}")
        env = make_env("CartPole", num_envs, seed=seed)
    mode = autoreset_mode(env)
    per_env = -(-episodes // env.num_envs)  # ceil: episodes each env must finish
    finished = [[] for _ in range(env.num_envs)]
    running_return = torch.zeros(env.num_envs)
    obs = as_obs(env.reset(seed=seed)[0])
    while min(len(returns) for returns in finished) < per_env:
        actions = agent.act(obs, deterministic=deterministic)
        obs, reward, terminated, truncated, _ = env_step(env, actions, mode)
        running_return += reward  # NEXT_STEP reset steps have reward 0: they add nothing
        done = terminated | truncated
        if done.any():
            for i in done.nonzero().flatten().tolist():
                finished[i].append(running_return[i].item())
            running_return[done] = 0.0
    # Round by round (every env's first episode, then every env's second, ...), cut at `episodes`.
    return [finished[i][k] for k in range(per_env) for i in range(env.num_envs)][:episodes]
