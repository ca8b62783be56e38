"""Wall time to learn Pendulum-v1: ppo_lab's PPO vs Stable-Baselines3's PPO, both on the CPU.

    python -m bench.pendulum [--seeds 1 2 3 4 5] [--sb3-timesteps 200000]

"Solved" means: the mean return of 20 deterministic episodes (the mean action, clipped to the
torque bounds by the env) is >= -200. Random torques score about -1,240, a good swing-up -150.
Both agents are judged by the same ``is_solved`` (20 episodes in parallel in a BatchedPendulum
with a fixed seed, which matches Gymnasium's Pendulum-v1 exactly), after every policy update, and
the evaluation time counts in the wall time of both:

* ppo_lab: ``PPOConfig.fast_pendulum()`` on ``BatchedPendulum``, evaluated after every update.
* SB3 2.x: the RL-Zoo Pendulum-v1 hyperparameters (rl-baselines3-zoo hyperparams/ppo.yml: 4 envs x
  1,024 steps, minibatches of 64 (SB3's default), 10 epochs, gamma 0.9, GAE lambda 0.95, lr 1e-3,
  clip range 0.2, no entropy bonus, gSDE exploration resampled every 4 steps, 1e5 steps) on
  Gymnasium's Pendulum-v1, evaluated right after every update (every 4,096 env steps) by a
  callback that stops training once solved. The Zoo trains for 1e5 steps; the budget here is 2e5
  (``--sb3-timesteps``) so that a slow seed can still finish; a run that does not is marked.

As in bench/cartpole.py (whose helpers, bench/_race.py, this uses): the clock starts before the
agent and its environments are built, both use one torch thread, each seed runs ppo_lab and SB3
back to back after a short warm-up of each, and on a shared machine the ratios and the CPU column
mean more than absolute seconds.

Measured on 2026-11-26, seeds 1-5, on a quiet machine: both needed about the same env steps
(ppo_lab 22k-26k, SB3 20k-25k: five or six of its 4,096-step updates), and ppo_lab took 0.11 of
SB3's median wall time (1.0 s vs 8.9 s; per seed 7.4x-9.7x faster). The difference is cost per
step of learning: ppo_lab makes 20 Adam steps of 800 transitions per update where SB3 makes 640
of 64, and its rollout steps 64 pendulums in one array operation.
"""
from __future__ import annotations

import argparse

import torch

from bench import _race
from bench._race import Run
from ppo_lab.envs import BatchedPendulum
from ppo_lab.envs.pendulum import PENDULUM_MAX_EPISODE_STEPS
from ppo_lab.algos.ppo import PPOConfig

SOLVED_RETURN = -200.0
EVAL_EPISODES = 20
EVAL_SEED = 12345
SB3_TIMESTEPS = 200_000
SB3_ROLLOUT = 4 * 1024  # n_envs x n_steps: SB3's policy changes once per rollout


def is_solved(agent) -> bool:
    """Is the mean return of EVAL_EPISODES deterministic episodes >= SOLVED_RETURN?

    The episodes run in parallel, one per env, all 200 steps long. Pendulum's rewards are never
    positive, so the summed return of all episodes can only fall: once it is below the mark the
    answer is no, and the remaining steps are not played out (same answer, fewer steps).
    """
    env = BatchedPendulum(EVAL_EPISODES, seed=EVAL_SEED)
    obs, _ = env.reset()
    total, mark = 0.0, SOLVED_RETURN * EVAL_EPISODES
    for _ in range(PENDULUM_MAX_EPISODE_STEPS):
        obs, reward, *_ = env.step(agent.act(obs, deterministic=True))
        total += reward.double().sum().item()
        if total < mark:
            return False
    return True


def run_ppo_lab(seed: int, config: PPOConfig | None = None) -> Run:
    """ppo_lab's PPO with ``PPOConfig.fast_pendulum`` on BatchedPendulum, evaluated after every update."""
    config = PPOConfig.fast_pendulum(seed=seed) if config is None else config
    return _race.run_ppo_lab(config, is_solved)


def run_sb3(seed: int, total_timesteps: int = SB3_TIMESTEPS) -> Run:
    """Same measurement for SB3 PPO with the RL-Zoo hyperparameters for Pendulum-v1."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    def make_model():
        env = make_vec_env("Pendulum-v1", n_envs=4, seed=seed)
        return PPO(
            "MlpPolicy", env, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
            learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4,
            seed=seed, device="cpu", verbose=0,
        )  # fmt: skip

    return _race.run_sb3(make_model, is_solved, SB3_ROLLOUT, total_timesteps, first_eval=SB3_ROLLOUT + 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--sb3-timesteps", type=int, default=SB3_TIMESTEPS, help="SB3's budget of env steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    print("warming up ...", flush=True)
    run_ppo_lab(0, PPOConfig.fast_pendulum(seed=0, total_timesteps=16_384))
    run_sb3(0, total_timesteps=SB3_ROLLOUT)

    _race.compare(args.seeds, run_ppo_lab, lambda seed: run_sb3(seed, args.sb3_timesteps),
                  goal=f"a deterministic evaluation mean >= {SOLVED_RETURN:.0f}")


if __name__ == "__main__":
    main()
