"""Chapter 6's reference answers: PPO's loss on one minibatch, and one whole update on one rollout.

``ppo_update`` is the optimisation phase of every PPO update in ``train_ppo`` (``ppo_lab/algos/ppo.py``
calls it, or the ``update_fn`` it is given): ``num_epochs`` passes over the rollout, each in
``num_minibatches`` shuffled minibatches, one Adam step per minibatch on

    L = L^CLIP + value_coef * L^VF - entropy_coef * H

where L^CLIP is the PPO-Clip loss (chapter 3), L^VF the critic's mean squared error against the
GAE returns (chapter 5) and H the policy's mean entropy. The actor and the critic are trained by
one loss and one optimizer: the coefficients set how much each term pulls on the shared step.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from .. import validate
from .ppo_clip import ppo_objective_with_diagnostics

# What ppo_update reports: the mean over its optimizer steps of each of these (plus num_steps).
STAT_KEYS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")


def ppo_loss(agent, obs: torch.Tensor, actions: torch.Tensor, old_log_probs: torch.Tensor,
             advantages: torch.Tensor, returns: torch.Tensor, clip_epsilon: float = 0.2, value_coef: float = 0.5,
             entropy_coef: float = 0.01, *, old_values: torch.Tensor | None = None,
             policy_objective=None) -> dict:
    """PPO's combined loss on one minibatch, and what to watch while minimising it.

    Args:
        agent: an ``ActorCritic`` (``policy(obs)`` -> a torch distribution, ``value(obs)`` -> ``[B]``).
        obs: ``[B, obs_dim]`` observations.
        actions: ``[B]`` the actions taken (``[B, D]`` for continuous actions).
        old_log_probs: ``[B]`` log pi_old(a|s) from the rollout (constants).
        advantages: ``[B]`` advantage estimates, used as given (normalise them before, if at all).
        returns: ``[B]`` the critic's targets (advantages + values from GAE).
        clip_epsilon: the PPO-Clip range, in (0, 1).
        value_coef: weight of the value loss (>= 0).
        entropy_coef: weight of the entropy bonus (>= 0).
        old_values: ppo_lab's extension, not in the chapter's exercise: ``[B]`` V_old(s) from the
            rollout to clip the value loss as in OpenAI's baselines (``PPOConfig.clip_value_loss``):
            the larger of the squared errors of V(s) and of V_old(s) + clamp(V(s) - V_old(s), +/- eps).
        policy_objective: ppo_lab's extension for ``train_ppo``'s other objectives:
            ``policy_objective(policy, new_log_probs, advantages) -> Tensor[]`` replaces the PPO-Clip
            term (the diagnostics stay PPO-Clip's).

    Returns:
        ``loss`` (0-dim tensor to minimise, differentiable w.r.t. the agent's parameters) and the
        floats ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``, ``clip_fraction``.
    """
    validate.tensor("obs", obs, ndim=(2,))
    batch = obs.shape[0]
    for name, value in (("old_log_probs", old_log_probs), ("advantages", advantages), ("returns", returns)):
        validate.tensor(name, value, ndim=(1,))
        if value.shape[0] != batch:
            raise ValueError(f"{name} has {value.shape[0]} entries but obs has {batch} rows: one per transition")
    if not isinstance(actions, torch.Tensor) or actions.dim() == 0 or actions.shape[0] != batch:
        raise ValueError(f"actions must be a tensor with one row per transition ({batch}), got "
                         f"{list(actions.shape) if isinstance(actions, torch.Tensor) else type(actions).__name__}")
    validate.in_open_interval("clip_epsilon", clip_epsilon, 0.0, 1.0)
    validate.non_negative("value_coef", value_coef)
    validate.non_negative("entropy_coef", entropy_coef)

    policy = agent.policy(obs)
    new_log_probs = policy.log_prob(actions)
    entropy = policy.entropy().mean()
    # ratio = exp(new - old log-prob), the old ones constant; clipped at 1 +/- eps (chapter 3).
    ppo = ppo_objective_with_diagnostics(old_log_probs, new_log_probs, advantages, clip_epsilon)
    policy_loss = ppo["loss"] if policy_objective is None else policy_objective(policy, new_log_probs, advantages)
    # The critic regresses on the returns (its targets), never on the advantages (returns - values).
    values = agent.value(obs)
    value_loss = (values - returns).pow(2).mean()
    if old_values is not None:
        validate.tensor("old_values", old_values, ndim=(1,))
        clipped = old_values + (values - old_values).clamp(-clip_epsilon, clip_epsilon)
        value_loss = torch.max((values - returns).pow(2), (clipped - returns).pow(2)).mean()
    # MINUS the entropy: the bonus rewards a spread-out policy, so it lowers the loss (keeps exploring).
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    return {
        "loss": loss,
        "policy_loss": policy_loss.item(),
        "value_loss": value_loss.item(),
        "entropy": entropy.item(),
        "approx_kl": ppo["approx_kl"],
        "clip_fraction": ppo["clip_fraction"],
    }


def ppo_update(agent, optimizer: torch.optim.Optimizer, rollout, config, *, policy_objective=None) -> dict:
    """One PPO update: ``config.num_epochs`` passes over the rollout in shuffled minibatches.

    Each pass draws a fresh random permutation of the rollout's B transitions and splits it into
    ``config.num_minibatches`` minibatches, so every transition is used exactly once per pass. Per
    minibatch: advantages normalised over the minibatch (when ``config.norm_adv``), ``ppo_loss``
    with the config's coefficients, gradients zeroed, back-propagated, clipped to global norm
    ``config.max_grad_norm`` (None: no clipping), one optimizer step. When ``config.target_kl`` is
    set and a minibatch's approx_kl (computed in its loss, before its step) exceeds it, that step is
    still taken and the update stops there.

    Args:
        agent: the ``ActorCritic`` being trained.
        optimizer: the optimizer over the agent's parameters (its learning rate is the caller's).
        rollout: a flattened ``Rollout`` (``obs [B, obs_dim]``, ``actions [B]``, ``log_probs [B]``,
            ``values [B]``, ``advantages [B]``, ``returns [B]``).
        config: a ``PPOConfig`` (``num_epochs``, ``num_minibatches``, ``norm_adv``, ``clip_epsilon``,
            ``value_coef``, ``entropy_coef``, ``max_grad_norm``, ``target_kl``, ``clip_value_loss``).
        policy_objective: ``train_ppo``'s hook for PPO-KL and vanilla PG,
            ``policy_objective(batch, policy, new_log_probs, advantages) -> Tensor[]`` in place of the
            PPO-Clip term (``batch``: the minibatch's indices into the rollout).

    Returns:
        The means over the optimizer steps taken of ``policy_loss``, ``value_loss``, ``entropy``,
        ``approx_kl``, ``clip_fraction`` (floats), and ``num_steps`` (int, optimizer steps taken).
    """
    _check_update_inputs(agent, optimizer, rollout, config)
    parameters = list(agent.parameters())
    clip_value_loss = getattr(config, "clip_value_loss", False)
    stats = {key: [] for key in STAT_KEYS}
    for _epoch in range(config.num_epochs):
        for batch in torch.randperm(len(rollout.advantages)).tensor_split(config.num_minibatches):
            advantages = rollout.advantages[batch]
            if config.norm_adv:
                # Per minibatch: each step's policy loss has the same scale, whatever the rewards' scale.
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            out = ppo_loss(agent, rollout.obs[batch], rollout.actions[batch], rollout.log_probs[batch], advantages,
                           rollout.returns[batch], config.clip_epsilon, config.value_coef, config.entropy_coef,
                           old_values=rollout.values[batch] if clip_value_loss else None,
                           policy_objective=None if policy_objective is None else
                           functools.partial(policy_objective, batch))

            optimizer.zero_grad()  # gradients accumulate in .grad until zeroed: each step sees its own minibatch only
            out["loss"].backward()
            if config.max_grad_norm is not None:
                # Before the step: rescale the whole gradient to norm <= max_grad_norm (its direction kept).
                torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()

            for key in STAT_KEYS:
                stats[key].append(out[key])
            # The policy has moved further from the one that collected the data than we trust: stop
            # reusing this rollout (the step just taken stays taken).
            if config.target_kl is not None and out["approx_kl"] > config.target_kl:
                return _means(stats)
    return _means(stats)


def fixed_ppo_update(agent, optimizer: torch.optim.Optimizer, rollout, config) -> dict:
    """The chapter's "find the silent bugs" exercise: its buggy update, fixed, is ``ppo_update``
    (same contract; the checks of ``test_fixed_ppo_update*`` name the bugs left)."""
    return ppo_update(agent, optimizer, rollout, config)


def _means(stats: dict) -> dict:
    return {**{key: float(np.mean(values)) for key, values in stats.items()}, "num_steps": len(stats["policy_loss"])}


def _check_update_inputs(agent, optimizer, rollout, config) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    missing = [name for name in ("obs", "actions", "log_probs", "values", "advantages", "returns")
               if not isinstance(getattr(rollout, name, None), torch.Tensor)]
    if missing:
        raise ValueError(f"rollout must be a flattened Rollout; it has no tensor {', '.join(missing)}")
    size = len(rollout.advantages)
    for name in ("obs", "actions", "log_probs", "values", "returns"):
        if len(getattr(rollout, name)) != size:
            raise ValueError(f"rollout.{name} has {len(getattr(rollout, name))} rows but rollout.advantages has "
                             f"{size}: one per transition")
    for name in ("num_epochs", "num_minibatches"):
        validate.positive_int(f"config.{name}", getattr(config, name, None))
    if size < config.num_minibatches:
        raise ValueError(f"config.num_minibatches={config.num_minibatches} is more than the rollout's {size} "
                         "transitions")
    if config.max_grad_norm is not None and not validate.number("config.max_grad_norm", config.max_grad_norm) > 0:
        raise ValueError(f"config.max_grad_norm must be > 0 or None (no clipping), got {config.max_grad_norm!r}")
    own = {id(p) for p in agent.parameters()}
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not own <= stepped:
        raise ValueError("optimizer must hold every parameter of the agent (build it on agent.parameters())")
