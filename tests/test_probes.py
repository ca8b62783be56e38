"""Probe environments: the vector API of BatchedCartPole, the right answers they claim, and one
pass/fail line per probe that fails exactly the probes of the broken part."""
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from ppo_lab.algos.rollout import RolloutCollector
from ppo_lab.checks.build_ppo import _wrong_update
from ppo_lab.envs.probes import (PROBES, ActionProbe, ConstantRewardProbe, DiscountingProbe, ObservationActionProbe,
                                 ObservationProbe, ProbeEnv)
from ppo_lab.experiments.probes import judge_probe, probe_config, run_probe, run_probes
from ppo_lab.models.actor_critic import ActorCritic

VALUE_PROBES = ("ConstantRewardProbe", "ObservationProbe", "DiscountingProbe")
ACTION_PROBES = ("ActionProbe", "ObservationActionProbe")


def test_there_are_at_least_four_probes_each_saying_what_it_isolates():
    assert len(PROBES) >= 4
    for cls in PROBES.values():
        assert issubclass(cls, ProbeEnv) and cls.isolates


@pytest.mark.parametrize("name", list(PROBES))
def test_vector_api_like_batched_cartpole(name):
    env = PROBES[name](6, seed=0)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.single_observation_space.shape == (1,) and env.num_envs == 6
    obs, info = env.reset(seed=0)
    assert obs.shape == (6, 1) and obs.dtype == torch.float32 and info == {}
    actions = torch.zeros(6, dtype=torch.long)
    obs, reward, terminated, truncated, info = env.step(actions)
    assert obs.shape == (6, 1) and reward.shape == (6,) and reward.dtype == torch.float32
    assert terminated.dtype == torch.bool and not truncated.any()
    assert info["final_obs"].shape == (6, 1) and info["_final_obs"].shape == (6,)


def _episode(env_cls, actions=None, num_envs=4, seed=0):
    """One episode in every env: the observations seen and the rewards, step by step."""
    env = env_cls(num_envs, seed=seed)
    obs, _ = env.reset(seed=seed)
    seen, rewards = [obs[:, 0].clone()], []
    for t in range(env_cls.episode_length):
        action = torch.zeros(num_envs, dtype=torch.long) if actions is None else actions(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward.clone())
        done = terminated.all().item()
        assert done == (t == env_cls.episode_length - 1)
        if not done:
            seen.append(obs[:, 0].clone())
    return seen, rewards


def test_constant_reward_probe():
    seen, rewards = _episode(ConstantRewardProbe)
    assert seen[0].tolist() == [0.0] * 4 and rewards[0].tolist() == [1.0] * 4
    assert ConstantRewardProbe(1).true_values(0.9) == {0.0: 1.0}


def test_observation_probe_pays_the_observation():
    seen, rewards = _episode(ObservationProbe, num_envs=200)
    assert set(seen[0].tolist()) == {-1.0, 1.0}
    assert torch.equal(rewards[0], seen[0])
    assert ObservationProbe(1).true_values(0.9) == {1.0: 1.0, -1.0: -1.0}


def test_discounting_probe_pays_at_the_end_of_two_steps():
    seen, rewards = _episode(DiscountingProbe)
    assert [s.tolist() for s in seen] == [[0.0] * 4, [1.0] * 4]
    assert [r.tolist() for r in rewards] == [[0.0] * 4, [1.0] * 4]
    assert DiscountingProbe(1).true_values(0.5) == {0.0: 0.5, 1.0: 1.0}


def test_action_probe_pays_action_one():
    _, rewards = _episode(ActionProbe, actions=lambda obs: torch.tensor([0, 1, 1, 0]))
    assert rewards[0].tolist() == [-1.0, 1.0, 1.0, -1.0]


def test_observation_action_probe_pays_the_matching_action():
    _, matching = _episode(ObservationActionProbe, actions=lambda obs: (obs[:, 0] > 0).long(), num_envs=50)
    _, opposite = _episode(ObservationActionProbe, actions=lambda obs: (obs[:, 0] < 0).long(), num_envs=50)
    assert matching[0].tolist() == [1.0] * 50 and opposite[0].tolist() == [-1.0] * 50


