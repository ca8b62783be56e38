"""Chapter 8: the RLHF pipeline around the tiny language model.

1. ``human_scores``: the hidden "human" rule (``ppo_lab.envs.human_rater``) judges reviews. The notebook
   uses it only the way one uses people: to label preference pairs and, at the end, to check
   what the policy really learned.
2. ``make_preference_pairs``: two SFT samples per prompt; the one the rule likes better is
   "chosen".
3. ``RewardModel`` / ``train_reward_model``: a scalar head on a copy of the SFT transformer,
   fitted to the pairs with the Bradley-Terry loss; ``pair_accuracy`` on held-out pairs.
4. ``rlhf_ppo``: PPO on the language model against the reward model, with the per-token KL
   penalty towards the frozen SFT reference, GAE over tokens and the PPO-Clip loss
   (``ppo_clip_epochs``, which chapter 9's critic-free trainers share).

Read ``rlhf_ppo`` top to bottom: every step of one RLHF iteration happens there, in order.
Shapes: B sequences, P prompt tokens, L response tokens, T = P + L.
"""
from __future__ import annotations

import copy
import textwrap
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..envs import human_rater
from .config import TrainerConfig, one_torch_thread
from ..exercises.gae import compute_gae
from ..exercises.ppo_clip import ppo_objective_with_diagnostics
from ..exercises.rlhf import kl_penalized_rewards, preference_loss
from ..models.tiny_lm import Samples, TinyLM, Vocab, generate, response_logprobs, sample_prompts

PROMPT_SEED_PAIRS, PROMPT_SEED_RLHF, PROMPT_SEED_EVAL = 101, 202, 303
MAX_NEW_TOKENS = 24


# ---------------------------------------------------------------------------------------------
# 1. The "humans"
# ---------------------------------------------------------------------------------------------


def human_scores(sequences: torch.Tensor, vocab: Vocab) -> torch.Tensor:
    """``[B]`` hidden-rule score of each ``[B, T]`` prompt + response (higher = preferred by the
    'humans'); a sequence without ``<eos>`` counts as unfinished."""
    out = []
    for seq in sequences:
        finished = bool((seq == vocab.eos).any())
        out.append(human_rater.score_words(vocab.decode(seq).split(), finished))
    return torch.tensor(out)


# ---------------------------------------------------------------------------------------------
# 2. Preference pairs
# ---------------------------------------------------------------------------------------------


