"""Chapter 7: the Gaussian policy's log-probability and entropy, running moments, and PPO on
continuous actions (the Gaussian actor-critic, the rollout's clipping, the trainer's switches)."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Normal

from ppo_lab.models.actor_critic import ActorCritic, GaussianActorCritic, ObsNormalizer
from ppo_lab.exercises.continuous import gaussian_entropy, gaussian_log_prob, update_running_moments
from ppo_lab.envs import BatchedPendulum
from ppo_lab.algos.rollout import RewardScaler, RolloutCollector, agent_for, env_and_agent
from ppo_lab.algos.ppo import PPOConfig, evaluate, train_ppo


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Networks this small only lose from a second thread (on a busy machine, 100x), and a fixed
    thread count keeps seeded results reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

# --- gaussian_log_prob and gaussian_entropy: torch.distributions.Normal is the reference ---


@pytest.mark.parametrize("batch, dim", [(1, 1), (1, 3), (7, 1), (32, 4)])
@pytest.mark.parametrize("per_state_std", [False, True])
def test_gaussian_log_prob_matches_torch_normal(batch, dim, per_state_std):
    gen = torch.Generator().manual_seed(batch * 10 + dim)
    mean = torch.randn(batch, dim, generator=gen, dtype=torch.float64, requires_grad=True)
    log_std = (torch.randn(*((batch, dim) if per_state_std else (dim,)), generator=gen, dtype=torch.float64) - 0.5)
    log_std.requires_grad_(True)
    actions = mean.detach() + 3 * torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    got = gaussian_log_prob(mean, log_std, actions)
    expected = Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    assert got.shape == (batch,)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # differentiable in mean and log_std, with Normal's gradients
    grads = torch.autograd.grad(got.sum(), [mean, log_std])
    expected_grads = torch.autograd.grad(expected.sum(), [mean, log_std])
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_gaussian_log_prob_float32_and_far_tails():
    mean, log_std = torch.zeros(3, 2), torch.tensor([-3.0, 2.0])
    actions = torch.tensor([[0.0, 0.0], [1.0, -50.0], [-4.0, 300.0]])
    expected = Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, actions), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape", [(1,), (3,), (5, 1), (5, 3)])
def test_gaussian_entropy_matches_torch_normal(shape):
    log_std = torch.linspace(-2, 1, int(np.prod(shape)), dtype=torch.float64).reshape(shape)
    got = gaussian_entropy(log_std)
    assert got.shape == shape[:-1]
    torch.testing.assert_close(got, Normal(torch.zeros(shape, dtype=torch.float64), log_std.exp()).entropy().sum(-1))


def test_gaussian_functions_do_not_modify_their_inputs():
    mean, log_std, actions = torch.randn(4, 2), torch.randn(2), torch.randn(4, 2)
    copies = [t.clone() for t in (mean, log_std, actions)]
    gaussian_log_prob(mean, log_std, actions)
    gaussian_entropy(log_std)
    assert all(torch.equal(a, b) for a, b in zip((mean, log_std, actions), copies))


@pytest.mark.parametrize(
    "mean, log_std, actions, problem",
    [
        (torch.zeros(4), torch.zeros(1), torch.zeros(4), "mean must be 2-D"),
        (torch.zeros(4, 2), torch.zeros(2), torch.zeros(4, 3), "shape mismatch: mean"),
        (torch.zeros(4, 2), torch.zeros(3), torch.zeros(4, 2), r"log_std must have shape \[D\] = \[2\]"),
        (torch.zeros(4, 2), torch.zeros(3, 2), torch.zeros(4, 2), r"or \[B, D\] = \[4, 2\]"),
        (torch.zeros(4, 2), torch.zeros(2), torch.tensor([[0.0, float("nan")]] * 4), "actions contains NaN"),
        (torch.zeros(4, 2), torch.tensor([0.0, float("inf")]), torch.zeros(4, 2), "log_std contains NaN or inf"),
        (torch.zeros(4, 2), torch.zeros(2), [[0.0, 0.0]] * 4, "actions must be a torch.Tensor"),
    ],
)
def test_gaussian_log_prob_bad_inputs(mean, log_std, actions, problem):
    with pytest.raises(ValueError, match=problem):
        gaussian_log_prob(mean, log_std, actions)


@pytest.mark.parametrize("log_std, problem", [(torch.zeros(()), "log_std must be 1-D or 2-D"),
                                              (torch.tensor([float("nan")]), "NaN"),
                                              (torch.zeros(2, 2, 2), "1-D or 2-D")])  # fmt: skip
def test_gaussian_entropy_bad_inputs(log_std, problem):
    with pytest.raises(ValueError, match=problem):
        gaussian_entropy(log_std)


# --- update_running_moments: numpy's mean and variance over all the data are the reference ---


@pytest.mark.parametrize("sample_shape", [(), (3,), (2, 3)])
def test_running_moments_equal_the_moments_of_the_concatenated_data(sample_shape):
    rng = np.random.default_rng(0)
    chunks = [rng.normal(5.0, 3.0, (size, *sample_shape)) for size in (1, 1, 7, 100, 1, 31)]
    mean, var, count = torch.zeros(sample_shape, dtype=torch.float64), torch.ones(sample_shape, dtype=torch.float64), 0
    seen = []
    for chunk in chunks:
        mean, var, count = update_running_moments(mean, var, count, torch.from_numpy(chunk))
        seen.append(chunk)
        everything = np.concatenate(seen)
        np.testing.assert_allclose(mean.numpy(), everything.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(var.numpy(), everything.var(axis=0), rtol=1e-10)  # population variance
        assert isinstance(count, float) and count == len(everything)
        assert mean.shape == sample_shape and var.shape == sample_shape


def test_running_moments_count_zero_ignores_the_old_statistics():
    batch = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
    mean, var, count = update_running_moments(torch.tensor([100.0, -5.0]), torch.tensor([7.0, 9.0]), 0, batch)
    assert mean.tolist() == [2.0, 20.0] and var.tolist() == [1.0, 100.0] and count == 2.0


def test_running_moments_huge_batch_into_tiny_counts_and_back():
    rng = np.random.default_rng(1)
    first, huge = rng.normal(0.0, 1.0, (2, 3)), rng.normal(1e3, 1e-2, (200_000, 3))  # far apart, very different spreads
    mean, var, count = update_running_moments(torch.from_numpy(first.mean(0)), torch.from_numpy(first.var(0)), 2,
                                              torch.from_numpy(huge))  # fmt: skip
    everything = np.concatenate([first, huge])
    np.testing.assert_allclose(mean.numpy(), everything.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var.numpy(), everything.var(0), rtol=1e-9)
    # one sample into a billion: the mean moves by delta / (n + 1), the variance stays finite and close
    mean, var, count = update_running_moments(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
                                              1e9, torch.full((1, 3), 1e3, dtype=torch.float64))  # fmt: skip
    torch.testing.assert_close(mean, torch.full((3,), 1e3 / (1e9 + 1), dtype=torch.float64))
    torch.testing.assert_close(var, torch.full((3,), (1e9 + 1e6 * 1e9 / (1e9 + 1)) / (1e9 + 1), dtype=torch.float64))
    assert count == 1e9 + 1


def test_running_moments_accept_a_tensor_count_and_do_not_modify_inputs():
    mean, var, count, batch = torch.zeros(2), torch.ones(2), torch.tensor(4.0), torch.randn(5, 2)
    copies = [t.clone() for t in (mean, var, count, batch)]
    new_mean, new_var, new_count = update_running_moments(mean, var, count, batch)
    assert new_count == 9.0 and isinstance(new_count, float)
    assert all(torch.equal(a, b) for a, b in zip((mean, var, count, batch), copies))
    assert new_mean.data_ptr() != mean.data_ptr() and new_var.data_ptr() != var.data_ptr()


@pytest.mark.parametrize(
    "mean, var, count, batch, problem",
    [
        (torch.zeros(3), torch.ones(3), 0, torch.zeros(5, 2), r"mean must have the shape of one sample.*\[2\]"),
        (torch.zeros(2), torch.ones(3), 0, torch.zeros(5, 2), "shape mismatch: mean"),
        (torch.zeros(2), torch.ones(2), 0, torch.zeros(()), "batch must be"),
        (torch.zeros(2), torch.ones(2), 0, torch.zeros(0, 2), "batch is empty"),
        (torch.zeros(2), torch.ones(2), 0, torch.tensor([[0.0, float("nan")]]), "batch contains NaN"),
        (torch.tensor([0.0, float("inf")]), torch.ones(2), 0, torch.zeros(5, 2), "mean contains NaN or inf"),
        (torch.zeros(2), torch.tensor([1.0, -0.5]), 0, torch.zeros(5, 2), "var must be >= 0"),
        (torch.zeros(2), torch.ones(2), -1, torch.zeros(5, 2), "count must be >= 0"),
        (torch.zeros(2), torch.ones(2), float("nan"), torch.zeros(5, 2), "count must be finite"),
        (torch.zeros(2), torch.ones(2), True, torch.zeros(5, 2), "count must be a number"),
        (torch.zeros(2), torch.ones(2), torch.ones(2), torch.zeros(5, 2), "count must be a number"),
    ],
)
def test_running_moments_bad_inputs(mean, var, count, batch, problem):
    with pytest.raises(ValueError, match=problem):
        update_running_moments(mean, var, count, batch)


# --- the Gaussian actor-critic ---


def test_gaussian_policy_is_the_chapters_gaussian():
    torch.manual_seed(0)
    agent = GaussianActorCritic(3, 2, log_std_init=-0.5)
    obs = torch.randn(6, 3)
    policy = agent.policy(obs)
    actions = policy.sample()
    assert actions.shape == (6, 2) and policy.log_prob(actions).shape == (6,) and policy.entropy().shape == (6,)
    mean = agent.actor(obs)
    torch.testing.assert_close(policy.log_prob(actions), gaussian_log_prob(mean, agent.log_std, actions))
    torch.testing.assert_close(policy.entropy(), gaussian_entropy(agent.log_std).expand(6))
    assert torch.equal(agent.act(obs, deterministic=True), mean.detach())
    assert agent.log_std.tolist() == [-0.5, -0.5]
    assert agent.value(obs).shape == (6,)


def test_obs_normalizer_normalises_with_the_running_moments_and_is_saved():
    norm = ObsNormalizer(2)
    obs = torch.tensor([[1.0, 100.0], [3.0, 300.0]])
    assert torch.equal(norm(obs), obs.clamp(-10, 10))  # before any update: mean 0, var 1
    norm.update(obs)
    torch.testing.assert_close(norm(obs), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), atol=1e-6, rtol=0)
    agent = GaussianActorCritic(normalize_obs=True)
    assert {"obs_norm.mean", "obs_norm.var", "obs_norm.count"} <= set(agent.state_dict())
    assert "obs_norm.mean" not in dict(agent.named_parameters())  # the optimizer never moves it


@pytest.mark.parametrize("kwargs, problem", [({"action_dim": 0}, "action_dim"), ({"normalize_obs": 1}, "normalize_obs"),
                                             ({"log_std_init": float("nan")}, "log_std_init")])  # fmt: skip
def test_gaussian_actor_critic_bad_arguments(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        GaussianActorCritic(**kwargs)


# --- the rollout: the env gets clipped actions, the rollout keeps the samples ---


class RecordingPendulum(BatchedPendulum):
    def step(self, actions):
        self.received = getattr(self, "received", []) + [actions.clone()]
        return super().step(actions)


def test_rollout_keeps_the_samples_and_the_env_gets_them_clipped():
    torch.manual_seed(0)
    env = RecordingPendulum(8, seed=0)
    agent = GaussianActorCritic(log_std_init=1.0)  # sigma = 2.7: many samples outside [-2, 2]
    rollout = RolloutCollector(env, seed=0).collect(agent, num_steps=25)
    assert rollout.actions.shape == (200, 1) and rollout.actions.dtype == torch.float32 and rollout.logits is None
    assert (rollout.actions.abs() > 2).float().mean() > 0.2
    received = torch.stack(env.received).flatten(0, 1)
    assert torch.equal(received, rollout.actions.clamp(-2.0, 2.0))
    torch.testing.assert_close(rollout.log_probs, agent.policy(rollout.obs).log_prob(rollout.actions).detach())


def test_rollout_on_a_gymnasium_pendulum_clips_too():
    env = gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync")
    torch.manual_seed(0)
    rollout = RolloutCollector(env, seed=0).collect(GaussianActorCritic(log_std_init=1.0), num_steps=210)
    # NEXT_STEP autoreset: the step after each env's 200th is a reset step, left out
    assert len(rollout) == 2 * 209 and len(rollout.episode_returns) == 2
    assert all(-16.3 * 200 <= r < 0 for r in rollout.episode_returns)


def test_bootstrap_truncated_false_treats_the_time_limit_as_a_termination():
    """Env 0 is cut by the time limit at step 1 of a 3-step rollout. With gae_lambda = 0 each
    advantage is one TD error, so the two settings differ exactly there, by gamma * V(final_obs)."""
    gamma, rollouts = 0.9, {}
    torch.manual_seed(0)
    agent = GaussianActorCritic(log_std_init=1.0)
    for bootstrap in (True, False):
        env = BatchedPendulum(2, seed=0)
        collector = RolloutCollector(env, seed=0, bootstrap_truncated=bootstrap)
        env.elapsed_steps = torch.tensor([198, 0])
        torch.manual_seed(1)  # the same actions in both rollouts
        rollouts[bootstrap] = collector.collect(agent, num_steps=3, gamma=gamma, gae_lambda=0.0)
    bootstrapped, terminated = rollouts[True], rollouts[False]
    assert torch.equal(bootstrapped.actions, terminated.actions)
    replay = BatchedPendulum(2, seed=0)
    replay.reset(seed=0)
    replay.elapsed_steps = torch.tensor([198, 0])
    actions = bootstrapped.actions.reshape(3, 2, 1)
    replay.step(actions[0])
    _, _, _, truncated, info = replay.step(actions[1])
    assert truncated.tolist() == [True, False]
    expected = torch.zeros(6)
    expected[1 * 2 + 0] = gamma * agent.value(info["final_obs"][:1]).item()  # [T, N] flattened: t * N + n
    torch.testing.assert_close(bootstrapped.advantages - terminated.advantages, expected)
    with pytest.raises(ValueError, match="bootstrap_truncated must be True or False"):
        RolloutCollector(BatchedPendulum(2), bootstrap_truncated=0)


def test_train_ppo_passes_bootstrap_truncated_to_its_rollouts():
    # Staggered starts: about one env in six reaches the time limit within a 32-step rollout.
    config = tiny_pendulum(stagger_starts=True, num_envs=16, total_timesteps=3 * 512)
    _, bootstrapped = train_ppo(config, progress=False)
    _, terminated = train_ppo(config.replace(bootstrap_truncated=False), progress=False)
    assert [row["value_loss"] for row in bootstrapped] != [row["value_loss"] for row in terminated]
    _, again = train_ppo(config, progress=False)
    assert [row["value_loss"] for row in bootstrapped] == [row["value_loss"] for row in again]
    with pytest.raises(ValueError, match="bootstrap_truncated"):
        tiny_pendulum(bootstrap_truncated="no")


def test_stagger_starts_spreads_the_envs_and_reports_only_whole_episodes():
    torch.manual_seed(0)
    env = BatchedPendulum(64, seed=0)
    collector = RolloutCollector(env, seed=0, stagger_starts=True)
    start = env.elapsed_steps.clone()
    assert start.min() >= 0 and start.max() < 200 and len(start.unique()) > 30
    rollout = collector.collect(GaussianActorCritic(), num_steps=200)
    # every env ended its cut-short first episode within 200 steps (not reported); those that
    # started at step 0 ended a whole one (reported, with a whole episode's return)
    assert len(rollout.episode_returns) == int((start == 0).sum())
    assert not collector.cut_short.any()
    assert len(collector.collect(GaussianActorCritic(), num_steps=200).episode_returns) == 64
    with pytest.raises(ValueError, match="stagger_starts needs one of ppo_lab's envs"):
        RolloutCollector(gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync"), stagger_starts=True)


def test_reward_scaler_divides_by_the_std_of_the_discounted_return():
    """Two rollouts of 3 steps in 2 envs. The std is that of every discounted return so far (the
    rollout's own included, reset steps left out); a return restarts after an episode's end and
    runs on from one rollout into the next."""
    scaler, gamma = RewardScaler(2), 0.5
    rewards = torch.tensor([[1.0, -2.0], [1.0, 0.0], [1.0, 4.0], [1.0, -1.0], [0.0, 3.0], [1.0, 2.0]])
    dones = torch.zeros(6, 2)
    dones[1, 0] = 1.0  # env 0's episode ends at step 1 ...
    valid = torch.ones(6, 2, dtype=torch.bool)
    valid[2, 0] = False  # ... and step 2 is its NEXT_STEP reset step
    expected_returns = torch.tensor([[1.0, -2.0], [1.5, -1.0], [1.0, 3.5], [1.5, 0.75], [0.75, 3.375], [1.375, 3.6875]])
    for rollout in (slice(0, 3), slice(3, 6)):
        scaled = scaler(rewards[rollout], dones[rollout], valid[rollout], gamma)
        seen = expected_returns[: rollout.stop][valid[: rollout.stop]]
        torch.testing.assert_close(scaled, rewards[rollout] / seen.var(correction=0).sqrt())
    assert scaler.count == 11.0


# --- the trainer: one code path for both kinds of action ---


def tiny_pendulum(**changes) -> PPOConfig:
    return PPOConfig(**{**dict(env="Pendulum", num_envs=4, num_steps=32, num_minibatches=2, num_epochs=2,
                               total_timesteps=3 * 128, seed=0), **changes})  # fmt: skip


def test_train_ppo_builds_a_gaussian_agent_for_pendulum():
    agent, history = train_ppo(tiny_pendulum(hidden=16), progress=False)
    assert isinstance(agent, GaussianActorCritic) and agent.actor[0].out_features == 16
    assert len(history) == 3 and all(np.isfinite(row["policy_loss"]) for row in history)


def test_norm_obs_feeds_every_rollout_to_the_normaliser_after_its_update(monkeypatch):
    batches = []
    update = ObsNormalizer.update

    def recording_update(self, obs):
        batches.append(obs.clone())
        update(self, obs)

    monkeypatch.setattr(ObsNormalizer, "update", recording_update)
    config = tiny_pendulum(norm_obs=True)
    agent, _ = train_ppo(config, progress=False)
    assert [len(b) for b in batches] == [128] * 3
    everything = torch.cat(batches).double()
    torch.testing.assert_close(agent.obs_norm.mean.double(), everything.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(agent.obs_norm.var.double(), everything.var(0, correction=0), rtol=1e-5, atol=1e-6)
    assert agent.obs_norm.count.item() == 3 * 128


def test_norm_obs_and_scale_rewards_work_for_cartpole_too():
    config = PPOConfig.fast_cartpole(num_envs=8, num_steps=16, total_timesteps=3 * 128, norm_obs=True,
                                     scale_rewards=True)  # fmt: skip
    agent, history = train_ppo(config, progress=False)
    assert isinstance(agent, ActorCritic) and agent.obs_norm.count.item() == 3 * 128
    assert all(1 <= r <= 500 for row in history for r in row["episode_returns"])  # returns in the env's units


def test_scale_rewards_keeps_episode_returns_in_env_units():
    _, history = train_ppo(tiny_pendulum(scale_rewards=True, num_steps=100, total_timesteps=2 * 400), progress=False)
    returns = [r for row in history for r in row["episode_returns"]]
    assert len(returns) == 4 and all(-16.3 * 200 <= r < -100 for r in returns)


def test_config_and_agent_must_agree_and_kl_needs_discrete_actions():
    with pytest.raises(ValueError, match="norm_obs"):
        train_ppo(tiny_pendulum(norm_obs=True), agent=GaussianActorCritic(), progress=False)
    with pytest.raises(ValueError, match="norm_obs"):
        train_ppo(tiny_pendulum(), agent=GaussianActorCritic(normalize_obs=True), progress=False)
    with pytest.raises(ValueError, match="objective='kl' needs discrete actions"):
        train_ppo(tiny_pendulum(objective="kl"), progress=False)
    for field, value in (("env", "Acrobot"), ("norm_obs", "yes"), ("scale_rewards", 1), ("stagger_starts", None),
                         ("hidden", 0)):
        with pytest.raises(ValueError, match=field):
            tiny_pendulum(**{field: value})


def test_agent_for_an_action_space_it_cannot_handle_says_so():
    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    env.single_action_space = gym.spaces.MultiBinary(3)
    with pytest.raises(ValueError, match="no actor-critic here for action space MultiBinary"):
        agent_for(env)


class ConstantTorque:
    def __init__(self, torque):
        self.torque = torque

    def act(self, obs, deterministic=True):
        return torch.full((len(obs), 1), self.torque)


def test_evaluate_a_continuous_policy_clips_its_actions():
    returns = evaluate(ConstantTorque(2.0), "Pendulum", episodes=5, seed=0)
    assert len(returns) == 5 and all(-16.3 * 200 <= r < 0 for r in returns)
    assert evaluate(ConstantTorque(50.0), "Pendulum", episodes=5, seed=0) == returns
    assert evaluate(ConstantTorque(50.0), BatchedPendulum(5), episodes=5, seed=0) == returns
    with pytest.raises(ValueError, match="env must be one of"):
        evaluate(ConstantTorque(1.0), "Acrobot", episodes=5)


def test_evaluate_the_gaussian_agent_deterministically_is_its_mean_action(monkeypatch):
    agent = GaussianActorCritic()
    seen = []
    act = agent.act
    monkeypatch.setattr(agent, "act", lambda obs, deterministic: seen.append(deterministic) or act(obs, deterministic))
    a = evaluate(agent, "Pendulum", episodes=3, seed=1)
    assert a == evaluate(agent, "Pendulum", episodes=3, seed=1) and set(seen) == {True}


@pytest.mark.slow
def test_fast_pendulum_learns_on_most_seeds():
    """PPOConfig.fast_pendulum on three seeds (not those it was tuned on, nor bench/'s), each
    evaluated after every update (20 deterministic episodes) until the mean reaches -200; random
    torques score about -1,240. On 24 tuning seeds every run got there within 21k-55k env steps of
    its 120k (these three: 26k-38k, ~7 s together). Passing needs two seeds of three, so one
    unlucky seed cannot fail the test, and each has a 2x margin in steps."""
    results = {}
    for seed in (21, 22, 23):
        config = PPOConfig.fast_pendulum(seed=seed)
        _, agent = env_and_agent(config)
        scores = []

        def evaluate_and_stop_when_solved(row):
            scores.append(float(np.mean(evaluate(agent, "Pendulum", episodes=20, seed=1000 + seed))))
            return scores[-1] >= -200

        _, history = train_ppo(config, progress=False, agent=agent, callback=evaluate_and_stop_when_solved)
        results[seed] = (max(scores), history[-1]["global_step"])
    solved = [seed for seed, (best, _) in results.items() if best >= -200]
    report = ", ".join(f"seed {seed}: best {best:.0f} after {steps:,} steps" for seed, (best, steps) in results.items())
    assert len(solved) >= 2, f"fewer than 2 of 3 seeds reached -200: {report}"
