"""What bench/cartpole.py and bench/pendulum.py share: train ppo_lab's PPO and SB3's PPO until an
evaluation says "solved", seed by seed, on the clock, and print the comparison.

Both agents are judged by the bench's own ``is_solved(agent) -> bool``, which only calls
``agent.act(obs, deterministic=True)``; the evaluation time counts in the wall time of both.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, NamedTuple

import torch

from ppo_lab.algos.rollout import env_and_agent
from ppo_lab.algos.ppo import PPOConfig, train_ppo


class Run(NamedTuple):
    """One run until solved (or until its budget ran out)."""

    wall_seconds: float
    cpu_seconds: float  # this process's CPU time: less sensitive to other load on the machine
    env_steps: int
    solved: bool


class Clock:
    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def run(self, env_steps: int, solved: bool) -> Run:
        return Run(time.perf_counter() - self.wall, time.process_time() - self.cpu, env_steps, solved)


def run_ppo_lab(config: PPOConfig, is_solved) -> Run:
    """``train_ppo(config)``, asking ``is_solved`` after every update."""
    clock = Clock()
    _, agent = env_and_agent(config)  # the agent train_ppo would build, seeded the same; kept to evaluate it
    result = {"steps": 0, "solved": False}

    def stop_when_solved(row: dict) -> bool:
        result["steps"] = row["global_step"]
        result["solved"] = is_solved(agent)
        return result["solved"]

    train_ppo(config, progress=False, callback=stop_when_solved, agent=agent)
    return clock.run(result["steps"], result["solved"])


class SB3Agent:
    """Gives an SB3 policy the ``act(obs, deterministic)`` that ``is_solved`` calls."""

    def __init__(self, policy):
        self.policy = policy

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.policy.get_distribution(obs).get_actions(deterministic=deterministic)


def run_sb3(make_model, is_solved, eval_every: int, total_timesteps: int, first_eval: int | None = None) -> Run:
    """``make_model()`` (an SB3 model and its envs, built on the clock) learns for at most
    ``total_timesteps`` env steps, asking ``is_solved`` at the first env step at or past
    ``first_eval`` (default ``eval_every``) and every ``eval_every`` env steps after that.

    SB3 calls the callback after every env step and updates the policy only between rollouts, so
    at exactly k rollouts' worth of steps the last rollout's update has not happened yet: to
    evaluate each update as soon as it is made, pass ``first_eval`` = one rollout + 1."""
    from stable_baselines3.common.callbacks import BaseCallback

    class StopWhenSolved(BaseCallback):
        def __init__(self):
            super().__init__()
            self.solved = False
            self.next_eval = eval_every if first_eval is None else first_eval

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            self.next_eval += eval_every
            self.solved = is_solved(SB3Agent(self.model.policy))
            return not self.solved

    clock = Clock()
    model = make_model()
    callback = StopWhenSolved()
    model.learn(total_timesteps=total_timesteps, callback=callback)
    return clock.run(model.num_timesteps, callback.solved)


def _cell(run: Run) -> str:
    return f"{run.wall_seconds:6.2f} {run.cpu_seconds:6.2f} {run.env_steps:7,d}{'' if run.solved else ' NOT SOLVED'}"


def compare(seeds: list[int], run_ours: Callable[[int], Run], run_theirs: Callable[[int], Run], goal: str) -> None:
    """Runs both on every seed, back to back (so they see similar machine load), and prints one
    row per seed, then the medians. ``goal`` completes "seconds to ...", e.g. "a deterministic
    evaluation mean >= 475"."""
    print(f"seconds to {goal} (wall, CPU of this process) and env steps used")
    print(f"{'seed':>4} | {'ppo_lab: wall    CPU   steps':>28} | {'SB3 RL-Zoo: wall    CPU   steps':>31} | SB3/ppo_lab wall")
    ours, theirs = [], []
    for seed in seeds:
        ours.append(run_ours(seed))
        theirs.append(run_theirs(seed))
        ratio = theirs[-1].wall_seconds / ours[-1].wall_seconds
        print(f"{seed:>4} | {_cell(ours[-1]):>28} | {_cell(theirs[-1]):>31} | {ratio:5.1f}x", flush=True)

    def median(runs: list[Run], field: str) -> float:
        return statistics.median(getattr(run, field) for run in runs)

    for field in ("wall_seconds", "cpu_seconds"):
        print(
            f"median {field.replace('_', ' ')}: ppo_lab {median(ours, field):.2f}, SB3 {median(theirs, field):.2f} "
            f"-> ppo_lab takes {median(ours, field) / median(theirs, field):.2f} of SB3's time"
        )
    per_seed = statistics.median(b.wall_seconds / a.wall_seconds for a, b in zip(ours, theirs))
    print(f"median of the per-seed wall-time speed-ups: {per_seed:.1f}x")