@dataclass
class PreferencePairs:
    """``chosen``/``rejected``: ``[N, T]`` right-padded prompt + response token ids;
    ``chosen_last``/``rejected_last``: ``[N]`` index of each sequence's last real token;
    ``margin``: ``[N]`` hidden-score difference (> 0), kept for analysis only."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_last: torch.Tensor
    rejected_last: torch.Tensor
    margin: torch.Tensor

    def __len__(self) -> int:
        return len(self.margin)

    def split(self, n_first: int) -> tuple["PreferencePairs", "PreferencePairs"]:
        first = PreferencePairs(*(x[:n_first] for x in self._fields()))
        rest = PreferencePairs(*(x[n_first:] for x in self._fields()))
        return first, rest

    def _fields(self):
        return self.chosen, self.rejected, self.chosen_last, self.rejected_last, self.margin


def last_token_index(samples: Samples) -> torch.Tensor:
    """``[B]`` position in ``samples.sequences`` of the last generated (non-padding) token."""
    return samples.prompts.shape[1] + samples.mask.sum(1).long() - 1


@torch.no_grad()
def make_preference_pairs(policy: TinyLM, vocab: Vocab, n_pairs: int, seed: int = PROMPT_SEED_PAIRS,
                          ) -> PreferencePairs:
    """Sample two responses per prompt from ``policy`` and let the hidden rule pick one.

    Pairs the rule scores equally (e.g. two equally positive, fluent reviews) carry no
    preference and are dropped, so slightly fewer than ``n_pairs`` may come back.
    """
    gen = torch.Generator().manual_seed(seed)
    prompts = sample_prompts(n_pairs, vocab, seed=seed)
    a = generate(policy, prompts, MAX_NEW_TOKENS, vocab, generator=gen)
    b = generate(policy, prompts, MAX_NEW_TOKENS, vocab, generator=gen)
    width = max(a.responses.shape[1], b.responses.shape[1])
    seq_a, seq_b = (torch.nn.functional.pad(s.sequences, (0, prompts.shape[1] + width - s.sequences.shape[1]),
                                            value=vocab.pad) for s in (a, b))
    score_a, score_b = human_scores(a.sequences, vocab), human_scores(b.sequences, vocab)
    keep = (score_a - score_b).abs() > 1e-6
    a_wins = (score_a > score_b)[:, None]
    last_a, last_b = last_token_index(a), last_token_index(b)
    return PreferencePairs(
        chosen=torch.where(a_wins, seq_a, seq_b)[keep],
        rejected=torch.where(a_wins, seq_b, seq_a)[keep],
        chosen_last=torch.where(a_wins[:, 0], last_a, last_b)[keep],
        rejected_last=torch.where(a_wins[:, 0], last_b, last_a)[keep],
        margin=(score_a - score_b).abs()[keep],
    )


# ---------------------------------------------------------------------------------------------
# 3. The reward model
# ---------------------------------------------------------------------------------------------


class RewardModel(nn.Module):
    """A copy of the SFT transformer with a scalar head read at the last real token.

    Starting from the SFT weights (as InstructGPT did) means the model already "reads" the
    reviews; only the judgement has to be learnt. The causal transformer's state at the last
    token has seen the whole review, and right-padding after it cannot leak in.

    ``forward(sequences [B, T], last [B]) -> [B]`` scores, shifted and scaled by
    ``normalize`` so the SFT policy's samples score mean 0, std 1 (then one kl_coef suits
    any reward model).
    """

    def __init__(self, sft_model: TinyLM):
        super().__init__()
        self.backbone = copy.deepcopy(sft_model)
        d_model = sft_model.config["d_model"]
        self.head = nn.Linear(d_model, 1)
        self.register_buffer("offset", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, sequences: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        h, _ = self.backbone.hidden(sequences)  # [B, T, D]
        raw = self.head(h[torch.arange(len(last)), last]).squeeze(-1)
        return (raw - self.offset) / self.scale

    @torch.no_grad()
    def normalize(self, samples: Samples) -> None:
        """Set offset/scale so these samples (from the SFT policy) score mean 0, std 1."""
        self.offset.zero_()
        self.scale.fill_(1.0)
        raw = self(samples.sequences, last_token_index(samples))
        self.offset.copy_(raw.mean())
        self.scale.copy_(raw.std().clamp_min(1e-6))

    def score(self, samples: Samples) -> torch.Tensor:
        """``[B]`` scores of sampled responses, without gradient."""
        with torch.no_grad():
            return self(samples.sequences, last_token_index(samples))


@torch.no_grad()
def pair_accuracy(reward_model: RewardModel, pairs: PreferencePairs) -> float:
    """Fraction of pairs where the reward model scores the chosen response higher."""
    chosen = reward_model(pairs.chosen, pairs.chosen_last)
    rejected = reward_model(pairs.rejected, pairs.rejected_last)
    return (chosen > rejected).float().mean().item()


@one_torch_thread
def train_reward_model(sft_model: TinyLM, train_pairs: PreferencePairs, held_out: PreferencePairs,
                       loss_fn=preference_loss, epochs: int = 4, batch_size: int = 64, lr: float = 2e-3,
                       seed: int = 0, progress: bool = False) -> tuple[RewardModel, dict]:
    """Fit a ``RewardModel`` to preference pairs with ``loss_fn(chosen, rejected)`` (Bradley-Terry).

    Returns the model (eval mode) and a log with per-epoch ``loss`` (mean over the epoch's
    minibatches), ``train_acc`` and ``held_out_acc`` (pair accuracies after the epoch).
    ``progress``: show a progress bar.
    """
    torch.manual_seed(seed)
    model = RewardModel(sft_model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    log = {"loss": [], "train_acc": [], "held_out_acc": []}
    bar = tqdm(total=epochs, disable=not progress, desc="reward model", unit="epoch")
    for _ in range(epochs):
        order = torch.randperm(len(train_pairs), generator=gen)
        losses = []
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            chosen = model(train_pairs.chosen[idx], train_pairs.chosen_last[idx])
            rejected = model(train_pairs.rejected[idx], train_pairs.rejected_last[idx])
            loss = loss_fn(chosen, rejected)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        log["loss"].append(sum(losses) / len(losses))
        log["train_acc"].append(pair_accuracy(model, train_pairs))
        log["held_out_acc"].append(pair_accuracy(model, held_out))
        model.train()
        bar.update(1)
        bar.set_postfix(loss=f"{log['loss'][-1]:.3f}", held_out_acc=f"{log['held_out_acc'][-1]:.3f}")
    bar.close()
    model.eval()
    return model, log


# ---------------------------------------------------------------------------------------------
# 4. RLHF with PPO
# ---------------------------------------------------------------------------------------------


@dataclass
class RLHFConfig(TrainerConfig):
    """RLHF's hyperparameters; the names shared with ``PPOConfig`` mean the same there."""

    kl_coef: float = 0.1        # weight of the per-token penalty log pi(t) - log pi_ref(t) (k1: < 0 on some tokens)
    num_updates: int = 40       # rollout + update cycles
    batch_size: int = 64        # responses per rollout
    num_epochs: int = 3         # passes over each rollout (PPO's sample reuse)
    num_minibatches: int = 2
    learning_rate: float = 1e-3
    clip_epsilon: float = 0.2
    gamma: float = 1.0          # no discount: the response is short and the score comes at its end
    gae_lambda: float = 0.95
    value_coef: float = 0.1     # the value head shares the trunk: keep its pull on the LM small
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self):
        self.check(positive_ints=("num_updates", "batch_size", "num_epochs", "num_minibatches"),
                   positive=("learning_rate", "max_grad_norm"), non_negative=("kl_coef", "value_coef"),
                   fractions=("gamma", "gae_lambda"), open_fractions=("clip_epsilon",))
        if self.batch_size < self.num_minibatches:
            raise ValueError(f"num_minibatches={self.num_minibatches} is more than batch_size={self.batch_size} responses")


