"""BatchedPendulum must be Pendulum-v1, exactly, just many at once."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from ppo_lab.envs import BatchedPendulum, make_env
from ppo_lab.envs.pendulum import MAX_TORQUE, PENDULUM_MAX_EPISODE_STEPS


def _copy_state_in(batched: BatchedPendulum, i: int, env: gym.Env) -> None:
    batched.state[i] = torch.from_numpy(np.asarray(env.unwrapped.state, dtype=np.float64))
    batched.elapsed_steps[i] = 0


def _test_actions(rng: np.random.Generator, obs: np.ndarray) -> np.ndarray:
    """``[16, 1]`` torques: random ones in [-3, 3] (a third outside the bounds, which both envs
    clip), energy pumping at 2.5 (drives the speed into its +/-8 clip), a PD controller that
    balances once up, and now and then +/-inf or 1e6."""
    num_envs = len(obs)
    cos, sin, speed = obs.T
    pump = 2.5 * np.sign(speed + 1e-3)
    balance = np.clip(-10.0 * np.arctan2(sin, cos) - 2.0 * speed, -3, 3)
    kind = np.arange(num_envs) % 4
    actions = np.where(kind == 0, rng.uniform(-3, 3, num_envs), np.where(kind == 1, pump, np.where(
        kind == 2, np.where(cos > 0.5, balance, pump), balance)))  # fmt: skip
    extreme = rng.random(num_envs) < 0.01
    actions[extreme] = rng.choice([np.inf, -np.inf, 1e6, -1e6], int(extreme.sum()))
    return actions[:, None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_gymnasium_step_for_step(dtype):
    """16 gymnasium envs vs one BatchedPendulum(16): same start states, same actions, 10,400 steps.

    Tolerance: none. The float64 state equals gymnasium's bit for bit, the float32 observation
    too, and the float32 reward is gymnasium's float64 reward rounded to float32 (|difference|
    <= 1e-6: float32 rounding of values up to 16.3). Actions keep their dtype, as in gymnasium: a
    float32 torque enters the cost and the dynamics as float32 there too.
    """
    num_envs, steps = 16, 650
    rng = np.random.default_rng(0)
    envs = [gym.make("Pendulum-v1") for _ in range(num_envs)]
    batched = BatchedPendulum(num_envs, seed=0)
    batched.reset()
    obs = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)])
    for i, env in enumerate(envs):
        _copy_state_in(batched, i, env)
    truncations = clipped_actions = clipped_speeds = 0
    for _ in range(steps):
        actions = _test_actions(rng, obs).astype(dtype)
        clipped_actions += int((np.abs(actions) > MAX_TORQUE).sum())
        b_obs, b_reward, b_terminated, b_truncated, info = batched.step(torch.from_numpy(actions))
        for i, env in enumerate(envs):
            o, r, terminated, truncated, _ = env.step(actions[i])
            np.testing.assert_array_equal(info["final_obs"][i].numpy(), o)
            assert b_reward[i].item() == np.float32(r)
            assert not b_terminated[i].item() and not terminated
            assert b_truncated[i].item() == truncated
            assert info["_final_obs"][i].item() == truncated
            clipped_speeds += abs(o[2]) == 8.0
            if truncated:
                truncations += 1
                o, _ = env.reset()
                _copy_state_in(batched, i, env)
            else:
                np.testing.assert_array_equal(batched.state[i].numpy(), env.unwrapped.state)
                np.testing.assert_array_equal(b_obs[i].numpy(), o)
            obs[i] = o
    assert num_envs * steps >= 10_000
    assert truncations == num_envs * (steps // PENDULUM_MAX_EPISODE_STEPS)
    assert clipped_actions >= 1000 and clipped_speeds >= 100, (clipped_actions, clipped_speeds)


def test_one_env_follows_gymnasium_across_autoresets_from_the_same_seed():
    """With the same seed, BatchedPendulum(1) draws the same start states as gymnasium's resets,
    its own autoresets included: no state copied in."""
    batched, env = BatchedPendulum(1, seed=3), gym.make("Pendulum-v1")
    b_obs, _ = batched.reset()
    obs, _ = env.reset(seed=3)
    np.testing.assert_array_equal(b_obs[0].numpy(), obs)
    rng = np.random.default_rng(1)
    for _ in range(3 * PENDULUM_MAX_EPISODE_STEPS):
        action = rng.uniform(-2.5, 2.5, (1, 1)).astype(np.float32)
        b_obs, b_reward, _, b_truncated, info = batched.step(action)
        obs, reward, _, truncated, _ = env.step(action[0])
        np.testing.assert_array_equal(info["final_obs"][0].numpy(), obs)
        assert b_reward.item() == np.float32(reward) and b_truncated.item() == truncated
        if truncated:
            obs, _ = env.reset()
        np.testing.assert_array_equal(b_obs[0].numpy(), obs)


def test_observation_and_state_dtypes():
    env = BatchedPendulum(3, seed=0)
    obs, info = env.reset()
    assert obs.dtype == torch.float32 and obs.shape == (3, 3)
    assert env.state.dtype == torch.float64 and env.state.shape == (3, 2)
    assert info == {}
    assert torch.equal(obs, torch.stack([env.state[:, 0].cos(), env.state[:, 0].sin(), env.state[:, 1]], 1).float())
    obs, reward, terminated, truncated, info = env.step(torch.zeros(3, 1))
    assert obs.dtype == torch.float32 and reward.dtype == torch.float32 and reward.shape == (3,)
    assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
    assert info["final_obs"].shape == (3, 3) and info["_final_obs"].dtype == torch.bool


def test_spaces_and_metadata_match_gymnasium():
    env = BatchedPendulum(5)
    reference = gym.make("Pendulum-v1")
    assert env.single_observation_space == reference.observation_space
    assert env.single_action_space == reference.action_space
    assert env.observation_space.shape == (5, 3) and env.action_space.shape == (5, 1)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.observation_space.contains(env.reset(seed=1)[0].numpy())
    assert isinstance(make_env("Pendulum", 5), BatchedPendulum)


def test_reset_is_seeded_and_uniform_in_range():
    a, b, c = BatchedPendulum(256, seed=7), BatchedPendulum(256, seed=7), BatchedPendulum(256, seed=8)
    a.reset(), b.reset(), c.reset()
    assert torch.equal(a.state, b.state) and not torch.equal(a.state, c.state)
    theta, speed = a.state.T
    assert theta.abs().max() <= np.pi and theta.abs().max() > 3.0
    assert speed.abs().max() <= 1.0 and speed.abs().max() > 0.95
    assert torch.equal(a.reset(seed=3)[0], c.reset(seed=3)[0])


def test_every_episode_ends_by_truncation_after_200_steps():
    env = BatchedPendulum(4, seed=0)
    env.reset()
    ends = []
    for step in range(1, 2 * PENDULUM_MAX_EPISODE_STEPS + 1):
        _, _, terminated, truncated, info = env.step(torch.full((4, 1), 2.0))
        assert not terminated.any()
        if truncated.any():
            ends.append((step, truncated.tolist(), info["_final_obs"].tolist()))
    assert ends == [(200, [True] * 4, [True] * 4), (400, [True] * 4, [True] * 4)]


def test_autoreset_bookkeeping():
    env = BatchedPendulum(3, seed=0)
    env.reset()
    env.state = torch.tensor([[0.5, 7.9], [np.pi, 0.0], [-1.0, -2.0]], dtype=torch.float64)
    env.elapsed_steps = torch.tensor([PENDULUM_MAX_EPISODE_STEPS - 1, 0, 150])
    obs, _, terminated, truncated, info = env.step(torch.zeros(3, 1))
    assert truncated.tolist() == [True, False, False] and not terminated.any()
    assert info["_final_obs"].tolist() == [True, False, False]
    assert env.elapsed_steps.tolist() == [0, 1, 151]
    # env 0: final_obs is where the episode ended (speed 7.9 + 15 sin(0.5) * 0.05, clipped to 8) ...
    assert info["final_obs"][0, 2].item() == 8.0
    # ... and obs is already the next episode's first observation, from the new state
    theta, speed = env.state[0].numpy()
    assert abs(speed) <= 1.0
    assert obs[0].tolist() == np.array([np.cos(theta), np.sin(theta), speed], dtype=np.float32).tolist()
    assert torch.equal(info["final_obs"][1:], obs[1:])  # where nothing ended: the same observation


def test_reward_is_minus_the_cost_of_the_state_before_the_step():
    env = BatchedPendulum(4, seed=0)
    env.reset()
    # upright and still; upside down (3 pi wraps to -pi); spinning; a torque of 2 (clipped from 5)
    env.state = torch.tensor([[0.0, 0.0], [3 * np.pi, 0.0], [0.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    _, reward, *_ = env.step(torch.tensor([[0.0], [0.0], [0.0], [5.0]]))
    expected = [0.0, -np.pi**2, -0.1 * 16, -0.001 * 4]
    assert reward.tolist() == pytest.approx(expected, rel=1e-6)


def test_out_of_range_actions_are_clipped():
    def first_step(actions):
        env = BatchedPendulum(4, seed=5)
        env.reset()
        return env.step(actions)[:2]

    clipped = first_step(torch.tensor([[2.0], [-2.0], [2.0], [-2.0]]))
    for got, want in zip(first_step(torch.tensor([[3.0], [-7.5], [float("inf")], [-float("inf")]])), clipped):
        assert torch.equal(got, want)


@pytest.mark.parametrize(
    "make_actions",
    [
        lambda: torch.tensor([[0.5], [-1.0]]),
        lambda: torch.tensor([[0.5], [-1.0]], requires_grad=True),
        lambda: np.array([[0.5], [-1.0]], dtype=np.float32),
        lambda: torch.tensor([[0.5], [-1.0]], dtype=torch.float16),
    ],
)
def test_float32_actions_as_tensor_or_numpy(make_actions):
    reference = BatchedPendulum(2, seed=0)
    reference.reset()
    expected = reference.step(torch.tensor([[0.5], [-1.0]]))[:2]
    env = BatchedPendulum(2, seed=0)
    env.reset()
    for got, want in zip(env.step(make_actions())[:2], expected):
        assert torch.equal(got, want)


def test_float64_actions_stay_float64_like_gymnasium():
    # 0.1 is not a float32 number: the float64 torque gives (very slightly) different physics.
    def speed_after(actions):
        env = BatchedPendulum(1, seed=0)
        env.reset()
        env.step(actions)
        return env.state[0, 1].item()

    assert speed_after(torch.tensor([[0.1]], dtype=torch.float64)) == speed_after([[0.1]])
    assert speed_after(torch.tensor([[0.1]], dtype=torch.float64)) != speed_after(torch.tensor([[0.1]]))


@pytest.mark.parametrize(
    "actions, problem",
    [
        (torch.zeros(3), r"shape \[3, 1\]"),  # [N] instead of [N, 1]
        (torch.zeros(2, 1), r"shape \[3, 1\]"),
        (torch.zeros(3, 2), r"shape \[3, 1\]"),
        (torch.tensor([[0], [1], [2]]), "floating-point"),
        (np.array([[True], [False], [True]]), "floating-point"),
        (torch.tensor([[0.0], [float("nan")], [1.0]]), r"NaN \(envs \[1\]\)"),
    ],
)
def test_bad_actions(actions, problem):
    env = BatchedPendulum(3, seed=0)
    env.reset()
    with pytest.raises(ValueError, match=problem):
        env.step(actions)


def test_bad_state_seed_options_and_num_envs():
    env = BatchedPendulum(3)
    with pytest.raises(ValueError, match=r"state must have shape \[3, 2\]"):
        env.state = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"state must be finite.*\[2\]"):
        env.state = torch.tensor([[0.0, 0.0], [1.0, 0.0], [float("nan"), 0.0]])
    with pytest.raises(ValueError, match="elapsed_steps"):
        env.elapsed_steps = torch.tensor([0, -1, 0])
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=-1)
    with pytest.raises(ValueError, match="options are not supported by BatchedPendulum"):
        env.reset(options={"x_init": 1.0})
    with pytest.raises(ValueError, match="num_envs"):
        BatchedPendulum(0)
    with pytest.raises(ValueError, match="env must be one of"):
        make_env("Acrobot", 2)


def test_step_before_reset_is_an_error_and_a_written_state_counts_as_a_reset():
    with pytest.raises(RuntimeError, match="reset"):
        BatchedPendulum(2).step(torch.zeros(2, 1))
    env = BatchedPendulum(2)
    env.state = torch.zeros(2, 2)
    obs, reward, *_ = env.step(torch.zeros(2, 1))
    assert torch.equal(reward, torch.zeros(2)) and torch.equal(obs, torch.tensor([[1.0, 0.0, 0.0]] * 2))
