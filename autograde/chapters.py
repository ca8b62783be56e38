"""The course's chapters, in order: the one list that the release, the course-grading tests, the
browser tests and the README's chapter table are all made from (docs/adding_a_chapter.md).

``id`` is the assignment: the folder under ``solutions/`` and ``notebooks/`` and the notebook's
name. The numbering follows the course arc of ../shared/EXERCISE_API.md.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    id: str
    title: str
    builds: str  # what the student builds and measures: the README's line
    exercises: tuple[str, ...]  # the graded functions the student writes
    images: int = 0  # inline (PNG) figures the solution shows once run (at least)
    figures: int = 0  # painted ipympl canvases (at least)
    explorer: str | None = None  # the slider explorer the browser tests move (tests/browser/explorers.py)

    @property
    def number(self) -> int:
        return int(self.id.split("_", 1)[0])

    @property
    def notebook(self) -> str:
        return f"{self.id}/{self.id}.ipynb"


CHAPTERS = (
    Chapter("01_vanilla_pg", "Vanilla policy gradient",
            "the policy-gradient loss; one oversized update destroys a trained CartPole policy",
            ("pg_loss", "reward_to_go"), images=1),
    Chapter("02_trpo", "Trust regions and TRPO",
            "probability ratios, KL, conjugate gradient, a working TRPO update, and its cost",
            ("probability_ratio", "categorical_kl", "conjugate_gradient"), images=4),
    Chapter("03_ppo_clip", "PPO-Clip",
            "the clipped surrogate and its four cases, three derivations checked numerically, the diagnostics, "
            "the clip explorer",
            ("ppo_clip_objective", "clip_active_mask", "gradients_at_ratio_one", "surrogate_lower_bound_gap",
             "ppo_objective_with_diagnostics", "clip_boundary_kl"), images=1, figures=1, explorer="clip"),
    Chapter("04_ppo_in_practice", "PPO in practice",
            "schedules, epsilon and the learning-rate sweep on CartPole, PPO-KL, and vanilla PG, TRPO, PPO-Clip "
            "and PPO-KL on one budget",
            ("get_lr", "adaptive_epsilon", "lr_sweep", "ppo_kl_objective", "adaptive_beta"), images=3),
    Chapter("05_gae", "Generalized advantage estimation",
            "GAE done right (bootstrapping, truncation vs termination), the lambda explorer, a full PPO run",
            ("compute_gae",), images=1, figures=5, explorer="lambda"),
    Chapter("06_build_ppo", "Build PPO",
            "PPO's update written and graded aspect by aspect, CartPole trained with it, eight implementation "
            "details ablated over ten seeds (IQM, bootstrap CIs), probe environments and silent bugs",
            ("ppo_loss", "ppo_update", "fixed_ppo_update"), images=2),
    Chapter("07_continuous", "Continuous actions",
            "Gaussian policies on a batched Pendulum: clipped actions vs tanh, running moments, a seconds-long "
            "training run, bootstrapping the time limit and normalisation measured over seeds",
            ("gaussian_log_prob", "gaussian_entropy", "update_running_moments"), images=6, figures=1),
    Chapter("08_rlhf", "RLHF",
            "a reward model from preferences, PPO with a KL penalty on a tiny language model",
            ("preference_loss", "kl_penalized_rewards"), images=2),
    Chapter("09_beyond_ppo", "Beyond PPO",
            "DPO from the KL-regularised objective, GRPO/RLOO without a critic, reward over-optimisation measured and "
            "fitted, and PPO, GRPO, RLOO and DPO side by side",
            ("dpo_loss", "group_advantages", "leave_one_out_advantages"), images=4),
)
IDS = tuple(chapter.id for chapter in CHAPTERS)


def get(chapter_id: str) -> Chapter:
    for chapter in CHAPTERS:
        if chapter.id == chapter_id:
            return chapter
    raise ValueError(f"unknown chapter {chapter_id!r}; the course has {', '.join(IDS)}")


def readme_table() -> str:
    """The README's chapter table (tests/test_notebooks.py keeps the README in step with it)."""
    rows = ["| chapter | what you build and measure |", "| --- | --- |"]
    rows += [f"| {c.number} `{c.id}` | {c.builds} |" for c in CHAPTERS]
    return "\n".join(rows)
