"""The package's layout rule and the convention the three trainers share (ppo_lab/algos/config.py)."""
from __future__ import annotations

import copy
import dataclasses
import pkgutil

import pytest
import torch

import ppo_lab
from ppo_lab import PPOConfig, TRPOConfig, train_ppo, train_trpo
from ppo_lab.algos.config import TrainerConfig, column
from ppo_lab.algos.rlhf import RLHFConfig, RewardModel, rlhf_ppo
from ppo_lab.checks import registry
from ppo_lab.models import tiny_lm

CONFIGS = (PPOConfig, TRPOConfig, RLHFConfig)
SHARED = ("learning_rate", "clip_epsilon", "num_epochs", "num_minibatches", "value_coef", "max_grad_norm")


def test_every_graded_reference_lives_in_exercises_and_is_exported():
    for check in registry.REGISTRY.values():
        reference = check.reference
        if reference is None or reference.__module__.startswith("ppo_lab.checks"):
            continue  # derivation checks keep their references with the check
        assert reference.__module__.startswith("ppo_lab.exercises."), (check.grade_id, reference.__module__)
        assert getattr(ppo_lab, reference.__name__) is reference, f"ppo_lab.{reference.__name__} is not exported"


def test_top_level_holds_only_the_subpackages_and_shared_helpers():
    modules = {m.name: m.ispkg for m in pkgutil.iter_modules(ppo_lab.__path__)}
    assert {name for name, package in modules.items() if not package} == {"validate", "style"}
    assert {name for name, package in modules.items() if package} == {
        "algos", "checks", "envs", "exercises", "experiments", "models", "widgets"}  # and data/, the shipped files


def test_same_knob_same_name_in_every_ppo_trainer():
    for config in (PPOConfig, RLHFConfig):
        assert issubclass(config, TrainerConfig)
        names = {f.name for f in dataclasses.fields(config)}
        assert set(SHARED) <= names, f"{config.__name__} lacks {set(SHARED) - names}"
    assert issubclass(TRPOConfig, TrainerConfig)
    for name in ("gamma", "gae_lambda", "seed"):
        assert all(name in {f.name for f in dataclasses.fields(c)} for c in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name, value", [("gamma", 1.5), ("gamma", 0.0), ("gae_lambda", -0.1), ("gamma", "0.9")])
def test_bad_values_are_named(config, name, value):
    with pytest.raises(ValueError, match=name):
        config(**{name: value})


@pytest.mark.parametrize("config, name, value", [
    (PPOConfig, "learning_rate", 0.0), (RLHFConfig, "learning_rate", -1e-3), (PPOConfig, "num_epochs", 0),
    (RLHFConfig, "num_epochs", 2.5), (RLHFConfig, "clip_epsilon", 1.0), (PPOConfig, "clip_epsilon", 0.0),
    (RLHFConfig, "value_coef", -0.1), (TRPOConfig, "max_kl", 0.0), (TRPOConfig, "norm_adv", 1),
    (PPOConfig, "norm_obs", "yes"), (RLHFConfig, "num_minibatches", 65),
])
def test_each_kind_of_check_fires(config, name, value):
    with pytest.raises(ValueError, match=name):
        config(**{name: value})


def test_replace_validates_like_a_new_config():
    assert RLHFConfig().replace(kl_coef=0.5).kl_coef == 0.5
    with pytest.raises(ValueError, match="kl_coef"):
        RLHFConfig().replace(kl_coef=-1.0)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def tiny_rlhf_run(callback):
    sft, vocab = tiny_lm.load_sft_model(verbose=False)
    reference = copy.deepcopy(sft).requires_grad_(False)
    reward_model = RewardModel(sft)
    return rlhf_ppo(copy.deepcopy(sft), reference, reward_model, vocab,
                    RLHFConfig(num_updates=2, batch_size=8, num_minibatches=2), callback=callback)


RUNS = {
    "ppo": lambda callback: train_ppo(PPOConfig.fast_cartpole(total_timesteps=3 * 1024), progress=False,
                                      callback=callback)[1],
    "trpo": lambda callback: train_trpo(TRPOConfig(num_envs=16, num_steps=16, total_timesteps=3 * 256),
                                        progress=False, callback=callback)[1],
    "rlhf": tiny_rlhf_run,
}


@pytest.mark.parametrize("trainer", sorted(RUNS))
def test_trainers_share_thread_handling_history_and_callback(trainer, two_threads):
    threads_seen = []

    def callback(row):
        threads_seen.append(torch.get_num_threads())
        return row["update"] == 2  # True stops the run

    history = RUNS[trainer](callback)
    assert threads_seen == [1, 1], "the trainer must run on one torch thread"
    assert torch.get_num_threads() == 2, "and restore the caller's setting"
    assert [row["update"] for row in history] == [1, 2], "a callback returning True stops the run"
    assert column(history, "update") == [1, 2]
    times = column(history, "wall_time")
    assert 0 < times[0] <= times[1]
    with pytest.raises(KeyError, match="no 'rewards'"):
        column(history, "rewards")
