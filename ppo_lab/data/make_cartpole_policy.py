"""Make ``cartpole_policy.pt``: the trained CartPole policy that chapter 1's oversized update destroys.

Run from the repository root: ``python -m ppo_lab.data.make_cartpole_policy`` (about 10 s on one core).
The file holds the ActorCritic's state_dict, the PPO settings it was trained with and its measured
return, so the chapter can say exactly what it starts from. It is shipped rather than trained in
the notebook so the demo starts from the same, verified policy whatever the trainer's defaults become.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ppo_lab.algos.ppo import PPOConfig, evaluate, train_ppo

OUTPUT = Path(__file__).with_name("cartpole_policy.pt")
# 128 carts x 32 steps per update, 4 epochs of 4 minibatches: a plain PPO setting that solves CartPole in 200k steps.
SETTINGS = dict(num_envs=128, num_steps=32, num_minibatches=4, num_epochs=4, learning_rate=2.5e-3, gamma=0.99,
                gae_lambda=0.9, entropy_coef=0.0, total_timesteps=200_000, anneal_lr=True, seed=1)
REQUIRED_RETURN = 400.0  # stochastic actions, 64 episodes: a policy worth destroying


def main() -> None:
    torch.set_num_threads(1)
    agent, history = train_ppo(PPOConfig(**SETTINGS), progress=True)
    torch.manual_seed(0)
    returns = evaluate(agent, episodes=64, deterministic=False, seed=0)
    mean_return = sum(returns) / len(returns)
    if mean_return < REQUIRED_RETURN:
        raise SystemExit(f"the trained policy returns {mean_return:.0f} < {REQUIRED_RETURN:.0f}: not saved")
    torch.save({"actor_critic": agent.state_dict(), "settings": SETTINGS, "mean_return": mean_return,
                "training_seconds": history[-1]["wall_time"]}, OUTPUT)
    print(f"saved {OUTPUT} (mean return {mean_return:.0f} over 64 episodes, trained in "
          f"{history[-1]['wall_time']:.1f} s)")


if __name__ == "__main__":
    main()
