"""BatchedCartPole must be CartPole-v1, exactly, just many at once."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from ppo_lab.envs import BatchedCartPole
from ppo_lab.envs.cartpole import MAX_EPISODE_STEPS


def _copy_state_in(batched: BatchedCartPole, i: int, env: gym.Env) -> None:
    batched.state[i] = torch.from_numpy(np.asarray(env.unwrapped.state, dtype=np.float64))
    batched.elapsed_steps[i] = 0


def test_matches_gymnasium_step_for_step():
    """16 gymnasium envs vs one BatchedCartPole(16): same start states, same actions, >= 20,000 steps."""
    num_envs, steps = 16, 1250
    rng = np.random.default_rng(0)
    # A decent controller with a different share of random actions per env: the careful envs
    # reach the 500-step time limit, the careless ones let the pole fall.
    random_action_prob = np.r_[np.linspace(0.0, 0.1, num_envs // 2), np.linspace(0.3, 0.7, num_envs // 2)]
    envs = [gym.make("CartPole-v1") for _ in range(num_envs)]
    batched = BatchedCartPole(num_envs, seed=0)
    batched.reset()
    obs = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)])
    for i, env in enumerate(envs):
        _copy_state_in(batched, i, env)
    terminations = truncations = 0
    for _ in range(steps):
        greedy = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
        actions = np.where(rng.random(num_envs) < random_action_prob, rng.integers(0, 2, num_envs), greedy)
        b_obs, b_reward, b_terminated, b_truncated, info = batched.step(torch.from_numpy(actions))
        for i, env in enumerate(envs):
            o, r, terminated, truncated, _ = env.step(int(actions[i]))
            np.testing.assert_array_equal(info["final_obs"][i].numpy(), o)
            assert b_reward[i].item() == r
            assert b_terminated[i].item() == terminated
            assert b_truncated[i].item() == truncated
            assert info["_final_obs"][i].item() == (terminated or truncated)
            if terminated or truncated:
                terminations += terminated
                truncations += truncated
                o, _ = env.reset()
                _copy_state_in(batched, i, env)
            else:
                np.testing.assert_array_equal(b_obs[i].numpy(), o)
            obs[i] = o
    assert num_envs * steps >= 10_000
    assert terminations >= 50, terminations
    assert truncations >= 10, truncations


def test_observation_and_state_dtypes():
    env = BatchedCartPole(3, seed=0)
    obs, info = env.reset()
    assert obs.dtype == torch.float32 and obs.shape == (3, 4)
    assert env.state.dtype == torch.float64 and env.state.shape == (3, 4)
    assert info == {}
    obs, reward, terminated, truncated, info = env.step(torch.tensor([0, 1, 0]))
    assert obs.dtype == torch.float32 and reward.dtype == torch.float32
    assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
    assert info["final_obs"].shape == (3, 4) and info["_final_obs"].dtype == torch.bool
    assert torch.equal(obs, env.state.float())


def test_spaces_and_metadata_match_gymnasium():
    env = BatchedCartPole(5)
    reference = gym.make("CartPole-v1")
    assert env.single_observation_space == reference.observation_space
    assert env.single_action_space == reference.action_space
    assert env.observation_space.shape == (5, 4)
    assert env.action_space == gym.spaces.MultiDiscrete([2] * 5)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs.numpy())


def test_reset_is_seeded_and_uniform_in_range():
    a, b, c = BatchedCartPole(64, seed=7), BatchedCartPole(64, seed=7), BatchedCartPole(64, seed=8)
    obs_a, obs_b, obs_c = a.reset()[0], b.reset()[0], c.reset()[0]
    assert torch.equal(obs_a, obs_b)
    assert not torch.equal(obs_a, obs_c)
    assert obs_a.abs().max() <= 0.05 and obs_a.abs().max() > 0.04
    # reset(seed=...) re-seeds: the same seed gives the same states again
    assert torch.equal(a.reset(seed=3)[0], c.reset(seed=3)[0])
    assert not torch.equal(a.reset(seed=3)[0], a.reset()[0])


def test_same_seed_same_trajectories_including_autoresets():
    envs = [BatchedCartPole(8, seed=11) for _ in range(2)]
    for env in envs:
        env.reset()
    actions = torch.zeros(8, dtype=torch.long)  # always left: episodes end quickly and reset
    resets = 0
    for _ in range(100):
        (obs_a, *_, info_a), (obs_b, *_, info_b) = (env.step(actions) for env in envs)
        assert torch.equal(obs_a, obs_b)
        resets += int(info_a["_final_obs"].sum())
    assert resets >= 8


def test_termination_returns_reset_obs_and_final_obs():
    env = BatchedCartPole(3, seed=0)
    env.reset()
    # env 1: the pole is about to fall to the right; pushing left makes it fall
    env.state = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.2090, 2.0], [0.0, 0.0, 0.01, 0.0]])
    obs, reward, terminated, truncated, info = env.step(torch.tensor([1, 0, 1]))
    assert terminated.tolist() == [False, True, False]
    assert truncated.tolist() == [False, False, False]
    assert info["_final_obs"].tolist() == [False, True, False]
    assert reward.tolist() == [1.0, 1.0, 1.0]
    assert info["final_obs"][1, 2] > 12 * 2 * np.pi / 360  # the angle that ended it
    assert obs[1].abs().max() <= 0.05  # already the next episode's first observation
    assert env.elapsed_steps.tolist() == [1, 0, 1]
    # where nothing ended, final_obs is simply the next observation
    assert torch.equal(info["final_obs"][[0, 2]], obs[[0, 2]])


def test_time_limit_truncates_at_500_steps():
    env = BatchedCartPole(2, seed=0)
    env.reset()
    env.elapsed_steps = torch.tensor([MAX_EPISODE_STEPS - 1, 0])
    state_before = env.state.clone()
    obs, reward, terminated, truncated, info = env.step([1, 1])
    assert truncated.tolist() == [True, False]
    assert terminated.tolist() == [False, False]
    assert info["_final_obs"].tolist() == [True, False]
    assert info["final_obs"][0, 0].item() == pytest.approx(state_before[0, 0].item() + 0.02 * state_before[0, 1].item())
    assert not torch.equal(obs[0], info["final_obs"][0])
    assert env.elapsed_steps.tolist() == [0, 1]


def test_truncated_and_terminated_together_like_time_limit_wrapper():
    env = BatchedCartPole(1, seed=0)
    env.reset()
    env.state = torch.tensor([[2.39, 1.0, 0.0, 0.0]])  # leaves the track this step
    env.elapsed_steps = torch.tensor([MAX_EPISODE_STEPS - 1])
    _, _, terminated, truncated, _ = env.step([1])
    assert terminated.item() and truncated.item()


def test_full_episode_is_500_steps_under_a_good_controller():
    env = BatchedCartPole(4, seed=0)
    obs, _ = env.reset()
    ends = []
    for step in range(1, 2 * MAX_EPISODE_STEPS + 1):
        obs, _, terminated, truncated, _ = env.step((obs[:, 2] + 0.5 * obs[:, 3] > 0).long())
        if (terminated | truncated).any():
            ends.append((step, terminated.tolist(), truncated.tolist()))
    assert ends == [(500, [False] * 4, [True] * 4), (1000, [False] * 4, [True] * 4)]


@pytest.mark.parametrize(
    "make_actions",
    [
        lambda: torch.tensor([0, 1, 1]),
        lambda: torch.tensor([0, 1, 1], dtype=torch.int32),
        lambda: np.array([0, 1, 1]),
        lambda: [0, 1, 1],
    ],
)
def test_actions_as_tensor_numpy_or_list(make_actions):
    reference = BatchedCartPole(3, seed=0)
    reference.reset()
    expected = reference.step(torch.tensor([0, 1, 1]))[0]
    env = BatchedCartPole(3, seed=0)
    env.reset()
    assert torch.equal(env.step(make_actions())[0], expected)


@pytest.mark.parametrize("num_envs", [0, -1, 2.5, True, "3", None])
def test_bad_num_envs(num_envs):
    with pytest.raises(ValueError, match="num_envs"):
        BatchedCartPole(num_envs)


@pytest.mark.parametrize(
    "actions",
    [
        torch.tensor([0, 1]),  # too few
        torch.tensor([[0], [1], [0]]),  # [N, 1] instead of [N]
        torch.tensor([0, 2, 1]),  # not an action
        torch.tensor([0, -1, 1]),
        torch.tensor([0.0, 1.0, 1.0]),  # floats
        np.array([True, False, True]),
    ],
)
def test_bad_actions(actions):
    env = BatchedCartPole(3, seed=0)
    env.reset()
    with pytest.raises(ValueError, match="actions"):
        env.step(actions)


def test_bad_state_seed_and_options():
    env = BatchedCartPole(3)
    with pytest.raises(ValueError, match="state"):
        env.state = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="elapsed_steps"):
        env.elapsed_steps = torch.tensor([-1, 0, 0])
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=-1)
    with pytest.raises(ValueError, match="seed"):
        BatchedCartPole(3, seed=1.5)
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"low": -0.1})


def test_step_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="reset"):
        BatchedCartPole(2).step(torch.tensor([0, 1]))
