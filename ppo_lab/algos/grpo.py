"""Chapter 9: critic-free policy optimisation on the tiny language model — GRPO, Dr. GRPO and RLOO.

Chapter 8's PPO learns a value head V(s_t) and runs GAE over the tokens to decide how good each
token was. For a language model with one score per response there is a cheaper baseline: sample
G responses to the same prompt and compare each with its siblings.

Everything else is chapter 8's: the same reward model, the same frozen reference, the KL penalty
in the reward (``kl_penalized_rewards``, summed over a response's tokens), the same PPO-Clip step
on the real tokens (``rlhf.ppo_clip_epochs``), the same logs. Only the advantage changes:

* ``"grpo"``: ``group_advantages`` — reward minus the group mean, over the group std;
* ``"dr_grpo"``: ``group_advantages(..., scale=False)`` — the mean only (Dr. GRPO);
* ``"rloo"``: ``leave_one_out_advantages`` — reward minus the mean of the other G - 1.

Each token of a response gets its response's advantage (the score only says how good the whole
response was). No value head is trained: its parameters get no gradient.

Read ``train_grpo`` top to bottom, next to ``rlhf.rlhf_ppo``. Shapes: P prompts, G responses per
prompt, B = P * G responses, L response tokens.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import torch
from tqdm.auto import tqdm

from ..exercises.beyond_ppo import group_advantages, leave_one_out_advantages
from ..exercises.rlhf import kl_penalized_rewards
from ..models.tiny_lm import Samples, TinyLM, Vocab, generate, response_logprobs, sample_prompts
from .config import TrainerConfig, one_torch_thread
from .rlhf import MAX_NEW_TOKENS, PROMPT_SEED_RLHF, RewardModel, ppo_clip_epochs, rollout_row

ESTIMATORS = ("grpo", "dr_grpo", "rloo")


@dataclass
class GRPOConfig(TrainerConfig):
    """GRPO/RLOO's hyperparameters; every name shared with ``RLHFConfig`` has its value there, so a
    run sees as many responses and makes as many PPO-Clip steps as chapter 8's PPO."""

    estimator: str = "grpo"     # "grpo", "dr_grpo" (unscaled group advantage) or "rloo"
    group_size: int = 8         # G responses sampled for each prompt
    prompts_per_update: int = 8  # P prompts per rollout: B = P * G = 64 responses, RLHFConfig's batch_size
    kl_coef: float = 0.1        # as chapter 8: -kl_coef * (log pi - log pi_ref) on every token, in the reward
    num_updates: int = 40
    num_epochs: int = 3
    num_minibatches: int = 2
    learning_rate: float = 1e-3
    clip_epsilon: float = 0.2
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self):
        self.check(positive_ints=("group_size", "prompts_per_update", "num_updates", "num_epochs", "num_minibatches"),
                   positive=("learning_rate", "max_grad_norm"), non_negative=("kl_coef",),
                   open_fractions=("clip_epsilon",))
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (a group of one has no baseline), got {self.group_size}")
        if self.batch_size < self.num_minibatches:
            raise ValueError(f"num_minibatches={self.num_minibatches} is more than the {self.batch_size} responses "
                             "of a rollout")

    @property
    def batch_size(self) -> int:
        """Responses per rollout, P * G."""
        return self.prompts_per_update * self.group_size


