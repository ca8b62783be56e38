"""The rollout shared by the trainers: shapes, episode bookkeeping, and both autoreset modes.

The bootstrapping of truncations and the masking of NEXT_STEP reset steps are also tested through
``train_ppo`` (tests/test_train.py), on envs whose every step is known.
"""
import gymnasium
import pytest
import torch

from ppo_lab.models.actor_critic import ActorCritic
from ppo_lab.envs import BatchedCartPole
from ppo_lab.algos.rollout import RolloutCollector


def test_shapes_and_episode_bookkeeping():
    torch.manual_seed(0)
    rollout = RolloutCollector(BatchedCartPole(4, seed=0), seed=0).collect(ActorCritic(hidden=16), num_steps=100)
    assert len(rollout) == 400 and rollout.obs.shape == (400, 4) and rollout.logits.shape == (400, 2)
    assert torch.allclose(rollout.returns, rollout.advantages + rollout.values)
    # A random policy drops the pole within ~10-60 steps: several episodes end, each lasting >= 8 steps.
    assert len(rollout.episode_returns) >= 4 and min(rollout.episode_returns) >= 8
    assert torch.allclose(rollout.log_probs, torch.log_softmax(rollout.logits, -1).gather(1, rollout.actions[:, None])[:, 0])


def test_next_step_reset_steps_are_left_out_across_rollouts():
    # Gymnasium's default: the step after an episode ends only resets. Each end inside a rollout
    # costs that rollout one transition; an end at its last step costs the next rollout its first.
    torch.manual_seed(0)
    env = gymnasium.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
    collector, agent = RolloutCollector(env, seed=0), ActorCritic(hidden=16)
    pending = 0  # reset steps carried into this rollout
    for _ in range(3):
        rollout = collector.collect(agent, num_steps=40)
        ended_at_last_step = int(collector.next_is_reset_step.sum())
        assert len(rollout) == 40 * 3 - pending - (len(rollout.episode_returns) - ended_at_last_step)
        assert len(rollout.episode_returns) >= 1
        pending = ended_at_last_step


def test_bad_arguments():
    with pytest.raises(ValueError, match="vector env"):
        RolloutCollector(object())
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        RolloutCollector(BatchedCartPole(2)).collect(ActorCritic(), 0)
