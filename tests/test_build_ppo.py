"""Chapter 6: ppo_loss and ppo_update (references), train_ppo's update_fn, the checks (the reference
passes, every catalogued mistake loses its item with its name), the silent-bugs exercise, and the
ablation's statistics and cached table."""
import copy
import math
import time
import types
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

import ppo_lab
from ppo_lab.algos.ppo import PPOConfig, train_ppo
from ppo_lab.algos.rollout import Rollout
from ppo_lab.checks import REGISTRY, get, verify
from ppo_lab.checks import build_ppo as checks
from ppo_lab.checks.protocol import Case
from ppo_lab.checks.runners import update_trace
from ppo_lab.checks.student import run_answer
from ppo_lab.experiments import ablations
from ppo_lab.exercises.build_ppo import STAT_KEYS, ppo_loss, ppo_update
from ppo_lab.models.actor_critic import ActorCritic

ROOT = Path(__file__).resolve().parents[1]
UPDATE_ITEMS = [gid for gid in REGISTRY if gid.startswith(("test_ppo_update", "test_fixed_ppo_update"))
                and "solves" not in gid]


def small_case(batch=32, minibatches=4, epochs=2, seed=0, **config):
    """An agent, a rollout it collected, a config and an Adam optimizer factory (as the checks build them)."""
    generator = torch.Generator().manual_seed(seed)
    return checks._update_case(generator, "test", batch=batch, minibatches=minibatches, epochs=epochs, **config)


def copy_of(function):
    """The same code under another name: the checks' tripwire only notices the reference itself."""
    clone = types.FunctionType(function.__code__.replace(co_name=f"{function.__name__}_copy"), function.__globals__,
                               function.__name__, function.__defaults__, function.__closure__)
    clone.__kwdefaults__ = function.__kwdefaults__
    return clone


def judged(grade_id, answer, hidden, seed=7):
    torch.manual_seed(seed)
    outputs, used_reference = run_answer(get(grade_id), answer, seed, hidden)
    return verify(grade_id, hidden, seed, outputs, used_reference)


# --- ppo_loss ---------------------------------------------------------------------------------------


def test_ppo_loss_is_the_combined_loss_by_hand():
    torch.manual_seed(0)
    agent = ActorCritic(3, 2, 8)
    obs, actions = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    old = agent.policy(obs).log_prob(actions).detach() + torch.tensor([0.3, -0.3, 0.0, 0.1, -0.05])
    advantages, returns = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]), torch.randn(5)
    out = ppo_loss(agent, obs, actions, old, advantages, returns, 0.2, 0.5, 0.01)
    assert set(out) == {"loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"}
    policy = agent.policy(obs)
    ratio = (policy.log_prob(actions) - old).exp()
    clip = -torch.min(ratio * advantages, ratio.clamp(0.8, 1.2) * advantages).mean()
    value = (agent.value(obs) - returns).pow(2).mean()
    entropy = policy.entropy().mean()
    torch.testing.assert_close(out["loss"], clip + 0.5 * value - 0.01 * entropy)
    assert out["policy_loss"] == pytest.approx(clip.item()) and out["value_loss"] == pytest.approx(value.item())
    assert out["entropy"] == pytest.approx(entropy.item())
    assert out["clip_fraction"] == pytest.approx(((ratio - 1).abs() > 0.2).float().mean().item())
    assert out["approx_kl"] == pytest.approx(((ratio - 1) - ratio.log()).mean().item(), abs=1e-7)
    assert all(isinstance(out[key], float) for key in STAT_KEYS)


def test_ppo_loss_reaches_every_parameter_and_uses_advantages_as_given():
    torch.manual_seed(1)
    agent = ActorCritic(3, 2, 8)
    obs, actions = torch.randn(6, 3), torch.randint(0, 2, (6,))
    old = agent.policy(obs).log_prob(actions).detach()
    advantages, returns = torch.randn(6) * 5 + 3, torch.randn(6)
    out = ppo_loss(agent, obs, actions, old, advantages, returns)
    grads = torch.autograd.grad(out["loss"], list(agent.parameters()), allow_unused=True)
    assert all(g is not None for g in grads)
    # At ratio 1 the policy loss is -mean(A): the advantages were not normalised inside.
    assert out["policy_loss"] == pytest.approx(-advantages.mean().item(), rel=1e-5)