def advantage_function(estimator: str):
    """The reference advantage of an estimator name: ``rewards [P, G] -> advantages [P, G]``."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    return {"grpo": group_advantages, "dr_grpo": partial(group_advantages, scale=False),
            "rloo": leave_one_out_advantages}[estimator]


@dataclass
class Groups:
    """One rollout of groups: ``samples`` (B = P * G responses, a group's rows consecutive),
    ``logprobs`` / ``ref_logprobs`` ``[B, L]`` under the sampling policy and the reference,
    ``scores`` ``[B]`` (reward model) and ``rewards`` ``[P, G]`` (score - kl_coef * k1 sum)."""

    samples: Samples
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    scores: torch.Tensor
    rewards: torch.Tensor


@torch.no_grad()
def sample_groups(policy: TinyLM, reference: TinyLM, reward_model: RewardModel, vocab: Vocab, prompts: torch.Tensor,
                  group_size: int, kl_coef: float, generator: torch.Generator | None = None,
                  reward_fn=kl_penalized_rewards) -> Groups:
    """Sample ``group_size`` responses to each of the ``[P, prompt tokens]`` prompts and give each
    one reward: chapter 8's per-token rewards (``reward_fn``: the KL penalty on every token, the
    reward model's score on the last) summed over the response — its undiscounted return."""
    repeated = prompts.repeat_interleave(group_size, dim=0)  # [P * G, prompt tokens]
    samples = generate(policy, repeated, MAX_NEW_TOKENS, vocab, generator=generator)
    logprobs, _ = response_logprobs(policy, samples.prompts, samples.responses)
    ref_logprobs, _ = response_logprobs(reference, samples.prompts, samples.responses)
    scores = reward_model.score(samples)
    rewards = reward_fn(scores, logprobs, ref_logprobs, kl_coef, samples.mask).sum(1)
    return Groups(samples, logprobs, ref_logprobs, scores, rewards.view(len(prompts), group_size))


@one_torch_thread
def train_grpo(policy: TinyLM, reference: TinyLM, reward_model: RewardModel, vocab: Vocab,
               config: GRPOConfig | None = None, advantage_fn=None, reward_fn=kl_penalized_rewards,
               progress: bool = False, callback=None) -> list[dict]:
    """Optimise ``policy`` (in place) against ``reward_model`` with a group baseline instead of a critic.

    ``advantage_fn(rewards [P, G]) -> [P, G]``: the advantage estimator (the chapter's exercise);
    None takes ``config.estimator``'s reference. ``reward_fn``: chapter 8's per-token rewards,
    summed here over each response. ``progress``, ``callback``: as ``rlhf_ppo``.

    Returns the history, one dict per update, measured on that update's rollout (before its
    update): ``rm_score``, ``human_score``, ``kl`` (k1 per response, nats), ``clip_fraction``,
    ``approx_kl``, ``length`` — as ``rlhf_ppo`` — plus ``reward_std`` (the mean within-group
    std of the KL-penalised rewards) and ``zero_std_groups`` (share of groups whose rewards are
    all equal: they teach nothing), and ``wall_time``.
    """
    cfg = config or GRPOConfig()
    if not isinstance(cfg, GRPOConfig):
        raise ValueError(f"config must be a GRPOConfig, got {type(cfg).__name__}")
    advantage_fn = advantage_fn or advantage_function(cfg.estimator)
    p, g = cfg.prompts_per_update, cfg.group_size
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    prompt_pool = sample_prompts(cfg.num_updates * p, vocab, seed=PROMPT_SEED_RLHF + cfg.seed)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    history = []
    bar = tqdm(total=cfg.num_updates, disable=not progress, desc=f"{cfg.estimator} kl_coef={cfg.kl_coef:g}",
               unit="iter")
    start = time.perf_counter()
    for it in range(cfg.num_updates):
        # --- rollout: G responses to each of P prompts, one KL-penalised reward each -------------
        policy.eval()
        group = sample_groups(policy, reference, reward_model, vocab, prompt_pool[it * p : (it + 1) * p], g,
                              cfg.kl_coef, gen, reward_fn)
        samples, mask, old_logprobs = group.samples, group.samples.mask, group.logprobs

        # --- advantages from the group, no critic: [P, G] -> every token of the response ------
        advantages = advantage_fn(group.rewards).reshape(-1)
        token_advantages = advantages[:, None] * mask

        # --- PPO-Clip updates, as chapter 8 (no value loss: there is no critic to fit) -----------
        clip_fractions, approx_kl = ppo_clip_epochs(policy, opt, samples, old_logprobs, token_advantages, cfg, gen)

        # --- log what this rollout looked like -------------------------------------------------
        spread = group.rewards.std(dim=1)  # [P]: how much a prompt's G responses differ
        row = {**rollout_row(it, group.scores, samples, old_logprobs, group.ref_logprobs, vocab, clip_fractions,
                             approx_kl, start),
               "reward_std": spread.mean().item(),
               "zero_std_groups": (spread < 1e-6).float().mean().item()}  # groups that teach nothing
        history.append(row)
        bar.update(1)
        bar.set_postfix(rm=f"{row['rm_score']:.2f}", human=f"{row['human_score']:.2f}", kl=f"{row['kl']:.1f}")
        if callback is not None and callback(row):
            break
    bar.close()
    policy.eval()
    return history
