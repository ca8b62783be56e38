"""Chapter 8: the two RLHF-specific losses/rewards (preferences and the KL-penalised reward)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import validate


def preference_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss for a reward model: ``-logsigmoid(r_chosen - r_rejected).mean()``.

    Under Bradley-Terry, P(chosen preferred) = sigmoid(r_chosen - r_rejected); this is the
    negative log-likelihood of the observed preferences. ``logsigmoid`` instead of
    ``log(sigmoid(.))`` stays finite for large negative margins.

    Args:
        chosen_rewards: ``[B]`` reward-model scores of the preferred responses.
        rejected_rewards: ``[B]`` scores of the rejected responses.
    """
    validate.tensor("chosen_rewards", chosen_rewards, ndim=(1,))
    validate.tensor("rejected_rewards", rejected_rewards, ndim=(1,))
    validate.same_shape(chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


def kl_penalized_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    kl_coef: float = 0.01,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token rewards for RLHF-PPO: a KL penalty on every token, the score on the last one.

    ``reward[b, t] = -kl_coef * (logprobs[b, t] - ref_logprobs[b, t])`` for generated tokens,
    plus ``scores[b]`` at the last generated token of sequence b (the reward model judges the
    whole response, so its score arrives when the response is complete). Padding gets 0.

    The penalty uses the k1 estimate of KL(pi || pi_ref), the sampled token's log-ratio. It can be
    negative on a single token (the policy now likes that token less than the reference does, and
    the token earns a small bonus); only its expectation over tokens sampled from pi is the KL >= 0.

    Args:
        scores: ``[B]`` reward-model score of each full response.
        logprobs: ``[B, L]`` log-probs of the sampled tokens under the policy.
        ref_logprobs: ``[B, L]`` log-probs of the same tokens under the frozen reference policy.
        kl_coef: penalty weight, >= 0.
        mask: ``[B, L]`` 1 for generated tokens, 0 for padding; all ones when None.

    Returns:
        ``[B, L]`` rewards (constants: no gradient flows into them).
    """
    validate.tensor("scores", scores, ndim=(1,))
    validate.tensor("logprobs", logprobs, ndim=(2,))
    validate.tensor("ref_logprobs", ref_logprobs, ndim=(2,))
    validate.same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs)
    if scores.shape[0] != logprobs.shape[0]:
        raise ValueError(f"scores has {scores.shape[0]} entries but logprobs has batch size {logprobs.shape[0]}")
    kl_coef = validate.non_negative("kl_coef", kl_coef)
    if mask is None:
        mask = torch.ones_like(logprobs)
    else:
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
        validate.same_shape(mask=mask, logprobs=logprobs)
        mask = mask.detach().to(logprobs.dtype)
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError("mask must contain only 0 (padding) and 1 (generated token)")
        if (mask.sum(dim=1) == 0).any():
            empty = (mask.sum(dim=1) == 0).nonzero()[0].item()
            raise ValueError(f"mask row {empty} has no generated token: nowhere to put its score")

    rewards = -kl_coef * (logprobs.detach() - ref_logprobs.detach()) * mask
    positions = torch.arange(mask.shape[1], device=mask.device)
    last_valid = (mask * positions).argmax(dim=1)  # highest index whose mask is 1
    rewards[torch.arange(mask.shape[0]), last_valid] += scores.detach()
    return rewards
