"""Chapter 9: what came after PPO for language models — DPO's loss and the critic-free advantages
of GRPO and RLOO.

* ``dpo_loss``: Direct Preference Optimization. The KL-regularised RLHF objective has the
  closed-form optimum pi*(y|x) ∝ pi_ref(y|x) exp(r(x, y) / beta), so a policy defines an
  *implicit* reward beta * log(pi / pi_ref) (up to a term of x alone, which cancels in a pair);
  DPO puts that reward into the Bradley-Terry loss of chapter 8 and fits the policy to the
  preference pairs directly: no reward model, no sampling.
* ``group_advantages``: GRPO. Sample G responses to the same prompt; each one's advantage is its
  reward relative to its own group (minus the group mean, divided by the group std). The group
  is the baseline a critic would otherwise have to learn.
* ``leave_one_out_advantages``: RLOO. The baseline of response i is the mean reward of the
  *other* G - 1 responses, so it does not depend on response i itself and the policy-gradient
  estimate stays unbiased.

Shapes: B preference pairs; P prompts with G sampled responses each.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import validate


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """DPO: ``-logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))).mean()``.

    Each input is ``[B]``: one response's log-probability summed over its tokens, under the
    policy being trained (differentiable) or under the frozen reference (constants: no gradient
    flows into them). ``beta * (log pi - log pi_ref)`` is a response's implicit reward; the loss
    is chapter 8's Bradley-Terry loss on those rewards. Without the reference terms the policy
    is pushed to raise chosen over rejected with nothing tying it to where it started.

    Args:
        policy_chosen_logps, policy_rejected_logps: ``[B]`` summed log-probs under the policy.
        ref_chosen_logps, ref_rejected_logps: ``[B]`` summed log-probs under the reference.
        beta: > 0; the strength of the implicit KL regularisation (the beta of RLHF's objective).

    Returns:
        0-dim loss to minimise.
    """
    named = dict(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    for name, value in named.items():
        validate.tensor(name, value, ndim=(1,))
    validate.same_shape(**named)
    beta = validate.number("beta", beta)
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen_logratio = policy_chosen_logps - ref_chosen_logps.detach()
    rejected_logratio = policy_rejected_logps - ref_rejected_logps.detach()
    # logsigmoid, not log(sigmoid(.)): stays finite for a large negative margin.
    return -F.logsigmoid(beta * (chosen_logratio - rejected_logratio)).mean()


def _rewards(rewards, min_group: int) -> torch.Tensor:
    validate.tensor("rewards", rewards, ndim=(2,))
    if rewards.shape[1] < min_group:
        raise ValueError(f"rewards must be [P, G] with G >= {min_group} responses per prompt, got shape "
                         f"{list(rewards.shape)}")
    return rewards.detach()


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    """GRPO's advantages: each reward relative to its own prompt's group.

    ``(rewards - mean over G) / (std over G + eps)`` with torch's default (unbiased) std; with
    ``scale=False`` only the mean is subtracted (Dr. GRPO: dividing by a group's std weights
    prompts whose responses barely differ — too easy or too hard — far more than others).

    Args:
        rewards: ``[P, G]``: G sampled responses for each of P prompts (G >= 2 when ``scale``:
            one response has no spread).
        eps: >= 0, keeps a group of identical rewards (std 0) at advantage 0 instead of 0 / 0.
        scale: divide by the group's std.

    Returns:
        ``[P, G]`` advantages (constants: no gradient flows through them).
    """
    rewards = _rewards(rewards, 2 if scale else 1)
    eps = validate.non_negative("eps", eps)
    if not isinstance(scale, bool):
        raise ValueError(f"scale must be True or False, got {scale!r}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)


def leave_one_out_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO's advantages: each reward minus the mean of the other G - 1 rewards of its prompt.

    ``A_i = r_i - (sum_j r_j - r_i) / (G - 1)``, which equals ``G / (G - 1)`` times the reward
    minus the full group mean: the same direction as the unscaled group advantage, but with a
    baseline that does not contain the response it is the baseline for.

    Args:
        rewards: ``[P, G]`` with G >= 2.

    Returns:
        ``[P, G]`` advantages (constants).
    """
    rewards = _rewards(rewards, 2)
    g = rewards.shape[1]
    others_mean = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)
    return rewards - others_mean
