"""TRPO from start to finish: the constrained update that PPO replaces, readable top to bottom.

One update of TRPO:
  1. Rollout with the current policy pi_old (``RolloutCollector``), GAE advantages.
  2. Policy step, solving "maximise the surrogate L(theta) = mean(r(theta) * A) subject to
     mean KL(pi_old || pi_theta) <= max_kl" approximately:
       g  = grad L at theta_old                           (one backward pass)
       x  = F^-1 g by conjugate gradient                  (cg_steps Fisher-vector products, F never formed)
       step = sqrt(2 max_kl / x^T F x) * x                 (the largest step whose quadratic KL model is max_kl)
       backtracking line search: halve the step until the TRUE KL <= max_kl and L improved
  3. Value step: a few epochs of Adam on the critic's squared error (the critic is not constrained).

The chapter 2 exercises appear where they are used: ``probability_ratio`` and ``categorical_kl``
in the surrogate and the constraint, ``conjugate_gradient`` for the natural gradient.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Categorical
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from tqdm.auto import tqdm

from .config import TrainerConfig, one_torch_thread
from .rollout import Rollout, RolloutCollector, env_and_agent
from ..exercises.trpo import categorical_kl, conjugate_gradient, probability_ratio


@dataclass
class TRPOConfig(TrainerConfig):
    """TRPO's hyperparameters. Rollout fields mean what they mean in ``PPOConfig``. The defaults
    (128 carts x 32 steps per update, 200k steps) are sized for CartPole (tests/test_trpo.py checks
    the median return over five seeds); give PPO the same ``num_envs``, ``num_steps`` and ``total_timesteps`` to compare the two update for update."""

    max_kl: float = 0.02  # trust region: mean KL(pi_old || pi_new) allowed per update
    cg_steps: int = 10  # conjugate-gradient iterations (= Fisher-vector products) per update
    cg_damping: float = 0.1  # solve (F + damping I) x = g: keeps CG stable where F is nearly singular
    backtrack_steps: int = 10  # line-search halvings before the update is rejected
    backtrack_coef: float = 0.5  # step shrink factor per halving
    value_learning_rate: float = 2.5e-3  # Adam on the critic
    value_epochs: int = 4  # passes over the rollout for the critic
    value_minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.9
    num_steps: int = 32  # steps per env per rollout
    num_envs: int = 128
    total_timesteps: int = 200_000
    norm_adv: bool = True  # normalise advantages over the whole rollout (mean 0, std 1)
    seed: int = 1

    def __post_init__(self):
        self.check(positive_ints=("cg_steps", "backtrack_steps", "value_epochs", "value_minibatches", "num_steps",
                                  "num_envs", "total_timesteps"),
                   positive=("max_kl", "value_learning_rate"), non_negative=("cg_damping",),
                   fractions=("gamma", "gae_lambda"), open_fractions=("backtrack_coef",), flags=("norm_adv",))
        if self.total_timesteps < self.num_steps * self.num_envs:
            raise ValueError(f"total_timesteps={self.total_timesteps} is less than one rollout "
                             f"(num_steps * num_envs = {self.num_steps * self.num_envs})")

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // (self.num_steps * self.num_envs)



def _flat_grad(output: torch.Tensor, params: list, **kwargs) -> torch.Tensor:
    return torch.cat([grad.reshape(-1) for grad in torch.autograd.grad(output, params, **kwargs)])


def fisher_vector_product(actor: torch.nn.Module, obs: torch.Tensor, old_logits: torch.Tensor, damping: float):
    """A function ``v -> (F + damping * I) v`` for the actor's Fisher matrix F on states ``obs``.

    F is the Hessian of the mean KL(pi_old || pi_theta) at theta = theta_old. With n parameters it
    has n^2 entries, so it is never built: the gradient of (grad KL . v) is F v, one extra
    backward pass through a graph kept from the first one.

    Args:
        actor: maps ``[B, obs_dim]`` to logits ``[B, A]``.
        obs: ``[B, obs_dim]`` states of the rollout.
        old_logits: ``[B, A]`` pi_old's logits on those states.
    """
    params = list(actor.parameters())
    kl = categorical_kl(old_logits, actor(obs)).mean()
    grad_kl = _flat_grad(kl, params, create_graph=True)  # zero at theta_old, but its derivative is F

    def product(v: torch.Tensor) -> torch.Tensor:
        return _flat_grad(grad_kl @ v, params, retain_graph=True) + damping * v

    return product


def trpo_policy_step(actor: torch.nn.Module, rollout: Rollout, config: TRPOConfig) -> dict:
    """One constrained policy update on ``rollout`` (changes ``actor``'s parameters in place).

    Returns:
        diagnostics: ``kl`` (mean KL(pi_old || pi_new) after the step), ``surrogate_improvement``,
        ``expected_improvement`` (g . step, what the linear model promised), ``backtracks``
        (halvings the line search needed), ``step_accepted`` (False: no halving satisfied the
        constraint and improved L, so the policy is unchanged).
    """
    advantages = rollout.advantages
    if config.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    def surrogate() -> torch.Tensor:
        """L = mean(r * A): the policy's improvement estimated with pi_old's data."""
        new_log_probs = Categorical(logits=actor(rollout.obs)).log_prob(rollout.actions)
        return (probability_ratio(new_log_probs, rollout.log_probs) * advantages).mean()

    def mean_kl() -> float:
        return categorical_kl(rollout.logits, actor(rollout.obs)).mean().item()

    params = list(actor.parameters())
    old_params = parameters_to_vector(params).detach()
    surrogate_before = surrogate()
    gradient = _flat_grad(surrogate_before, params)

    rejected = {"kl": 0.0, "surrogate_improvement": 0.0, "expected_improvement": 0.0,
                "backtracks": config.backtrack_steps, "step_accepted": False}
    if not gradient.any():  # e.g. every advantage 0: the data asks for no change
        return rejected

    # Natural gradient direction F^-1 g, then the step length that puts the quadratic model of
    # the KL (1/2 s^T F s) exactly on the boundary max_kl.
    Fvp = fisher_vector_product(actor, rollout.obs, rollout.logits, config.cg_damping)
    direction = conjugate_gradient(Fvp, gradient, n_steps=config.cg_steps)
    curvature = (direction @ Fvp(direction)).item()
    full_step = (2 * config.max_kl / curvature) ** 0.5 * direction
    expected_improvement = (gradient @ full_step).item()

    # The quadratic model is only a model: check the real KL and the real surrogate, and shrink
    # the step until both are acceptable.
    with torch.no_grad():
        for backtracks in range(config.backtrack_steps):
            fraction = config.backtrack_coef ** backtracks
            vector_to_parameters(old_params + fraction * full_step, params)
            kl, improvement = mean_kl(), (surrogate() - surrogate_before).item()
            if kl <= config.max_kl and improvement > 0:
                return {"kl": kl, "surrogate_improvement": improvement, "expected_improvement": expected_improvement,
                        "backtracks": backtracks, "step_accepted": True}
        vector_to_parameters(old_params, params)  # no acceptable step: keep pi_old
    return {**rejected, "expected_improvement": expected_improvement}


def fit_value(critic: torch.nn.Module, optimizer: torch.optim.Optimizer, rollout: Rollout, config: TRPOConfig) -> float:
    """Regress V(s) on the rollout's returns with a few epochs of minibatch Adam; returns the mean loss."""
    losses = []
    for _ in range(config.value_epochs):
        for batch in torch.randperm(len(rollout)).tensor_split(config.value_minibatches):
            loss = (critic(rollout.obs[batch]).squeeze(-1) - rollout.returns[batch]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return float(np.mean(losses))


@one_torch_thread
def train_trpo(config: TRPOConfig | None = None, env=None, *, progress: bool = True, callback=None, agent=None):
    """Train an actor-critic with TRPO.

    Args:
        config: hyperparameters (default ``TRPOConfig()``).
        env: a vector env as ``train_ppo`` takes it (default:
            ``BatchedCartPole(config.num_envs, seed=config.seed)``).
        progress: show a progress bar.
        callback: called after every update with that update's history row; return True to stop.
        agent: an ``ActorCritic`` to keep training (default: a new one, seeded by config.seed).

    Returns:
        ``(agent, history)``, one dict per update with the keys of ``train_ppo``'s rows that apply
        (``update``, ``global_step``, ``episode_returns``, ``mean_episode_return``, ``value_loss``,
        ``entropy``, ``wall_time`` since the start) plus TRPO's: ``kl``, ``surrogate_improvement``,
        ``expected_improvement``, ``backtracks``, ``step_accepted`` and the seconds spent on this
        update's ``rollout_time``, ``policy_time`` (the constrained step) and ``value_time``.

    Runs on the CPU, on one torch thread (see ``config.one_torch_thread``): a seeded run is reproducible.
    """
    config = TRPOConfig() if config is None else config
    if not isinstance(config, TRPOConfig):
        raise ValueError(f"config must be a TRPOConfig, got {type(config).__name__}")
    env, agent = env_and_agent(config, env, agent)
    value_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=config.value_learning_rate, eps=1e-5)
    collector = RolloutCollector(env, seed=config.seed)
    history, start = [], time.perf_counter()

    bar = tqdm(total=config.num_updates, disable=not progress, desc="TRPO", unit="update")
    for update in range(config.num_updates):
        t0 = time.perf_counter()
        rollout = collector.collect(agent, config.num_steps, config.gamma, config.gae_lambda)
        t1 = time.perf_counter()
        step = trpo_policy_step(agent.actor, rollout, config)
        t2 = time.perf_counter()
        value_loss = fit_value(agent.critic, value_optimizer, rollout, config)
        t3 = time.perf_counter()
        with torch.no_grad():
            entropy = agent.policy(rollout.obs).entropy().mean().item()
        returns = rollout.episode_returns
        row = {
            "update": update + 1,
            "global_step": (update + 1) * config.num_steps * config.num_envs,
            "episode_returns": returns,
            "mean_episode_return": float(np.mean(returns)) if returns else float("nan"),
            "value_loss": value_loss,
            "entropy": entropy,
            **step,
            "rollout_time": t1 - t0,
            "policy_time": t2 - t1,
            "value_time": t3 - t2,
            "wall_time": t3 - start,
        }
        history.append(row)
        bar.update(1)
        bar.set_postfix(mean_return=f"{row['mean_episode_return']:.1f}", kl=f"{row['kl']:.4f}")
        if callback is not None and callback(row):
            break
    bar.close()
    return agent, history
