"""Wall time to solve CartPole-v1: ppo_lab's PPO vs Stable-Baselines3's PPO, both on the CPU.

    python -m bench.cartpole [--seeds 1 2 3] [--sb3-eval-every 1024]

"Solved" means: the mean return of 20 deterministic evaluation episodes is >= 475. Both agents
are evaluated by the same function (``is_solved``: 20 episodes in parallel in a BatchedCartPole
with a fixed seed), and the evaluation time counts in the wall time of both:

* ppo_lab: ``PPOConfig.fast_cartpole()`` on ``BatchedCartPole``, evaluated after every update
  (= every 1,024 env steps).
* SB3 2.x: the RL-Zoo CartPole-v1 hyperparameters (8 envs x 32 steps, batch 256, 20 epochs,
  gamma 0.98, GAE lambda 0.8, no entropy bonus, lr and clip range linear from 1e-3 and 0.2 to 0,
  1e5 steps) on Gymnasium's CartPole-v1, evaluated every ``--sb3-eval-every`` env steps
  (default 1,024, the same as ppo_lab) by a callback that stops training once solved.

The clock starts before the agent and its environments are built. Both use one torch thread
(a second one does not help networks this small). Each seed runs ppo_lab and SB3 back to back,
so the two see similar machine load; a short warm-up run of each comes first. On a shared
machine compare the ratios (and the CPU-time column), not absolute seconds.

Three seeds are few: both algorithms' env steps to solve vary 2-5x from seed to seed. Measured on
2026-11-25, the median ratio was 0.15-0.16 on seeds 1-3 and 0.26 on seeds 1-20 (``--seeds``).
"""
from __future__ import annotations

import argparse

import torch

from bench import _race
from bench._race import Run
from ppo_lab.envs import BatchedCartPole
from ppo_lab.envs.cartpole import MAX_EPISODE_STEPS
from ppo_lab.algos.ppo import PPOConfig

SOLVED_RETURN = 475.0
EVAL_EPISODES = 20
EVAL_SEED = 12345
SB3_TIMESTEPS = 100_000


def is_solved(agent) -> bool:
    """Is the mean return of EVAL_EPISODES deterministic episodes >= SOLVED_RETURN?

    The episodes run in parallel, one per env (CartPole pays 1 per step, so a return is an
    episode's length). The answer is given as soon as it is known: once the episodes that ended
    lost so much that even 500 in every running one could not lift the mean to the mark, the rest
    are not played out. Same answer as the full evaluation, minus wasted steps, for both agents.
    """
    env = BatchedCartPole(EVAL_EPISODES, seed=EVAL_SEED)
    obs, _ = env.reset()
    running = torch.ones(EVAL_EPISODES, dtype=torch.bool)  # still in its first episode
    steps_lost = 0  # sum of (500 - length) over the episodes that ended
    allowed_loss = (MAX_EPISODE_STEPS - SOLVED_RETURN) * EVAL_EPISODES
    for step in range(1, MAX_EPISODE_STEPS + 1):
        obs, _, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
        ended = (terminated | truncated) & running
        if ended.any():
            running &= ~ended
            steps_lost += (MAX_EPISODE_STEPS - step) * int(ended.sum())
            if steps_lost > allowed_loss:
                return False
    return True


def run_ppo_lab(seed: int, config: PPOConfig | None = None) -> Run:
    """ppo_lab's PPO with ``PPOConfig.fast_cartpole`` on BatchedCartPole, evaluated after every update."""
    config = PPOConfig.fast_cartpole(seed=seed) if config is None else config
    return _race.run_ppo_lab(config, is_solved)


def run_sb3(seed: int, eval_every: int, total_timesteps: int = SB3_TIMESTEPS) -> Run:
    """Same measurement for SB3 PPO with the RL-Zoo hyperparameters for CartPole-v1."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    def make_model():
        env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
        return PPO(
            "MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
            learning_rate=lambda progress_remaining: 1e-3 * progress_remaining,
            clip_range=lambda progress_remaining: 0.2 * progress_remaining,
            seed=seed, device="cpu", verbose=0,
        )  # fmt: skip

    return _race.run_sb3(make_model, is_solved, eval_every, total_timesteps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sb3-eval-every", type=int, default=1024, help="env steps between SB3 evaluations")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    print("warming up ...", flush=True)
    run_ppo_lab(0, PPOConfig.fast_cartpole(seed=0, total_timesteps=8192))
    run_sb3(0, args.sb3_eval_every, total_timesteps=2048)

    _race.compare(args.seeds, run_ppo_lab, lambda seed: run_sb3(seed, args.sb3_eval_every),
                  goal=f"a deterministic evaluation mean >= {SOLVED_RETURN:.0f}")


if __name__ == "__main__":
    main()
