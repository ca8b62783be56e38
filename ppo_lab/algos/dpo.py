"""Chapter 9: Direct Preference Optimization on chapter 8's preference pairs.

DPO skips the reward model and the sampling loop of RLHF. The policy is trained, like a reward
model, on the pairs themselves: each response's implicit reward is beta * (log pi - log pi_ref),
summed over its tokens, and the Bradley-Terry loss pushes chosen above rejected (``dpo_loss``).

What it needs: the pairs and a frozen reference (the SFT model). What it never does: generate.
So it also never sees what the policy itself would write now, which is where its known failure
comes from: the loss only asks for the *gap* between chosen and rejected to grow, and it can
grow with both log-probabilities falling (``history``'s ``chosen_logratio`` and
``rejected_logratio``).

Shapes: N pairs, B pairs per minibatch, T tokens per right-padded prompt + response.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..exercises.beyond_ppo import dpo_loss
from ..models.tiny_lm import TinyLM
from .config import TrainerConfig, one_torch_thread
from .rlhf import PreferencePairs

PROMPT_TOKENS = 3  # <bos> + the two prompt words of ``sample_prompts``: the responses start here


@dataclass
class DPOConfig(TrainerConfig):
    """DPO's hyperparameters; ``learning_rate``, ``num_epochs``, ``max_grad_norm`` and ``seed`` mean
    what they mean for the other trainers."""

    beta: float = 0.3           # the KL strength of the objective DPO solves (implicit reward beta * log-ratio)
    num_epochs: int = 2         # passes over the training pairs
    batch_size: int = 64        # pairs per update
    learning_rate: float = 5e-4
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self):
        self.check(positive_ints=("num_epochs", "batch_size"), positive=("beta", "learning_rate", "max_grad_norm"))


def sequence_logprobs(model: TinyLM, sequences: torch.Tensor, last: torch.Tensor,
                      prompt_tokens: int = PROMPT_TOKENS) -> torch.Tensor:
    """``[N]`` log-probability of each response, summed over its tokens.

    ``sequences [N, T]``: right-padded prompt + response; ``last [N]``: index of each sequence's
    last real token. The logits at position t predict token t + 1, so response token t
    (``prompt_tokens <= t <= last``) is read from position t - 1. Differentiable.
    """
    logits, _ = model(sequences[:, :-1])
    token_logprobs = F.log_softmax(logits, dim=-1).gather(2, sequences[:, 1:, None]).squeeze(2)  # [N, T - 1]
    position = torch.arange(1, sequences.shape[1])[None, :]  # which token each column scores
    in_response = (position >= prompt_tokens) & (position <= last[:, None])
    return (token_logprobs * in_response).sum(1)


def pair_logprobs(model: TinyLM, pairs: PreferencePairs, idx: torch.Tensor | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(chosen [B], rejected [B])`` summed response log-probs of the pairs ``idx`` (all if None),
    both in one forward pass."""
    idx = torch.arange(len(pairs)) if idx is None else idx
    sequences = torch.cat([pairs.chosen[idx], pairs.rejected[idx]])
    last = torch.cat([pairs.chosen_last[idx], pairs.rejected_last[idx]])
    both = sequence_logprobs(model, sequences, last)
    return both[: len(idx)], both[len(idx):]


@one_torch_thread
def train_dpo(policy: TinyLM, reference: TinyLM, pairs: PreferencePairs, config: DPOConfig | None = None,
              loss_fn=dpo_loss, progress: bool = False, callback=None) -> list[dict]:
    """Fit ``policy`` (in place) to preference ``pairs`` with DPO, ``reference`` frozen.

    ``loss_fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)``: the chapter's
    exercise (``dpo_loss`` by default). The reference's log-probs are computed once, before
    training: it never changes. ``progress``: a progress bar; ``callback(row)`` after every
    update, return True to stop.

    Returns the history, one dict per update (a minibatch of pairs), measured on that minibatch
    before the step: ``loss``; ``chosen_logp`` / ``rejected_logp`` (mean summed log-prob under the
    policy); ``chosen_logratio`` / ``rejected_logratio`` (mean log pi - log pi_ref: both start at
    0; the implicit rewards are beta times these); ``reward_accuracy`` (share of pairs whose
    implicit reward ranks chosen first); ``epoch``; ``wall_time``.
    """
    cfg = config or DPOConfig()
    if not isinstance(cfg, DPOConfig):
        raise ValueError(f"config must be a DPOConfig, got {type(cfg).__name__}")
    if len(pairs) < 1:
        raise ValueError("pairs is empty: DPO needs at least one preference pair")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()  # the reference's pass over the pairs is part of DPO's cost
    with torch.no_grad():
        ref_chosen, ref_rejected = pair_logprobs(reference, pairs)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    steps_per_epoch = -(-len(pairs) // cfg.batch_size)
    history = []
    bar = tqdm(total=cfg.num_epochs * steps_per_epoch, disable=not progress, desc=f"DPO beta={cfg.beta:g}",
               unit="step")
    policy.train()
    for epoch in range(cfg.num_epochs):
        order = torch.randperm(len(pairs), generator=gen)
        for idx in order.split(cfg.batch_size):
            chosen, rejected = pair_logprobs(policy, pairs, idx)
            loss = loss_fn(chosen, rejected, ref_chosen[idx], ref_rejected[idx], cfg.beta)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            opt.step()

            chosen_ratio, rejected_ratio = (chosen - ref_chosen[idx]).detach(), (rejected - ref_rejected[idx]).detach()
            row = {
                "update": len(history) + 1,
                "epoch": epoch + 1,
                "loss": loss.item(),
                "chosen_logp": chosen.mean().item(),
                "rejected_logp": rejected.mean().item(),
                "chosen_logratio": chosen_ratio.mean().item(),
                "rejected_logratio": rejected_ratio.mean().item(),
                "reward_accuracy": (chosen_ratio > rejected_ratio).float().mean().item(),
                "wall_time": time.perf_counter() - start,
            }
            history.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", chosen=f"{row['chosen_logratio']:+.2f}",
                            rejected=f"{row['rejected_logratio']:+.2f}")
            if callback is not None and callback(row):
                bar.close()
                policy.eval()
                return history
    bar.close()
    policy.eval()
    return history
