"""The PPO trainer: it learns, it logs, and it treats episode ends correctly."""
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import ppo_lab.algos.ppo as train_module
import ppo_lab.exercises.build_ppo as build_ppo_module
from ppo_lab.models.actor_critic import ActorCritic
from ppo_lab.envs import BatchedCartPole
from ppo_lab.exercises.ppo_in_practice import get_lr
from ppo_lab.algos.ppo import PPOConfig, evaluate, train_ppo
from ppo_lab.exercises.trpo import categorical_kl

HISTORY_KEYS = {
    "update", "global_step", "learning_rate", "policy_loss", "value_loss", "entropy", "clip_fraction",
    "approx_kl", "explained_variance", "episode_returns", "mean_episode_return", "wall_time",
}  # fmt: skip


class CounterEnv(gym.Env):
    """Observation [k, 0, 0, 0] after k steps; the episode ends after `length` steps,
    by termination or (with truncate=True) by a time limit."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 3, truncate: bool = False):
        self.length, self.truncate, self.count = length, truncate, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        return self._obs(), {}

    def step(self, action):
        self.count += 1
        ended = self.count == self.length
        return self._obs(), 1.0, ended and not self.truncate, ended and self.truncate, {}

    def _obs(self):
        return np.array([self.count, 0, 0, 0], dtype=np.float32)


def counter_vec_env(num_envs=2, autoreset_mode=AutoresetMode.NEXT_STEP, **kwargs):
    return SyncVectorEnv([lambda: CounterEnv(**kwargs)] * num_envs, autoreset_mode=autoreset_mode)


def tiny_config(**changes):
    """One update (unless total_timesteps says otherwise) on a small rollout."""
    config = {**dict(num_envs=2, num_steps=8, num_minibatches=2, num_epochs=1, seed=0), **changes}
    config.setdefault("total_timesteps", config["num_envs"] * config["num_steps"])
    return PPOConfig(**config)


class Spy:
    """Wraps a function of ppo_lab.algos.ppo (or of ``module``) and records the arguments of every call."""

    def __init__(self, monkeypatch, name, module=train_module):
        self.calls, self.function = [], getattr(module, name)
        monkeypatch.setattr(module, name, self)

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.function(*args, **kwargs)


def solve_cartpole(seed):
    """Train fast_cartpole until a deterministic evaluation mean reaches 475 (of 500); returns the
    updates it took, that evaluation and one on other start states."""
    torch.manual_seed(seed)
    agent = ActorCritic()
    evaluations = []

    def evaluate_and_stop_when_solved(row):
        evaluations.append(round(float(np.mean(evaluate(agent, episodes=20, seed=1000))), 1))
        return evaluations[-1] >= 475

    train_ppo(PPOConfig.fast_cartpole(seed=seed), progress=False, agent=agent, callback=evaluate_and_stop_when_solved)
    return len(evaluations), evaluations[-1], round(float(np.mean(evaluate(agent, episodes=20, seed=2000))), 1)


# A seeded run's trajectory depends on the CPU's floating-point kernels: judge five seeds. Measured
# here (AMD EPYC), seeds 1-5 reach 475 after 8, 8, 10, 16, 5 of the 50 updates, then score 467,
# 469, 482, 500, 473 on other start states (seeds 1-10: 5-21 updates, 467-500). Asserting >= 4 of 5
# seeds reach 475 within the 50 updates and keep >= 400 on other start states.
@pytest.mark.slow
def test_fast_config_solves_cartpole_on_most_seeds():
    results = {seed: solve_cartpole(seed) for seed in range(1, 6)}
    solved = [seed for seed, (_, evaluation, other_starts) in results.items()
              if evaluation >= 475 and other_starts >= 400]
    assert len(solved) >= 4, f"(updates, evaluation, other start states) per seed: {results}"


def test_default_config_is_the_seed_tutorials():
    config = PPOConfig()
    assert (config.clip_epsilon, config.learning_rate, config.num_epochs, config.num_minibatches) == (0.2, 3e-4, 10, 32)
    assert (config.gamma, config.gae_lambda, config.entropy_coef, config.value_coef) == (0.99, 0.95, 0.01, 0.5)
    assert (config.max_grad_norm, config.num_steps, config.num_envs) == (0.5, 2048, 8)
    assert config.norm_adv and config.anneal_lr and config.target_kl is None


@pytest.mark.parametrize(
    "field, value",
    [("clip_epsilon", 0.0), ("clip_epsilon", 1.0), ("gamma", 1.5), ("gae_lambda", -0.1), ("learning_rate", 0.0),
     ("num_envs", 0), ("num_steps", 2.5), ("num_minibatches", True), ("target_kl", 0.0), ("entropy_coef", -1.0),
     ("total_timesteps", 10)],
)  # fmt: skip
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        PPOConfig(**{field: value})


def test_env_size_must_match_config():
    with pytest.raises(ValueError, match="num_envs"):
        train_ppo(tiny_config(num_envs=2), BatchedCartPole(3), progress=False)


def test_history_rows():
    config = tiny_config(num_envs=4, num_steps=64, num_epochs=2, total_timesteps=3 * 256)
    rows = []
    agent, history = train_ppo(config, progress=False, callback=rows.append)
    assert isinstance(agent, ActorCritic)
    assert rows == history and len(history) == 3
    for i, row in enumerate(history):
        assert set(row) == HISTORY_KEYS
        assert row["update"] == i + 1
        assert row["global_step"] == (i + 1) * 256
        assert row["learning_rate"] == pytest.approx(get_lr(i, 3, config.learning_rate))
        assert all(isinstance(row[key], float) for key in HISTORY_KEYS - {"update", "global_step", "episode_returns"})
        assert 0.0 <= row["clip_fraction"] <= 1.0 and row["approx_kl"] >= 0.0 and row["entropy"] > 0.0
        assert row["episode_returns"] and all(1 <= r <= 500 for r in row["episode_returns"])
        assert row["mean_episode_return"] == pytest.approx(np.mean(row["episode_returns"]))
    assert history[0]["wall_time"] < history[1]["wall_time"] < history[2]["wall_time"]


def test_callback_returning_true_stops_training():
    _, history = train_ppo(tiny_config(total_timesteps=16 * 5), progress=False, callback=lambda row: row["update"] == 2)
    assert len(history) == 2


def test_target_kl_stops_the_epochs_early(monkeypatch):
    spy = Spy(monkeypatch, "ppo_objective_with_diagnostics", module=build_ppo_module)  # called by ppo_update's loss
    config = tiny_config(num_steps=64, num_epochs=10, num_minibatches=4, learning_rate=0.05, target_kl=1e-6)
    train_ppo(config, progress=False)
    assert 0 < len(spy.calls) < 10 * 4


def test_same_seed_same_run():
    config = tiny_config(num_steps=32, num_epochs=2, total_timesteps=128)
    (agent_a, history_a), (agent_b, history_b) = (train_ppo(config, progress=False) for _ in range(2))
    assert [row["policy_loss"] for row in history_a] == [row["policy_loss"] for row in history_b]
    assert all(torch.equal(a, b) for a, b in zip(agent_a.parameters(), agent_b.parameters()))


@pytest.mark.parametrize("autoreset_mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_runs_on_gymnasium_vector_envs(autoreset_mode):
    env = gym.make_vec(
        "CartPole-v1", num_envs=4, vectorization_mode="sync", vector_kwargs={"autoreset_mode": autoreset_mode}
    )
    _, history = train_ppo(tiny_config(num_envs=4, num_steps=128, total_timesteps=3 * 512), env, progress=False)
    assert len(history) == 3
    returns = [r for row in history for r in row["episode_returns"]]
    assert len(returns) >= 10 and all(1 <= r <= 500 for r in returns)
    assert all(math.isfinite(row["policy_loss"]) for row in history)


def test_default_gymnasium_make_vec_is_next_step():
    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    _, history = train_ppo(tiny_config(num_steps=64, total_timesteps=128), env, progress=False)
    assert history[-1]["episode_returns"]


def _optimised_observations(monkeypatch, agent):
    """Records the observations the policy sees while gradients are on (the optimisation phase)."""
    seen = []
    policy = agent.policy

    def recording_policy(obs):
        if torch.is_grad_enabled():
            seen.append(obs.clone())
        return policy(obs)

    monkeypatch.setattr(agent, "policy", recording_policy)
    return seen


def test_next_step_reset_steps_are_masked_out(monkeypatch):
    # Episodes of 3 steps. With NEXT_STEP autoreset each env's 8 rollout steps are:
    # obs counts 0, 1, 2 (ends), 3 (reset step: action ignored), 0, 1, 2 (ends), 3 (reset step).
    agent = ActorCritic()
    seen = _optimised_observations(monkeypatch, agent)
    gae_spy = Spy(monkeypatch, "compute_gae")
    _, history = train_ppo(tiny_config(), counter_vec_env(), progress=False, agent=agent)
    counts = torch.cat(seen)[:, 0]
    assert len(counts) == 2 * 6  # 2 envs x 6 real transitions, not 2 x 8
    assert sorted(counts.tolist()) == [0.0] * 4 + [1.0] * 4 + [2.0] * 4
    dones = gae_spy.calls[0][0][2]
    assert dones[:, 0].tolist() == [0, 0, 1, 0, 0, 0, 1, 0]
    assert history[0]["episode_returns"] == [3.0] * 4  # reset steps add nothing to a return


def test_same_step_rollouts_have_no_reset_steps(monkeypatch):
    agent = ActorCritic()
    seen = _optimised_observations(monkeypatch, agent)
    _, history = train_ppo(tiny_config(), counter_vec_env(autoreset_mode=AutoresetMode.SAME_STEP), progress=False, agent=agent)
    counts = torch.cat(seen)[:, 0]
    assert len(counts) == 2 * 8
    assert history[0]["episode_returns"] == [3.0] * 4  # episodes ended at steps 3 and 6


def _record_gae_inputs(monkeypatch, agent, probe_obs):
    """Records compute_gae's inputs, and V(probe_obs) under the critic that collected the rollout."""
    seen = {}
    compute_gae = train_module.compute_gae

    def recording_compute_gae(rewards, values, dones, last_value, *args):
        with torch.no_grad():
            seen["probe_values"] = agent.value(probe_obs)
        seen.update(rewards=rewards.clone(), dones=dones.clone(), last_value=last_value.clone())
        return compute_gae(rewards, values, dones, last_value, *args)

    monkeypatch.setattr(train_module, "compute_gae", recording_compute_gae)
    return seen


