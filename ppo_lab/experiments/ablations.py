"""PPO's implementation details, measured on CartPole: each one switched on or off alone.

The baseline is ``PPOConfig.fast_cartpole()`` with ppo_lab's ``ppo_update``. Each entry of
``DETAILS`` changes one thing, and every setting trains on the same seeds. Per run we keep:

* ``final_return``: a deterministic evaluation (20 episodes) after the whole budget (50 updates);
* ``steps_to_solve``: the env steps after which an evaluation first reached 475 (evaluated after
  every update until then), or None if it never did within the budget;
* the diagnostics of every update (approx_kl, clip_fraction, entropy, explained variance).

Runs are summarised the way the field reports RL results now (Agarwal et al., 2021, the ``rliable``
package): the interquartile mean (IQM, the mean of the middle 50% of runs: robust to one lucky or
failed seed, less noisy than the median) with a 95% percentile-bootstrap confidence interval
over seeds. ``rliable`` is not a dependency here; ``iqm`` and ``bootstrap_ci`` are the same
method in a few lines.

The full table (9 settings x 10 seeds) takes minutes, more than a chapter's 60 s, so it is
cached in ``ppo_lab/data/ablation_table.json`` by ``scripts/ablation_table.py``; a test re-runs
some of its runs and matches them number for number.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..algos.config import one_torch_thread
from ..algos.ppo import PPOConfig, evaluate, train_ppo
from ..models.actor_critic import ActorCritic

TABLE_PATH = Path(__file__).resolve().parents[1] / "data" / "ablation_table.json"
SOLVED = 475.0  # the evaluation that counts as solved (CartPole-v1's threshold; 500 is the time limit)
EVAL_EPISODES, EVAL_SEED = 20, 1000
DIAGNOSTICS = ("approx_kl", "clip_fraction", "entropy", "explained_variance")


@dataclass(frozen=True)
class Detail:
    name: str  # the detail, as the literature names it
    baseline: str  # what fast_cartpole does
    change: str  # what this setting does instead
    config: dict = field(default_factory=dict)  # PPOConfig changes
    default_init: bool = False  # PyTorch's default initialisation instead of orthogonal


BASELINE = Detail("baseline", "fast_cartpole", "unchanged")
DETAILS = (
    Detail("advantage normalisation", "on", "off", {"norm_adv": False}),
    Detail("value-loss clipping", "off", "on (V_old +/- 0.2)", {"clip_value_loss": True}),
    Detail("entropy bonus", "entropy_coef 0", "entropy_coef 0.01", {"entropy_coef": 0.01}),
    Detail("gradient-norm clipping", "max_grad_norm 0.5", "none", {"max_grad_norm": None}),
    Detail("orthogonal init", "orthogonal", "PyTorch's default", default_init=True),
    Detail("Adam's eps", "1e-5", "1e-8 (PyTorch's)", {"adam_eps": 1e-8}),
    Detail("learning-rate annealing", "linear to 0", "constant", {"anneal_lr": False}),
    Detail("target_kl", "off", "0.015", {"target_kl": 0.015}),
)
SETTINGS = {detail.name: detail for detail in (BASELINE, *DETAILS)}


def default_init_agent(hidden: int = 64) -> ActorCritic:
    """CartPole's actor-critic with PyTorch's default layer initialisation (Kaiming-uniform weights,
    uniform biases) instead of orthogonal weights, zero biases and a tiny actor output layer."""
    agent = ActorCritic(4, 2, hidden)
    for module in agent.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()
    return agent


@one_torch_thread  # the agent's orthogonal init too: its QR decomposition differs in the last bits with threads
def run(setting: str, seed: int, *, budget: PPOConfig | None = None, stop_after: int | None = None) -> dict:
    """Train one setting (a name of ``SETTINGS``) on one seed; returns the run's numbers.
    ``stop_after``: stop after that many updates (the same run cut short: for a quick look)."""
    detail = SETTINGS[setting]
    config = (PPOConfig.fast_cartpole() if budget is None else budget).replace(seed=seed, **detail.config)
    torch.manual_seed(seed)  # the agent train_ppo would build (train_ppo seeds again before its rollouts)
    agent = default_init_agent(config.hidden) if detail.default_init else ActorCritic(4, 2, config.hidden)
    solved_at = []

    def watch(row):  # evaluate after every update until the first one that solves
        if not solved_at and np.mean(evaluate(agent, episodes=EVAL_EPISODES, seed=EVAL_SEED)) >= SOLVED:
            solved_at.append(row["global_step"])
        return stop_after is not None and row["update"] >= stop_after

    agent, history = train_ppo(config, progress=False, agent=agent, callback=watch)
    final = float(np.mean(evaluate(agent, episodes=EVAL_EPISODES, seed=EVAL_SEED)))
    return {
        "setting": setting, "seed": seed, "final_return": round(final, 3),
        "steps_to_solve": solved_at[0] if solved_at else None,
        "wall_time": round(history[-1]["wall_time"], 3),
        "diagnostics": {key: [_round(row[key]) for row in history] for key in DIAGNOSTICS},
    }


def _round(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(f"{value:.6g}")


# --- the statistics: IQM and its percentile-bootstrap confidence interval ----------------------------


def iqm(values) -> float:
    """Interquartile mean: the mean of the values left after dropping the lowest and the highest
    25% (``scipy.stats.trim_mean(values, 0.25)``, which ``rliable`` uses)."""
    values = np.sort(np.asarray(values, dtype=float))
    if values.size == 0:
        raise ValueError("iqm of no values")
    cut = int(0.25 * values.size)
    return float(values[cut:values.size - cut].mean())


def bootstrap_ci(values, statistic=iqm, *, reps: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap: resample the runs with replacement ``reps`` times, compute the statistic
    on each resample, and return the (1 - confidence)/2 and (1 + confidence)/2 quantiles."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    resampled = rng.choice(values, size=(reps, values.size), replace=True)
    stats = np.array([statistic(row) for row in resampled])
    low, high = np.quantile(stats, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def summarise(runs: list[dict], budget_steps: int) -> dict:
    """IQM and 95% CI of the final return and of the steps to solve (an unsolved run counts as the
    whole budget: its true time is longer, so that IQM is a lower bound), and the solved count."""
    finals = [r["final_return"] for r in runs]
    steps = [budget_steps if r["steps_to_solve"] is None else r["steps_to_solve"] for r in runs]
    return {
        "final_return": (iqm(finals), *bootstrap_ci(finals)),
        "steps_to_solve": (iqm(steps), *bootstrap_ci(steps)),
        "solved": sum(r["steps_to_solve"] is not None for r in runs),
        "final_ge_475": sum(r["final_return"] >= SOLVED for r in runs),
        "runs": len(runs),
        "wall_time": float(np.median([r["wall_time"] for r in runs])),
    }


# --- the cached table ---------------------------------------------------------------------------


def run_all(seeds=range(1, 11), settings=None, progress=True) -> dict:
    """Every setting on every seed: the content of the cached table."""
    from tqdm.auto import tqdm

    settings = list(SETTINGS) if settings is None else list(settings)
    jobs = [(setting, seed) for setting in settings for seed in seeds]
    runs = [run(setting, seed) for setting, seed in tqdm(jobs, desc="ablation runs", disable=not progress)]
    budget = PPOConfig.fast_cartpole()
    return {"budget_steps": budget.total_timesteps, "seeds": list(seeds), "solved_threshold": SOLVED,
            "eval_episodes": EVAL_EPISODES, "eval_seed": EVAL_SEED, "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "runs": runs}  # the machine: see the test


def load_table(path: Path = TABLE_PATH) -> dict:
    return json.loads(Path(path).read_text())


def table_rows(table: dict) -> list[dict]:
    """One summary row per setting, baseline first."""
    rows = []
    for setting in SETTINGS:
        runs = [r for r in table["runs"] if r["setting"] == setting]
        if runs:
            detail = SETTINGS[setting]
            rows.append({"setting": setting, "baseline": detail.baseline, "change": detail.change,
                         **summarise(runs, table["budget_steps"])})
    return rows


def format_table(table: dict) -> str:
    """The table as text: IQM [95% CI] over the seeds."""
    rows, seeds = table_rows(table), len(table["seeds"])
    change = max(len(f"{row['baseline']} -> {row['change']}") for row in rows)
    lines = [f"{'detail':24s} {'fast_cartpole -> this row':{change}s}  {'final return':>21s}  "
             f"{'env steps to 475 (k)':>20s}  solved",
             f"{'':24s} {'':{change}s}  {'IQM [95% CI]':>21s}  {'IQM [95% CI]':>20s}  {f'of {seeds}':>6s}"]
    for row in rows:
        final, steps = row["final_return"], row["steps_to_solve"]
        lines.append(f"{row['setting']:24s} {row['baseline'] + ' -> ' + row['change']:{change}s}  "
                     f"{final[0]:5.1f} [{final[1]:5.1f}, {final[2]:5.1f}]  "
                     f"{steps[0] / 1e3:6.1f} [{steps[1] / 1e3:4.1f}, {steps[2] / 1e3:4.1f}]  {row['solved']:6d}")
    return "\n".join(lines)


def compare_to_baseline(rows: list[dict], key: str = "steps_to_solve") -> dict:
    """Per setting, how its 95% interval of ``key`` sits against the baseline's: "overlaps",
    "above" (entirely higher) or "below" (entirely lower)."""
    base = next(row for row in rows if row["setting"] == "baseline")[key]
    verdicts = {}
    for row in rows:
        _, low, high = row[key]
        verdicts[row["setting"]] = "above" if low > base[2] else "below" if high < base[1] else "overlaps"
    return verdicts


def healthy_ranges(table: dict, setting: str = "baseline", quantiles=(0.1, 0.5, 0.9)) -> dict:
    """Quantiles of each diagnostic over the updates of a setting's runs, split into the updates
    before the run first solved (learning) and after (solved). ``{diagnostic: {phase: [q...]}}``."""
    per_phase = {key: {"learning": [], "solved": []} for key in DIAGNOSTICS}
    budget = table["budget_steps"]
    for r in (r for r in table["runs"] if r["setting"] == setting):
        updates = len(r["diagnostics"]["approx_kl"])
        per_update = budget // updates
        solved_update = updates if r["steps_to_solve"] is None else r["steps_to_solve"] // per_update
        for key in DIAGNOSTICS:
            for i, value in enumerate(r["diagnostics"][key]):
                if value is not None:
                    per_phase[key]["learning" if i < solved_update else "solved"].append(value)
    return {key: {phase: [float(np.quantile(v, q)) for q in quantiles] if v else None
                  for phase, v in phases.items()} for key, phases in per_phase.items()}