def test_ppo_loss_value_clipping_extension():
    torch.manual_seed(2)
    agent = ActorCritic(3, 2, 8)
    obs, actions = torch.randn(8, 3), torch.randint(0, 2, (8,))
    old = agent.policy(obs).log_prob(actions).detach()
    returns, values = torch.randn(8) * 3, agent.value(obs).detach()
    plain = ppo_loss(agent, obs, actions, old, torch.randn(8), returns)
    clipped = ppo_loss(agent, obs, actions, old, torch.randn(8), returns, old_values=values)
    assert clipped["value_loss"] == pytest.approx(plain["value_loss"])  # V = V_old: the clip is inactive
    far = values + 5.0  # the critic "moved" far from these old values: its error counts from the clipped value
    clipped = ppo_loss(agent, obs, actions, old, torch.randn(8), returns, old_values=far)
    v = agent.value(obs)
    want = torch.max((v - returns) ** 2, (far + (v - far).clamp(-0.2, 0.2) - returns) ** 2).mean()
    assert clipped["value_loss"] == pytest.approx(want.item())


@pytest.mark.parametrize("change, match", [
    ({"returns": torch.zeros(4)}, "returns"), ({"obs": torch.zeros(5)}, "obs"),
    ({"clip_epsilon": 1.5}, "clip_epsilon"), ({"value_coef": -1.0}, "value_coef"),
    ({"advantages": torch.tensor([1.0, float("nan"), 0.0, 0.0, 0.0])}, "advantages"),
])
def test_ppo_loss_names_bad_inputs(change, match):
    agent = ActorCritic(3, 2, 8)
    kwargs = dict(agent=agent, obs=torch.zeros(5, 3), actions=torch.zeros(5, dtype=torch.long),
                  old_log_probs=torch.zeros(5), advantages=torch.zeros(5), returns=torch.zeros(5))
    with pytest.raises(ValueError, match=match):
        ppo_loss(**{**kwargs, **change})


# --- ppo_update -------------------------------------------------------------------------------------


