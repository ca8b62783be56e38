"""Chapter 9's sweep: PPO, GRPO, Dr. GRPO, RLOO and DPO on the same SFT model, reward model and
hidden rule, each over several seeds, plus the unpenalised (kl_coef = 0) runs whose checkpoints
the over-optimisation fit uses.

Three seeds of five methods take minutes, more than a notebook's minute, so the sweep is run once
by ``scripts/beyond_ppo_sweep.py`` and cached in ``ppo_lab/data/beyond_ppo_sweep.pt`` together
with the reward model it used (chapter 8's recipe, seed 0; training it again would take a large
share of the chapter's minute). The chapter re-runs seed 0 of each method live and shows it next to the cached
row; ``tests/test_beyond_ppo.py`` re-runs a subset and checks it matches the file.

Everything here is deterministic for a given machine: one torch thread, seeded generators. Wall
and CPU times are measurements, not part of what must match.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..algos.dpo import DPOConfig, train_dpo
from ..algos.grpo import GRPOConfig, train_grpo
from ..algos.rlhf import (PreferencePairs, RewardModel, RLHFConfig, evaluate_policy, make_preference_pairs,
                          rlhf_ppo, train_reward_model)
from ..models.tiny_lm import TinyLM, Vocab, load_sft_model
from ..style import COLORS

SWEEP_PATH = Path(__file__).parents[1] / "data" / "beyond_ppo_sweep.pt"
SEEDS = (0, 1, 2)
N_PAIRS, N_HELD_OUT = 2400, 500  # chapter 8's preference data: make_preference_pairs(sft, vocab, 2400), 500 held out
REWARD_MODEL_SEED = 0
EVAL_KEYS = ("rm_score", "human_score", "kl")

#: method -> (what it trains with, its config for a seed); chapter 8's PPO is the first.
METHODS = {
    "ppo": ("rlhf_ppo", lambda seed: RLHFConfig(seed=seed)),
    "grpo": ("train_grpo", lambda seed: GRPOConfig(estimator="grpo", seed=seed)),
    "dr_grpo": ("train_grpo", lambda seed: GRPOConfig(estimator="dr_grpo", seed=seed)),
    "rloo": ("train_grpo", lambda seed: GRPOConfig(estimator="rloo", seed=seed)),
    "dpo": ("train_dpo", lambda seed: DPOConfig(seed=seed)),
    "ppo_kl0": ("rlhf_ppo", lambda seed: RLHFConfig(kl_coef=0.0, seed=seed)),
    "grpo_kl0": ("train_grpo", lambda seed: GRPOConfig(estimator="grpo", kl_coef=0.0, seed=seed)),
}
LABELS = {"ppo": "PPO (chapter 8)", "grpo": "GRPO", "dr_grpo": "Dr. GRPO", "rloo": "RLOO", "dpo": "DPO",
          "ppo_kl0": "PPO, kl_coef = 0", "grpo_kl0": "GRPO, kl_coef = 0"}
#: One colour per method in the chapter's figures (PPO keeps its colour from the earlier chapters).
METHOD_COLORS = {"ppo": COLORS["ppo_clip"], "grpo": "#ff7f0e", "dr_grpo": "#1f77b4", "rloo": "#9467bd",
                 "dpo": "#d62728"}
#: What each method needs besides the SFT policy and its frozen copy, the reference.
NEEDS = {"ppo": "reward model, critic (value head + GAE), samples",
         "grpo": "reward model, G samples per prompt",
         "dr_grpo": "reward model, G samples per prompt",
         "rloo": "reward model, G samples per prompt",
         "dpo": "preference pairs only"}


def chapter_data(sft: TinyLM, vocab: Vocab) -> tuple[PreferencePairs, PreferencePairs]:
    """Chapter 8's preference pairs, split as there: (train, held out)."""
    pairs = make_preference_pairs(sft, vocab, N_PAIRS)
    return pairs.split(len(pairs) - N_HELD_OUT)


def fit_reward_model(sft: TinyLM, reference: TinyLM, vocab: Vocab, train: PreferencePairs,
                     held_out: PreferencePairs) -> tuple[RewardModel, dict]:
    """Chapter 8's reward model (seed 0), normalised on SFT samples exactly as chapter 8 does."""
    reward_model, log = train_reward_model(sft, train, held_out, seed=REWARD_MODEL_SEED)
    reward_model.normalize(evaluate_policy(sft, reference, None, vocab, n=512, seed=1)["samples"])
    return reward_model, log


def final_scores(policy: TinyLM, reference: TinyLM, reward_model: RewardModel, vocab: Vocab) -> dict:
    """``evaluate_policy``'s numbers on the chapters' evaluation prompts, plus the mean response length."""
    result = evaluate_policy(policy, reference, reward_model, vocab)
    return {**{k: result[k] for k in EVAL_KEYS}, "length": result["samples"].mask.sum(1).mean().item()}