def sequence_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` sampled estimate of KL(pi || pi_ref) for each response: the sum over its tokens
    of the k1 estimate log pi - log pi_ref (one response's sum can be negative; its mean over
    responses sampled from pi is the true KL)."""
    return ((logprobs - ref_logprobs) * mask).sum(1)


def ppo_clip_epochs(policy: TinyLM, optimizer: torch.optim.Optimizer, samples: Samples, old_logprobs: torch.Tensor,
                    advantages: torch.Tensor, cfg: TrainerConfig, generator: torch.Generator,
                    returns: torch.Tensor | None = None) -> tuple[list[float], float]:
    """PPO-Clip on one rollout: ``cfg.num_epochs`` passes, each over ``cfg.num_minibatches``
    minibatches of whole responses, chapter 3's clipped loss on the real tokens only.

    ``old_logprobs``, ``advantages`` (and ``returns``): ``[B, L]``, read at ``samples.mask == 1``.
    With ``returns`` the value head is fitted too (loss + ``cfg.value_coef`` * squared error);
    without (GRPO, RLOO: no critic) only the policy loss is minimised. Uses ``cfg``'s
    ``num_epochs``, ``num_minibatches``, ``clip_epsilon``, ``max_grad_norm`` (and ``value_coef``).

    Returns every minibatch's clip fraction and the last minibatch's approx_kl (pi_old -> pi_new).
    """
    policy.train()
    valid = samples.mask.bool()
    clip_fractions, approx_kl = [], 0.0
    for _ in range(cfg.num_epochs):
        order = torch.randperm(len(valid), generator=generator)
        for idx in order.chunk(cfg.num_minibatches):
            new_logprobs, new_values = response_logprobs(policy, samples.prompts[idx], samples.responses[idx])
            m = valid[idx]
            diag = ppo_objective_with_diagnostics(old_logprobs[idx][m], new_logprobs[m],
                                                  advantages[idx][m], cfg.clip_epsilon)
            loss = diag["loss"]
            if returns is not None:
                value_loss = ((new_values[m] - returns[idx][m]) ** 2).mean()
                loss = loss + cfg.value_coef * value_loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
            clip_fractions.append(diag["clip_fraction"])
            approx_kl = diag["approx_kl"]
    return clip_fractions, approx_kl


@one_torch_thread
def rlhf_ppo(policy: TinyLM, reference: TinyLM, reward_model: RewardModel, vocab: Vocab,
             config: RLHFConfig | None = None, reward_fn=kl_penalized_rewards, progress: bool = False,
             callback=None) -> list[dict]:
    """Optimise ``policy`` (in place) against ``reward_model`` with PPO and a KL penalty.

    ``reference`` is the frozen SFT model; ``reward_fn(scores, logprobs, ref_logprobs, kl_coef,
    mask)`` turns sequence scores into per-token rewards (the chapter's exercise; the
    reference ``kl_penalized_rewards`` by default). ``progress``: show a progress bar with the
    latest reward-model score, hidden score and KL. ``callback``: called after every update with
    that update's history row; return True to stop.

    Returns the history, one dict per update, measured on that update's rollout (before its
    update): ``rm_score`` and ``human_score`` (mean reward-model and hidden-rule scores), ``kl``
    (mean sum_t log pi - log pi_ref per response: k1, nats), ``clip_fraction``, ``approx_kl``
    (pi_old -> pi_new, last minibatch), ``length`` (mean response tokens), ``wall_time``.
    Runs on one torch thread (``config.one_torch_thread``).
    """
    cfg = config or RLHFConfig()
    if not isinstance(cfg, RLHFConfig):
        raise ValueError(f"config must be an RLHFConfig, got {type(cfg).__name__}")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    prompt_pool = sample_prompts(cfg.num_updates * cfg.batch_size, vocab, seed=PROMPT_SEED_RLHF + cfg.seed)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    history = []
    bar = tqdm(total=cfg.num_updates, disable=not progress, desc=f"RLHF kl_coef={cfg.kl_coef:g}", unit="iter")
    start = time.perf_counter()
    for it in range(cfg.num_updates):
        # --- rollout: B responses from the current policy --------------------------------
        policy.eval()
        prompts = prompt_pool[it * cfg.batch_size : (it + 1) * cfg.batch_size]
        samples = generate(policy, prompts, MAX_NEW_TOKENS, vocab, generator=gen)
        mask = samples.mask
        with torch.no_grad():
            old_logprobs, values = response_logprobs(policy, samples.prompts, samples.responses)
            ref_logprobs, _ = response_logprobs(reference, samples.prompts, samples.responses)
            scores = reward_model.score(samples)

        # --- rewards: KL penalty on every token, the reward model's score on the last ----
        rewards = reward_fn(scores, old_logprobs, ref_logprobs, cfg.kl_coef, mask)

        # --- GAE over tokens (time-major [L, B]) ------------------------------------------
        # A response ends at its last real token: done there and at every padding position
        # after it, so nothing is bootstrapped from padding. Padding values are zeroed so
        # their (ignored) advantages stay 0.
        last = mask.sum(1).long() - 1
        dones = 1.0 - mask
        dones[torch.arange(len(last)), last] = 1.0
        advantages, returns = compute_gae(rewards.T, (values * mask).T, dones.T, last_value=0.0,
                                          gamma=cfg.gamma, gae_lambda=cfg.gae_lambda)
        advantages, returns = advantages.T, returns.T
        valid = mask.bool()
        # Whitened over real tokens only: padding would drag the mean towards 0.
        adv_valid = advantages[valid]
        advantages = (advantages - adv_valid.mean()) / (adv_valid.std() + 1e-8)

        # --- PPO-Clip updates: several epochs over minibatches of whole responses ------------
        clip_fractions, approx_kl = ppo_clip_epochs(policy, opt, samples, old_logprobs, advantages, cfg, gen,
                                                    returns=returns)

        # --- log what this rollout looked like -------------------------------------------
        row = rollout_row(it, scores, samples, old_logprobs, ref_logprobs, vocab, clip_fractions, approx_kl, start)
        history.append(row)
        bar.update(1)
        bar.set_postfix(rm=f"{row['rm_score']:.2f}", human=f"{row['human_score']:.2f}", kl=f"{row['kl']:.1f}")
        if callback is not None and callback(row):
            break
    bar.close()
    policy.eval()
    return history


def rollout_row(update: int, scores: torch.Tensor, samples: Samples, old_logprobs: torch.Tensor,
                ref_logprobs: torch.Tensor, vocab: Vocab, clip_fractions: list[float], approx_kl: float,
                start: float) -> dict:
    """The history row of update ``update`` (0-based) of an RLHF trainer, measured on its rollout:
    ``scores`` ``[B]`` of the reward model, the rollout's ``[B, L]`` log-probs under the policy
    that sampled it and under the reference, the clip fractions of its minibatch steps, the last
    step's approx KL, and the trainer's ``start`` time (``time.perf_counter``)."""
    return {
        "update": update + 1,
        "rm_score": scores.mean().item(),
        "human_score": human_scores(samples.sequences, vocab).mean().item(),
        "kl": sequence_kl(old_logprobs, ref_logprobs, samples.mask).mean().item(),
        "clip_fraction": sum(clip_fractions) / len(clip_fractions),
        "approx_kl": approx_kl,
        "length": samples.mask.sum(1).mean().item(),
        "wall_time": time.perf_counter() - start,
    }


@torch.no_grad()
def evaluate_policy(policy: TinyLM, reference: TinyLM, reward_model: RewardModel | None, vocab: Vocab,
                    n: int = 256, seed: int = PROMPT_SEED_EVAL) -> dict:
    """Mean reward-model score, hidden-rule score and KL to the reference on fresh prompts,
    plus the samples themselves (``samples``) for printing. The same ``seed`` gives the same
    prompts for every policy. ``rm_score`` is None without a reward model."""
    prompts = sample_prompts(n, vocab, seed=seed)
    samples = generate(policy, prompts, MAX_NEW_TOKENS, vocab, generator=torch.Generator().manual_seed(seed))
    logprobs, _ = response_logprobs(policy, samples.prompts, samples.responses)
    ref_logprobs, _ = response_logprobs(reference, samples.prompts, samples.responses)
    return dict(
        rm_score=None if reward_model is None else reward_model.score(samples).mean().item(),
        human_score=human_scores(samples.sequences, vocab).mean().item(),
        kl=sequence_kl(logprobs, ref_logprobs, samples.mask).mean().item(),
        samples=samples,
    )


# ---------------------------------------------------------------------------------------------
# Looking at text
# ---------------------------------------------------------------------------------------------


def score_texts(reward_model: RewardModel, vocab: Vocab, texts: list[str]) -> dict:
    """Reward-model and hidden-rule scores of hand-written, finished reviews (words from the
    vocabulary, separated by spaces; ``<bos>``/``<eos>`` are added here)."""
    ids = [[vocab.bos] + vocab.encode(t.split()) + [vocab.eos] for t in texts]
    width = max(len(i) for i in ids)
    sequences = torch.tensor([i + [vocab.pad] * (width - len(i)) for i in ids])
    last = torch.tensor([len(i) - 1 for i in ids])
    with torch.no_grad():
        rm = reward_model(sequences, last)
    return dict(rm_score=rm.tolist(), human_score=human_scores(sequences, vocab).tolist())


def side_by_side(columns: dict[str, list[str]], width: int = 44, rows: int | None = None) -> str:
    """Texts in columns (one column per policy, one row per prompt), wrapped to ``width``."""
    names = list(columns)
    n = min(len(texts) for texts in columns.values()) if rows is None else rows
    lines = ["   ".join(name.ljust(width) for name in names).rstrip(), "   ".join("-" * width for _ in names)]
    for i in range(n):
        wrapped = [textwrap.wrap(columns[name][i], width) or [""] for name in names]
        for j in range(max(len(w) for w in wrapped)):
            lines.append("   ".join((w[j] if j < len(w) else "").ljust(width) for w in wrapped).rstrip())
        lines.append("")
    return "\n".join(lines)