def test_full_batch_update_is_num_epochs_plain_steps():
    case = small_case(minibatches=1, epochs=3, max_grad_norm=None)
    agent, rollout, config = (copy.deepcopy(case.kwargs[k]) for k in ("agent", "rollout", "config"))
    optimizer = case.kwargs["optimizer"](agent.parameters())
    result = ppo_update(agent, optimizer, rollout, config)
    by_hand = copy.deepcopy(case.kwargs["agent"])
    hand_optimizer = case.kwargs["optimizer"](by_hand.parameters())
    advantages = (rollout.advantages - rollout.advantages.mean()) / (rollout.advantages.std() + 1e-8)
    for _ in range(3):
        out = ppo_loss(by_hand, rollout.obs, rollout.actions, rollout.log_probs, advantages, rollout.returns,
                       config.clip_epsilon, config.value_coef, config.entropy_coef)
        hand_optimizer.zero_grad()
        out["loss"].backward()
        hand_optimizer.step()
    for mine, theirs in zip(agent.parameters(), by_hand.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
    assert result["num_steps"] == 3 and set(result) == {*STAT_KEYS, "num_steps"}


def test_every_transition_once_per_pass_in_num_minibatches():
    case = small_case(batch=30, minibatches=3, epochs=4)
    trace = update_trace(ppo_update, case)
    assert len(trace["steps"]) == 12 and trace["result"]["num_steps"] == 12
    for one_pass in range(4):
        rows = [trace["steps"][one_pass * 3 + k]["rows"].tolist() for k in range(3)]
        assert sorted(r for step in rows for r in step) == list(range(30))
        assert [len(step) for step in rows] == [10, 10, 10]


def test_gradients_are_clipped_before_each_step_and_none_means_no_clipping():
    case = small_case(max_grad_norm=0.05)
    for step in update_trace(ppo_update, case)["steps"]:
        assert step["grad"].norm().item() == pytest.approx(min(0.05, step["backward"].norm().item()), rel=1e-4)
    case = small_case(max_grad_norm=None)
    for step in update_trace(ppo_update, case)["steps"]:
        torch.testing.assert_close(step["grad"], step["backward"])


def test_target_kl_stops_right_after_the_step_that_exceeds_it():
    case = small_case(batch=64, minibatches=4, epochs=4, target_kl=0.004, lr=0.02)
    trace = update_trace(ppo_update, case)
    kls = [step["approx_kl"] for step in checks._replay(case, trace, need_grad=False)]
    assert len(kls) < 16 and kls[-1] > 0.004 and all(kl <= 0.004 for kl in kls[:-1])
    assert trace["result"]["num_steps"] == len(kls)
    assert trace["result"]["approx_kl"] == pytest.approx(np.mean(kls), rel=1e-4)


@pytest.mark.parametrize("change, match", [
    ({"optimizer": "other"}, "optimizer must hold"), ({"num_minibatches": 100}, "num_minibatches"),
    ({"rollout": "short"}, "rollout.obs has"),
])
def test_ppo_update_names_bad_inputs(change, match):
    case = small_case(batch=32)
    agent, rollout, config = (copy.deepcopy(case.kwargs[k]) for k in ("agent", "rollout", "config"))
    optimizer = torch.optim.Adam(ActorCritic(3, 3, 8).parameters()) if "optimizer" in change else \
        torch.optim.Adam(agent.parameters())
    if "num_minibatches" in change:
        config.num_minibatches = 100
    if "rollout" in change:
        rollout = Rollout(**{**rollout.__dict__, "obs": rollout.obs[:-1]})
    with pytest.raises(ValueError, match=match):
        ppo_update(agent, optimizer, rollout, config)


def test_ppo_update_and_ppo_loss_are_exported():
    assert ppo_lab.ppo_update is ppo_update and ppo_lab.ppo_loss is ppo_loss


# --- train_ppo's update_fn --------------------------------------------------------------------------


def tiny(**changes):
    return PPOConfig(**{**dict(num_envs=4, num_steps=16, num_minibatches=2, num_epochs=2, total_timesteps=192,
                               seed=0), **changes})


def test_train_ppo_calls_update_fn_once_per_rollout(one_thread):
    calls = []

    def spy(agent, optimizer, rollout, config):
        calls.append((type(agent).__name__, type(optimizer).__name__, len(rollout), config.num_epochs))
        return ppo_update(agent, optimizer, rollout, config)

    _, history = train_ppo(tiny(), progress=False, update_fn=spy)
    assert calls == [("ActorCritic", "Adam", 64, 2)] * 3 and len(history) == 3


def test_the_default_update_is_ppo_update(one_thread):
    (a, history_a), (b, history_b) = (train_ppo(tiny(), progress=False, update_fn=fn) for fn in (None, ppo_update))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert [row["approx_kl"] for row in history_a] == [row["approx_kl"] for row in history_b]


def test_history_rows_are_the_updates_means(one_thread):
    seen = []

    def spy(agent, optimizer, rollout, config):
        seen.append(ppo_update(agent, optimizer, rollout, config))
        return seen[-1]

    _, history = train_ppo(tiny(), progress=False, update_fn=spy)
    assert [{key: row[key] for key in STAT_KEYS} for row in history] == [{k: s[k] for k in STAT_KEYS} for s in seen]


def test_update_fn_must_report_the_means():
    with pytest.raises(ValueError, match="update_fn must return a dict with the keys"):
        train_ppo(tiny(), progress=False, update_fn=lambda agent, optimizer, rollout, config: {"loss": 0.0})


def test_own_update_fn_trains_ppo_clip_only():
    with pytest.raises(ValueError, match="objective='kl' trains with ppo_lab's ppo_update only"):
        train_ppo(tiny(objective="kl"), progress=False, update_fn=ppo_update)


def test_new_config_fields_are_checked():
    with pytest.raises(ValueError, match="adam_eps"):
        PPOConfig(adam_eps=0.0)
    with pytest.raises(ValueError, match="clip_value_loss"):
        PPOConfig(clip_value_loss=1)
    with pytest.raises(ValueError, match="max_grad_norm"):
        PPOConfig(max_grad_norm=0.0)
    assert PPOConfig(max_grad_norm=None).max_grad_norm is None


# --- the checks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("grade_id", UPDATE_ITEMS + ["test_ppo_loss"])
def test_the_reference_passes_visible_and_hidden(grade_id, one_thread):
    reference = copy_of(get(grade_id).reference)
    for hidden in (False, True):
        verdict = judged(grade_id, reference, hidden)
        assert verdict.passed, verdict.message


def test_the_reference_passes_whatever_permutation_it_draws(one_thread):
    reference = copy_of(ppo_update)
    for grade_id in ("test_ppo_update_minibatches", "test_ppo_update_norm_adv", "test_ppo_update_target_kl"):
        for seed in range(3):
            verdict = judged(grade_id, reference, True, seed=100 + seed)
            assert verdict.passed, verdict.message


MISTAKES = [(gid, m.name) for gid in UPDATE_ITEMS + ["test_ppo_loss"] for m in get(gid).mistakes]


@pytest.mark.parametrize("grade_id, mistake", MISTAKES, ids=[f"{g}-{m}" for g, m in MISTAKES])
def test_each_mistake_loses_its_item_with_its_name(grade_id, mistake, one_thread):
    wrong = next(m for m in get(grade_id).mistakes if m.name == mistake)
    verdict = judged(grade_id, wrong.implementation, hidden=True)
    assert not verdict.passed
    assert verdict.mistake == mistake, verdict.message
    assert wrong.message in verdict.message


@pytest.mark.parametrize("mistake", ["no_zero_grad", "clip_after_step", "whole_rollout_minibatches",
                                     "norm_over_rollout", "target_kl_ignored", "value_on_advantages",
                                     "entropy_wrong_sign"])
def test_the_issues_classic_mistakes_are_each_caught_somewhere(mistake):
    assert any(m.name == mistake for gid in UPDATE_ITEMS for m in get(gid).mistakes)


def test_an_unimplemented_update_and_one_that_never_steps_fail_with_a_reason():
    def stub(agent, optimizer, rollout, config):
        raise NotImplementedError

    def never_steps(agent, optimizer, rollout, config):
        return {key: 0.0 for key in STAT_KEYS} | {"num_steps": 0}

    for grade_id in UPDATE_ITEMS:
        assert "not implemented" in judged(grade_id, stub, False).message
        assert "no optimizer step" in judged(grade_id, never_steps, False).message


def test_the_solve_check_wants_two_of_three():
    case = get("test_ppo_update_solves_cartpole").cases(1, False)[0]
    judge = get("test_ppo_update_solves_cartpole").judge
    assert judge({"evaluations": [500.0, 480.0, None], "updates": [9, 12, 0]}, None, case) is None
    assert judge({"evaluations": [500.0, 20.0, 480.0], "updates": [9, 50, 12]}, None, case) is None
    problem = judge({"evaluations": [500.0, 300.0, 20.0], "updates": [9, 50, 50]}, None, case)
    assert "1 of 3 runs reached" in problem and "probes" in problem
    problem = judge({"evaluations": [500.0, 30.0, None], "updates": [9, 20, 0], "out_of_time": True}, None, case)
    assert "not run" in problem and "s the check allows" in problem
    assert [c.seed for c in case.kwargs["configs"]] == [1, 2, 3]
    hidden = get("test_ppo_update_solves_cartpole").cases(5, True)[0]
    assert all(c.seed >= 100 for c in hidden.kwargs["configs"]) and all(
        c == PPOConfig.fast_cartpole(seed=c.seed) for c in hidden.kwargs["configs"])


@pytest.mark.slow
def test_the_reference_update_solves_cartpole_in_the_check(one_thread):
    verdict = judged("test_ppo_update_solves_cartpole", copy_of(ppo_update), hidden=False)
    assert verdict.passed, verdict.message


# --- the silent-bugs exercise -----------------------------------------------------------------------


def notebook_function(cell_id: str, name: str):
    """A function defined by a cell of the chapter's source notebook."""
    notebook = nbformat.read(ROOT / "solutions" / "06_build_ppo" / "06_build_ppo.ipynb", as_version=4)
    source = next(c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == cell_id)
    namespace = {"torch": torch, "np": np}
    exec(compile(source.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", ""), cell_id, "exec"),
         namespace)
    return namespace[name]


def test_the_notebooks_buggy_update_is_the_catalogued_one(one_thread):
    buggy = notebook_function("demo_buggy_update", "buggy_ppo_update")
    for grade_id in ("test_fixed_ppo_update", "test_fixed_ppo_update_minibatches"):
        verdict = judged(grade_id, buggy, hidden=True)
        assert not verdict.passed and verdict.mistake == "all_three_silent_bugs", verdict.message


def test_the_notebooks_fixed_update_passes(one_thread):
    fixed = notebook_function("solution_fixed_ppo_update", "fixed_ppo_update")
    for grade_id in ("test_fixed_ppo_update", "test_fixed_ppo_update_minibatches"):
        for hidden in (False, True):
            assert judged(grade_id, fixed, hidden).passed


def test_the_buggy_update_raises_nothing_and_hides_its_ratio(one_thread):
    buggy = notebook_function("demo_buggy_update", "buggy_ppo_update")
    _, history = train_ppo(tiny(num_epochs=4), progress=False, update_fn=buggy)
    assert all(row["approx_kl"] == 0.0 and row["clip_fraction"] == 0.0 for row in history)
    assert all(math.isfinite(row["policy_loss"]) for row in history)


# --- the ablation -----------------------------------------------------------------------------------


def test_iqm_is_the_25_percent_trimmed_mean():
    assert ablations.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # mean of 3..6
    assert ablations.iqm([0, 10, 10, 10, 1000]) == pytest.approx(10.0)  # one value cut at each end
    assert ablations.iqm([7.0]) == 7.0


def test_bootstrap_ci_is_deterministic_and_brackets_the_iqm():
    values = [12.0, 500, 480, 300, 499, 500, 222, 500, 470, 90]
    low, high = ablations.bootstrap_ci(values)
    assert (low, high) == ablations.bootstrap_ci(values)
    assert low <= ablations.iqm(values) <= high
    assert ablations.bootstrap_ci([5.0] * 6) == (5.0, 5.0)


def test_summaries_count_unsolved_runs_as_the_budget():
    runs = [{"final_return": 500.0, "steps_to_solve": 10_000, "wall_time": 1.0},
            {"final_return": 100.0, "steps_to_solve": None, "wall_time": 1.0}]
    summary = ablations.summarise(runs, 51_200)
    assert summary["solved"] == 1 and summary["steps_to_solve"][0] == pytest.approx(30_600)


def test_the_cached_table_covers_every_setting_over_at_least_five_seeds():
    table = ablations.load_table()
    assert len(table["seeds"]) >= 5
    for setting in ablations.SETTINGS:
        seeds = sorted(r["seed"] for r in table["runs"] if r["setting"] == setting)
        assert seeds == sorted(table["seeds"]), setting
    text = ablations.format_table(table)
    assert all(setting in text for setting in ablations.SETTINGS)
    ranges = ablations.healthy_ranges(table)
    assert set(ranges) == set(ablations.DIAGNOSTICS) and ranges["entropy"]["learning"][1] > 0


@pytest.mark.slow
@pytest.mark.parametrize("setting, seed", [("baseline", 1), ("target_kl", 2)])
def test_re_running_part_of_the_cached_table_matches_it(setting, seed, one_thread):
    table = ablations.load_table()
    cached = {(r["setting"], r["seed"]): r for r in table["runs"]}[setting, seed]
    machine = (torch.__version__, torch.backends.cpu.get_cpu_capability())
    if machine == (table["torch"], table["cpu_capability"]):
        fresh = ablations.run(setting, seed)  # the same kernels: the same run, bit for bit
        assert (fresh["final_return"], fresh["steps_to_solve"]) == (cached["final_return"], cached["steps_to_solve"])
        assert fresh["diagnostics"] == cached["diagnostics"]
    else:
        # Other CPU kernels round differently, and a seeded RL run drifts further with every update.
        # Its first updates still match the table closely: the same code on the same seed.
        updates = 3
        fresh = ablations.run(setting, seed, stop_after=updates)
        for key, values in fresh["diagnostics"].items():
            assert values == pytest.approx(cached["diagnostics"][key][:updates], rel=1e-2, abs=1e-4), key


def test_the_script_prints_the_cached_table(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("ablation_table", ROOT / "scripts" / "ablation_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--print"]) == 0
    assert "advantage normalisation" in capsys.readouterr().out


def test_default_init_agent_is_not_orthogonal():
    torch.manual_seed(0)
    agent = ablations.default_init_agent()
    last = agent.actor[-1]
    assert last.weight.abs().max() > 0.05 and last.bias.abs().max() > 0  # the orthogonal one is x0.01, bias 0


def test_the_chapters_reading_of_the_table_holds():
    """Section 4's prose reads the cached table; these are the statements it makes."""
    rows = {row["setting"]: row for row in ablations.table_rows(ablations.load_table())}
    steps = ablations.compare_to_baseline(list(rows.values()))
    assert steps["value-loss clipping"] == "above"
    assert min(rows, key=lambda s: rows[s]["final_return"][0]) == "value-loss clipping"
    norm, base = rows["advantage normalisation"], rows["baseline"]
    assert steps["advantage normalisation"] == "overlaps" and norm["solved"] == norm["runs"] - 1
    width = lambda row: row["steps_to_solve"][2] - row["steps_to_solve"][1]  # noqa: E731
    assert width(norm) > 2 * width(base)
    for setting in ("gradient-norm clipping", "Adam's eps", "learning-rate annealing", "target_kl", "entropy bonus",
                    "orthogonal init"):
        assert steps[setting] == "overlaps", setting
    assert rows["orthogonal init"]["steps_to_solve"][0] > base["steps_to_solve"][0]
    assert base["solved"] == base["runs"] == 10  # the reference update's solve rate the chapter prints


def test_training_runs_skip_once_enough_solved_and_stop_when_out_of_time():
    from ppo_lab.checks.runners import training_runs

    def fake_train(config, progress, agent, update_fn, callback):
        for update in range(1, 51):
            if callback({"update": update}):
                break

    def fake_evaluate(agent, episodes, seed):
        time.sleep(0.03)
        return [500.0 if agent.good else 10.0] * episodes

    class Agent:
        good = True

    configs = [PPOConfig.fast_cartpole(seed=s) for s in (1, 2, 3)]
    kwargs = dict(configs=configs, train=fake_train, evaluate=fake_evaluate, make_agent=Agent, episodes=2,
                  eval_seed=0, target=475.0, enough=2, time_budget=60.0)
    out = training_runs(None, Case("fake", kwargs))
    assert out == {"evaluations": [500.0, 500.0, None], "updates": [1, 1, 0], "out_of_time": False}
    Agent.good = False
    out = training_runs(None, Case("fake", {**kwargs, "time_budget": 0.02}))  # over during the first run
    assert out == {"evaluations": [10.0, None, None], "updates": [1, 0, 0], "out_of_time": True}