def run_method(method: str, seed: int, sft: TinyLM, reference: TinyLM, reward_model: RewardModel, vocab: Vocab,
               train_pairs: PreferencePairs, stop_after: int | None = None, **trainer_kwargs) -> dict:
    """One run of ``method`` from a fresh copy of ``sft``.

    Returns ``history`` (the trainer's rows), ``final`` (``final_scores`` of the trained policy;
    None when stopped early), ``wall_time`` and ``cpu_time`` of the training call (seconds).
    ``stop_after``: stop after that many updates (the same first rows as a full run).
    ``trainer_kwargs`` go to the trainer (e.g. ``advantage_fn``, ``loss_fn``, ``progress``).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    trainer, make_config = METHODS[method]
    config = make_config(seed)
    policy = copy.deepcopy(sft)
    callback = None if stop_after is None else (lambda row: row["update"] >= stop_after)
    wall, cpu = time.perf_counter(), time.process_time()
    if trainer == "train_dpo":
        history = train_dpo(policy, reference, train_pairs, config, callback=callback, **trainer_kwargs)
    elif trainer == "train_grpo":
        history = train_grpo(policy, reference, reward_model, vocab, config, callback=callback, **trainer_kwargs)
    else:
        history = rlhf_ppo(policy, reference, reward_model, vocab, config, callback=callback, **trainer_kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    final = None if stop_after is not None else final_scores(policy, reference, reward_model, vocab)
    return dict(history=history, final=final, wall_time=wall, cpu_time=cpu, policy=policy)


def run_sweep(methods=tuple(METHODS), seeds=SEEDS, progress: bool = False) -> dict:
    """Everything the cache holds, computed from the shipped SFT model (one torch thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sft, vocab = load_sft_model(verbose=False)
        reference = copy.deepcopy(sft).requires_grad_(False)
        train, held_out = chapter_data(sft, vocab)
        start = time.perf_counter()
        reward_model, rm_log = fit_reward_model(sft, reference, vocab, train, held_out)
        rm_seconds = time.perf_counter() - start
        sweep = dict(
            meta=dict(torch=str(torch.__version__), seeds=list(seeds), n_train_pairs=len(train),
                      n_held_out=len(held_out),
                      reward_model_seconds=rm_seconds, reward_model_held_out_acc=rm_log["held_out_acc"][-1],
                      configs={m: asdict(METHODS[m][1](0)) for m in methods}),
            reward_model={k: v.detach().clone() for k, v in reward_model.state_dict().items()},
            sft=final_scores(sft, reference, reward_model, vocab),
            runs={},
        )
        for method in methods:
            sweep["runs"][method] = {}
            for seed in seeds:
                run = run_method(method, seed, sft, reference, reward_model, vocab, train)
                sweep["runs"][method][seed] = dict(final=run["final"], wall_time=run["wall_time"],
                                                   cpu_time=run["cpu_time"], history=columns(run["history"]))
                if progress:
                    print(f"{method:9s} seed {seed}: {run['final']}  {run['wall_time']:.1f} s", flush=True)
        return sweep
    finally:
        torch.set_num_threads(threads)


def columns(history: list[dict]) -> dict[str, list]:
    """Rows -> one list per key (smaller to store)."""
    return {key: [row[key] for row in history] for key in history[0]}


def rows(history_columns: dict[str, list]) -> list[dict]:
    """``columns`` undone: one dict per update, as the trainers return them."""
    keys = list(history_columns)
    return [dict(zip(keys, values)) for values in zip(*history_columns.values())]


def load_sweep(path: Path | str = SWEEP_PATH) -> dict:
    """The cached sweep (``scripts/beyond_ppo_sweep.py`` writes it)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python scripts/beyond_ppo_sweep.py` (a few minutes)")
    return torch.load(path, weights_only=True)


def cached_reward_model(sft: TinyLM, sweep: dict) -> RewardModel:
    """The sweep's reward model (chapter 8's seed-0 recipe, normalised), in eval mode."""
    reward_model = RewardModel(sft)
    reward_model.load_state_dict(sweep["reward_model"])
    return reward_model.eval().requires_grad_(False)


def trained_parameters(method: str, sft: TinyLM) -> int:
    """Parameters the method's optimiser updates: PPO also trains the value head (its critic)."""
    value_head = sum(p.numel() for p in sft.value_head.parameters())
    return sum(p.numel() for p in sft.parameters()) - (0 if method.startswith("ppo") else value_head)


def summary(sweep: dict, methods=("ppo", "grpo", "rloo", "dpo")) -> list[dict]:
    """One row per method over the sweep's seeds: mean and (sample) std of each final score,
    median wall and CPU times, and ``n`` seeds."""
    table = []
    for method in methods:
        runs = list(sweep["runs"][method].values())
        row = dict(method=method, label=LABELS[method], needs=NEEDS.get(method, ""), n=len(runs),
                   wall_time=statistics.median(r["wall_time"] for r in runs),
                   cpu_time=statistics.median(r["cpu_time"] for r in runs))
        for key in (*EVAL_KEYS, "length"):
            values = [r["final"][key] for r in runs]
            row[key] = statistics.mean(values)
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        table.append(row)
    return table