def test_episodes_restart_by_themselves_and_are_seeded():
    env = ObservationProbe(8, seed=3)
    obs, _ = env.reset(seed=3)
    firsts = [obs[:, 0].tolist()]
    for _ in range(3):
        obs, _, terminated, _, info = env.step(torch.zeros(8, dtype=torch.long))
        assert terminated.all() and info["_final_obs"].all()
        firsts.append(obs[:, 0].tolist())
    again = ObservationProbe(8, seed=3)
    assert again.reset(seed=3)[0][:, 0].tolist() == firsts[0]
    assert len({tuple(f) for f in firsts}) > 1  # a new random observation after each reset


@pytest.mark.parametrize("actions, match", [(torch.tensor([0, 2]), "integers in"), (torch.tensor([0]), "shape"),
                                            (torch.tensor([0.0, 1.0]), "integers in")])
def test_bad_actions_are_named(actions, match):
    env = ActionProbe(2, seed=0)
    env.reset()
    with pytest.raises(ValueError, match=match):
        env.step(actions)


def test_the_rollout_collector_runs_on_a_probe():
    env = DiscountingProbe(4, seed=0)
    torch.manual_seed(0)
    rollout = RolloutCollector(env, seed=0).collect(ActorCritic(1, 1, 8), 6, gamma=0.5, gae_lambda=1.0)
    assert len(rollout) == 24 and rollout.obs.shape == (24, 1)
    assert rollout.episode_returns == [1.0] * 12  # two-step episodes, +1 each


def test_judge_probe_compares_with_the_right_answers():
    torch.manual_seed(0)
    agent = ActorCritic(1, 2, 8)
    with torch.no_grad():  # V = 1 everywhere, pi(1) = 1 everywhere
        agent.critic[-1].weight.zero_()
        agent.critic[-1].bias.fill_(1.0)
        agent.actor[-1].weight.zero_()
        agent.actor[-1].bias.copy_(torch.tensor([-20.0, 20.0]))
    passed, details = judge_probe(ActionProbe(1), agent, 0.5)
    assert passed and "V(0) = 1.000" in details and "pi(1 | 0) = 1.000" in details
    passed, details = judge_probe(ObservationActionProbe(1), agent, 0.5)
    assert not passed and "pi(0 | -1) = 0.000" in details


@pytest.mark.slow
def test_the_reference_update_passes_every_probe(one_thread):
    results = run_probes(verbose=False)
    assert [r.probe for r in results] == list(PROBES)
    assert all(r.passed for r in results), [r.line for r in results]
    assert all(r.line.startswith("PASS ") for r in results)


@pytest.mark.slow
@pytest.mark.parametrize("switches, failing", [
    ({"value_target": "advantages"}, VALUE_PROBES),
    ({"adv_index": "position"}, ACTION_PROBES),
    ({"entropy_sign": 1.0}, ()),  # no entropy bonus in the probes' setting: nothing to see
    ({"ratio_one": True}, ()),  # the probes cannot see this one: the diagnostics can (approx_kl = 0)
])
def test_a_broken_part_fails_its_probes(one_thread, switches, failing):
    broken = _wrong_update(**switches)
    results = {r.probe: r for r in run_probes(broken, verbose=False)}
    failed = {name for name, r in results.items() if not r.passed}
    assert failed >= set(failing), {name: r.line for name, r in results.items()}
    if switches.get("adv_index"):  # the critic is fine: the value probes pass
        assert not failed & set(VALUE_PROBES), {name: r.line for name, r in results.items()}
    if switches.get("ratio_one"):  # this version reports the true approx_kl, but its ratio never leaves 1
        assert not failed and all(row["clip_fraction"] == 0.0 for r in results.values() for row in r.history)


def test_an_update_that_never_steps_fails_every_probe(one_thread):
    def lazy(agent, optimizer, rollout, config):
        return {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clip_fraction": 0.0,
                "num_steps": 0}

    results = run_probes(lazy, config=probe_config(total_timesteps=256), verbose=False)
    assert not any(r.passed for r in results)
    assert all(r.line.startswith("FAIL ") for r in results)


def test_unknown_probe_is_named():
    with pytest.raises(ValueError, match="unknown probe"):
        run_probe("NoSuchProbe")


def test_probe_observations_are_what_the_docs_say():
    assert np.allclose(ConstantRewardProbe(3, seed=0).reset()[0].numpy(), 0.0)