@pytest.mark.parametrize("autoreset_mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("truncate", [False, True])
def test_truncation_is_bootstrapped_termination_is_not(monkeypatch, autoreset_mode, truncate):
    # Episodes of 3 steps that end by termination or by a time limit (truncation).
    gamma = 0.9
    agent = ActorCritic()
    final_obs, obs_after_rollout = (3.0, 0, 0, 0), (2.0 if autoreset_mode is AutoresetMode.SAME_STEP else 0.0, 0, 0, 0)
    seen = _record_gae_inputs(monkeypatch, agent, torch.tensor([final_obs, obs_after_rollout]))
    env = counter_vec_env(autoreset_mode=autoreset_mode, truncate=truncate)
    _, history = train_ppo(tiny_config(gamma=gamma), env, progress=False, agent=agent)

    value_final, value_after_rollout = seen["probe_values"].tolist()
    ended = seen["dones"] == 1
    expected_ended = [False, False, True, False, False, True, False, False]  # SAME_STEP: ends at steps 3, 6
    if autoreset_mode is AutoresetMode.NEXT_STEP:
        expected_ended = [False, False, True, False, False, False, True, False]  # a reset step after each end
    assert ended[:, 0].tolist() == expected_ended and torch.equal(ended[:, 0], ended[:, 1])
    # A time limit is bootstrapped with V(final obs) inside the reward; a termination is not.
    expected_end_reward = 1.0 + gamma * value_final if truncate else 1.0
    assert seen["rewards"][ended] == pytest.approx(torch.full((4,), expected_end_reward), abs=1e-6)
    assert torch.all(seen["rewards"][~ended] <= 1.0)  # 1, or 0 for NEXT_STEP reset steps
    # The rollout's end is bootstrapped from V of the observation after the last step.
    assert seen["last_value"] == pytest.approx(torch.full((2,), value_after_rollout), abs=1e-6)
    assert history[0]["episode_returns"] == [3.0] * 4  # returns are the env's rewards, not bootstraps


class AlwaysLeft:
    def act(self, obs, deterministic=True):
        return torch.zeros(len(obs), dtype=torch.long)


def test_evaluate_returns_one_return_per_episode():
    returns = evaluate(AlwaysLeft(), episodes=7, seed=0)
    assert len(returns) == 7
    # Always pushing left, the pole falls to the right after 8-11 steps.
    assert all(isinstance(r, float) and 8 <= r <= 11 for r in returns)
    assert returns == evaluate(AlwaysLeft(), episodes=7, seed=0)


def test_evaluate_on_fewer_envs_than_episodes_and_on_gymnasium():
    ours = evaluate(AlwaysLeft(), 3, episodes=10, seed=0)
    assert len(ours) == 10 and all(8 <= r <= 11 for r in ours)
    env = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    theirs = evaluate(AlwaysLeft(), env, episodes=10, seed=0)
    assert len(theirs) == 10 and all(8 <= r <= 11 for r in theirs)


def test_evaluate_counts_each_envs_first_episodes_only():
    # Env 0 always ends its episode after 3 steps; with 2 envs and 2 episodes the answer must be
    # one episode of each env, not the first two episodes to finish (both from the fast env).
    env = SyncVectorEnv([lambda: CounterEnv(length=3), lambda: CounterEnv(length=7)])
    assert sorted(evaluate(AlwaysLeft(), env, episodes=2)) == [3.0, 7.0]


@pytest.mark.parametrize("episodes", [0, -3, 2.0, True])
def test_evaluate_bad_episodes(episodes):
    with pytest.raises(ValueError, match="episodes"):
        evaluate(AlwaysLeft(), episodes=episodes)


# --- PPOConfig.objective: the same trainer runs vanilla PG and PPO-KL (chapter 4's method table) ---

def _tiny(**changes) -> PPOConfig:
    return PPOConfig.fast_cartpole(**{"num_envs": 16, "num_steps": 16, "num_minibatches": 1, "num_epochs": 1,
                                      "total_timesteps": 3 * 256, **changes})


def test_pg_objective_equals_the_clip_objective_for_a_single_step_per_rollout():
    # With one step per rollout every ratio is 1, where PPO-Clip's gradient IS the policy gradient.
    torch.set_num_threads(1)
    pg_agent, _ = train_ppo(_tiny(objective="pg"), progress=False)
    clip_agent, _ = train_ppo(_tiny(objective="clip"), progress=False)
    kl_agent, _ = train_ppo(_tiny(objective="kl", num_epochs=2), progress=False)
    for pg_param, clip_param in zip(pg_agent.parameters(), clip_agent.parameters()):
        torch.testing.assert_close(pg_param, clip_param, rtol=1e-4, atol=1e-5)
    moved = any(not torch.allclose(a, b) for a, b in zip(kl_agent.actor.parameters(), clip_agent.actor.parameters()))
    assert moved  # a guard: the objective option really changes the update


def test_kl_objective_adapts_beta_after_every_update(monkeypatch):
    calls = []

    def spy(beta, kl, target_kl):
        calls.append((beta, kl, target_kl))
        return beta * 2

    monkeypatch.setattr(train_module, "adaptive_beta", spy)
    train_ppo(_tiny(objective="kl", num_epochs=2, kl_beta=0.5, kl_target=0.02), progress=False)
    assert [beta for beta, _, _ in calls] == [0.5, 1.0, 2.0]  # one call per update, each result used next
    assert all(kl >= 0 and target == 0.02 for _, kl, target in calls)
    calls.clear()
    train_ppo(_tiny(objective="clip"), progress=False)
    assert calls == []


def test_kl_objective_adapts_beta_from_the_kl_the_whole_update_produced(monkeypatch):
    # The PPO paper adapts beta from KL(pi_old || pi_new) measured after the update, over the whole
    # rollout. The approx_kl logged during the epochs is not it: it averages minibatch steps taken
    # while the policy had barely moved (exactly 0 at the first step), so it under-measures.
    used = []
    monkeypatch.setattr(train_module, "adaptive_beta", lambda beta, kl, target_kl: used.append(kl) or beta)
    rollouts = []

    class RecordingCollector(train_module.RolloutCollector):
        def collect(self, *args, **kwargs):
            rollouts.append(super().collect(*args, **kwargs))
            return rollouts[-1]

    monkeypatch.setattr(train_module, "RolloutCollector", RecordingCollector)
    torch.manual_seed(0)
    agent = ActorCritic()
    after_update = []

    def measure_after_update(row):  # called once the update is over: the agent is the updated policy
        with torch.no_grad():
            new_logits = agent.policy(rollouts[-1].obs).logits
            after_update.append(categorical_kl(rollouts[-1].logits, new_logits).mean().item())

    _, history = train_ppo(_tiny(objective="kl", num_epochs=4), progress=False, agent=agent,
                           callback=measure_after_update)
    assert len(used) == len(history) == 3
    assert used == pytest.approx(after_update, rel=1e-5, abs=1e-9)
    during = [row["approx_kl"] for row in history]
    assert all(kl_after > kl_during for kl_after, kl_during in zip(after_update, during)), (after_update, during)


@pytest.mark.parametrize("changes, field", [
    ({"objective": "trpo"}, "objective"),
    ({"objective": "pg", "num_epochs": 4}, "num_epochs"),
    ({"kl_beta": 0.0}, "kl_beta"),
    ({"kl_target": -0.01}, "kl_target"),
])
def test_bad_objective_settings_name_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        PPOConfig(**changes)


def test_gae_fn_replaces_the_advantage_estimator():
    calls = []

    def my_gae(rewards, values, dones, last_value, gamma, gae_lambda):
        calls.append((rewards.shape, gamma, gae_lambda))
        return train_module.compute_gae(rewards, values, dones, last_value, gamma, gae_lambda)

    train_ppo(tiny_config(total_timesteps=32, gamma=0.9, gae_lambda=0.5), progress=False, gae_fn=my_gae)
    assert calls == [((8, 2), 0.9, 0.5)] * 2
