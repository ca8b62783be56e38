"""Chapter 9 (beyond PPO): the three references and their checks, the DPO and GRPO/RLOO trainers,
the over-optimisation fits, the cached sweep, and the chapter's claims over seeds."""
import copy
import itertools
import math
import statistics

import pytest
import torch
import torch.nn.functional as F

import ppo_lab
from ppo_lab import dpo_loss, group_advantages, leave_one_out_advantages
from ppo_lab.algos.config import TrainerConfig
from ppo_lab.algos.dpo import DPOConfig, pair_logprobs, sequence_logprobs, train_dpo
from ppo_lab.algos.grpo import GRPOConfig, advantage_function, sample_groups, train_grpo
from ppo_lab.algos.rlhf import (RewardModel, RLHFConfig, evaluate_policy, last_token_index, make_preference_pairs,
                                ppo_clip_epochs)
from ppo_lab.checks import get, verify
from ppo_lab.checks.beyond_ppo import DPO_MISTAKES, GROUP_MISTAKES, LOO_MISTAKES, UNSCALED_MISTAKES
from ppo_lab.checks.student import run_answer
from ppo_lab.experiments import beyond_ppo as sweeps
from ppo_lab.experiments.overoptimisation import (Fit, best_of_n, best_of_n_kl, best_of_n_weights, fit,
                                                  rl_points)
from ppo_lab.models import tiny_lm

# --- dpo_loss, by hand ---------------------------------------------------------------------------


def test_dpo_loss_by_hand():
    # margins beta * ((pc - rc) - (pr - rr)): 0.5 * (2 - (-2)) = 2 and 0.5 * (-1 - 1) = -1;
    # -logsigmoid(x) = softplus(-x)
    pc, pr = torch.tensor([-1.0, -5.0]), torch.tensor([-6.0, -3.0])
    rc, rr = torch.tensor([-3.0, -4.0]), torch.tensor([-4.0, -4.0])
    want = (F.softplus(torch.tensor(-2.0)) + F.softplus(torch.tensor(1.0))) / 2
    assert dpo_loss(pc, pr, rc, rr, beta=0.5).item() == pytest.approx(want.item(), abs=1e-6)


def test_dpo_loss_starts_at_log_2_and_pushes_chosen_up_rejected_down_and_leaves_the_reference_alone():
    ref_c, ref_r = torch.tensor([-10.0, -20.0, -7.0]), torch.tensor([-12.0, -9.0, -30.0])
    pc, pr = ref_c.clone().requires_grad_(True), ref_r.clone().requires_grad_(True)
    rc, rr = ref_c.clone().requires_grad_(True), ref_r.clone().requires_grad_(True)
    loss = dpo_loss(pc, pr, rc, rr, beta=0.1)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)  # the policy is the reference: sigmoid(0) = 1/2
    torch.testing.assert_close(pc.grad, torch.full((3,), -0.1 * 0.5 / 3))  # descent raises chosen
    torch.testing.assert_close(pr.grad, torch.full((3,), 0.1 * 0.5 / 3))  # and lowers rejected
    assert rc.grad is None or not rc.grad.any()
    assert rr.grad is None or not rr.grad.any()


def test_dpo_loss_is_finite_for_huge_margins_and_depends_only_on_the_log_ratio_gap():
    loss = dpo_loss(torch.tensor([-500.0]), torch.tensor([-5.0]), torch.tensor([-5.0]), torch.tensor([-5.0]), beta=1.0)
    assert loss.item() == pytest.approx(495.0, abs=1e-3)
    a = dpo_loss(torch.tensor([-3.0]), torch.tensor([-4.0]), torch.tensor([-5.0]), torch.tensor([-2.0]))
    b = dpo_loss(torch.tensor([-13.0]), torch.tensor([-24.0]), torch.tensor([-15.0]), torch.tensor([-22.0]))
    assert a.item() == pytest.approx(b.item(), abs=1e-6)  # same log-ratios, other log-probs


# --- group advantages, by hand ---------------------------------------------------------------------


def test_group_advantages_by_hand_and_unscaled():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [10.0, 10.0, 16.0]])  # row stds (unbiased): 1 and sqrt(12)
    got = group_advantages(rewards)
    want = torch.tensor([[-1 / (1 + 1e-4), 0.0, 1 / (1 + 1e-4)],
                         [-2 / (12 ** 0.5 + 1e-4), -2 / (12 ** 0.5 + 1e-4), 4 / (12 ** 0.5 + 1e-4)]])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(group_advantages(rewards, scale=False), torch.tensor([[-1.0, 0, 1], [-2.0, -2, 4]]))


def test_group_advantages_rows_are_independent_and_a_constant_group_teaches_nothing():
    rewards = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    rewards[3] = 2.5
    got = group_advantages(rewards)
    assert not got[3].any()
    order = torch.tensor([5, 2, 0, 3, 1, 4])
    torch.testing.assert_close(group_advantages(rewards[order]), got[order])
    torch.testing.assert_close(got.sum(1), torch.zeros(6), atol=1e-5, rtol=0)


def test_leave_one_out_by_hand_and_its_relation_to_the_group_mean():
    torch.testing.assert_close(leave_one_out_advantages(torch.tensor([[1.0, 2.0, 3.0]])),
                               torch.tensor([[-1.5, 0.0, 1.5]]))
    rewards = torch.randn(4, 7, generator=torch.Generator().manual_seed(1))
    g = rewards.shape[1]
    # the unscaled group advantage is RLOO's times (G - 1) / G: the chapter's claim
    torch.testing.assert_close(group_advantages(rewards, scale=False), (g - 1) / g * leave_one_out_advantages(rewards))


def test_leave_one_out_gives_an_unbiased_policy_gradient_and_the_group_mean_does_not():
    """Exact expectation over every group of G = 3 samples from a 3-armed softmax bandit."""
    logits = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    arm_reward = torch.tensor([1.0, -0.5, 2.0])
    probs = logits.softmax(0)
    true_gradient, = torch.autograd.grad((probs * arm_reward).sum(), logits)

    def expected_gradient(advantage_fn):
        total = torch.zeros(3)
        for arms in itertools.product(range(3), repeat=3):
            p = probs[list(arms)].prod()
            advantages = advantage_fn(arm_reward[list(arms)][None, :])[0]
            surrogate = (advantages * logits.log_softmax(0)[list(arms)]).sum() / 3
            total += p.detach() * torch.autograd.grad(surrogate, logits)[0]
        return total

    torch.testing.assert_close(expected_gradient(leave_one_out_advantages), true_gradient)
    torch.testing.assert_close(expected_gradient(partial_unscaled), true_gradient * 2 / 3)


def partial_unscaled(rewards):
    return group_advantages(rewards, scale=False)


@pytest.mark.parametrize("call, name", [
    (lambda: dpo_loss(torch.zeros(3), torch.zeros(4), torch.zeros(3), torch.zeros(3)), "policy_rejected_logps"),
    (lambda: dpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), beta=0.0), "beta"),
    (lambda: dpo_loss(torch.zeros(2, 2), torch.zeros(2), torch.zeros(2), torch.zeros(2)), "policy_chosen_logps"),
    (lambda: group_advantages(torch.zeros(4)), "rewards"),
    (lambda: group_advantages(torch.zeros(4, 1)), "G >= 2"),
    (lambda: group_advantages(torch.tensor([[1.0, float("nan")]])), "rewards"),
    (lambda: group_advantages(torch.zeros(2, 3), eps=-1.0), "eps"),
    (lambda: leave_one_out_advantages(torch.zeros(3, 1)), "G >= 2"),
])
def test_bad_inputs_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_unscaled_group_advantages_accept_a_group_of_one():
    assert not group_advantages(torch.tensor([[3.0], [1.0]]), scale=False).any()


def test_the_references_are_exported():
    assert ppo_lab.dpo_loss is dpo_loss and ppo_lab.group_advantages is group_advantages
    assert ppo_lab.leave_one_out_advantages is leave_one_out_advantages


# --- exercise checks ------------------------------------------------------------------------------

def lost(grade_id, answer, hidden):
    """What the grader does: run the answer on the cases, then judge the outputs from scratch."""
    seed = 7
    outputs, used_reference = run_answer(get(grade_id), answer, seed, hidden)
    return verify(grade_id, hidden, seed, outputs, used_reference)


def my_dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    margin = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps).detach()
    return F.softplus(-beta * margin).mean()  # -logsigmoid(x) = softplus(-x)


def my_group_advantages(rewards, eps=1e-4, scale=True):
    out = torch.empty_like(rewards)
    for p, row in enumerate(rewards):
        mean = sum(row.tolist()) / len(row)
        centred = row - mean
        if scale:
            var = sum(x * x for x in centred.tolist()) / (len(row) - 1)
            centred = centred / (var ** 0.5 + eps)
        out[p] = centred
    return out


def my_leave_one_out_advantages(rewards):
    g = rewards.shape[1]
    others = torch.stack([torch.cat([rewards[:, :i], rewards[:, i + 1:]], dim=1).mean(1) for i in range(g)], dim=1)
    return rewards - others


CHECKS = [
    ("test_dpo_loss", my_dpo_loss, DPO_MISTAKES),
    ("test_group_advantages", my_group_advantages, GROUP_MISTAKES),
    ("test_group_advantages_unscaled", my_group_advantages, UNSCALED_MISTAKES),
    ("test_leave_one_out_advantages", my_leave_one_out_advantages, LOO_MISTAKES),
]


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("grade_id, answer", [(g, a) for g, a, _ in CHECKS], ids=[g for g, _, _ in CHECKS])
def test_an_independent_correct_answer_passes(grade_id, answer, hidden):
    verdict = lost(grade_id, answer, hidden)
    assert verdict.passed, verdict.message


@pytest.mark.parametrize("grade_id, mistake", [(g, m) for g, _, ms in CHECKS for m in ms],
                         ids=[f"{g}-{m.name}" for g, _, ms in CHECKS for m in ms])
def test_each_mistake_loses_the_hidden_points_and_is_named(grade_id, mistake):
    verdict = lost(grade_id, mistake.implementation, hidden=True)
    assert not verdict.passed
    assert verdict.mistake == mistake.name, verdict.message
    assert mistake.message in verdict.message


def test_every_exercise_has_at_least_two_named_mistakes():
    assert len(DPO_MISTAKES) >= 2 and len(GROUP_MISTAKES) >= 2 and len(UNSCALED_MISTAKES) >= 2
    assert len(LOO_MISTAKES) >= 2


@pytest.mark.parametrize("grade_id, name", [
    ("test_dpo_loss", "no_reference_terms"), ("test_dpo_loss", "chosen_rejected_swapped"),
    ("test_dpo_loss", "reference_not_detached"), ("test_group_advantages", "statistics_over_prompts"),
    ("test_group_advantages", "population_std"), ("test_group_advantages_unscaled", "scaled_anyway"),
    ("test_leave_one_out_advantages", "includes_itself"), ("test_leave_one_out_advantages", "divides_by_g"),
])
def test_the_issues_named_mistakes_already_fail_the_visible_check_with_values(grade_id, name):
    mistake = next(m for g, _, ms in CHECKS if g == grade_id for m in ms if m.name == name)
    verdict = lost(grade_id, mistake.implementation, hidden=False)
    assert not verdict.passed and verdict.mistake == name
    assert "should be" in verdict.message  # visible feedback names expected and actual values


@pytest.mark.parametrize("grade_id", [g for g, _, _ in CHECKS])
def test_an_unimplemented_stub_fails_with_a_message(grade_id):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    verdict = lost(grade_id, stub, hidden=False)
    assert not verdict.passed and "not implemented" in verdict.message


# --- over-optimisation: formulas and fits -----------------------------------------------------------

def test_best_of_n_kl():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    kls = [best_of_n_kl(n) for n in (1, 2, 4, 8, 64)]
    assert kls == sorted(kls)
    with pytest.raises(ValueError, match="n"):
        best_of_n_kl(0)


@pytest.mark.parametrize("n_samples, n", [(6, 1), (6, 3), (6, 6), (7, 2)])
def test_best_of_n_weights_average_over_every_subset_exactly(n_samples, n):
    scores = torch.randn(n_samples, generator=torch.Generator().manual_seed(n_samples + n), dtype=torch.float64)
    brute = statistics.mean(max(scores[list(s)].tolist()) for s in itertools.combinations(range(n_samples), n))
    weights = best_of_n_weights(n_samples, n)
    assert weights.sum().item() == pytest.approx(1.0)
    assert (scores.sort().values @ weights).item() == pytest.approx(brute)


@pytest.mark.parametrize("form, alpha, beta", [("bon", 0.9, 0.25), ("rl", 0.8, 0.6), ("rl", 0.5, -0.1)])
def test_fit_recovers_known_parameters_and_the_peak_is_the_maximum(form, alpha, beta):
    d = torch.linspace(0.05, 6, 50, dtype=torch.float64)
    truth = Fit(form, alpha, beta)
    noise = 0.01 * torch.randn(50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = fit(form, d, truth(d) + noise)
    assert got.alpha == pytest.approx(alpha, abs=0.03) and got.beta == pytest.approx(beta, abs=0.03)
    if beta > 0:
        grid = torch.linspace(1e-4, 3 * truth.peak, 100001, dtype=torch.float64)
        assert grid[truth(grid).argmax()].item() == pytest.approx(truth.peak, rel=1e-3)
        assert truth.peak_value == pytest.approx(truth(grid).max().item(), rel=1e-6)
    else:
        assert truth.peak == math.inf


def test_fit_and_rl_points_refuse_bad_input_and_subtract_the_start():
    with pytest.raises(ValueError, match="form"):
        fit("ppo", [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="equally long"):
        fit("rl", [1.0, 2.0], [1.0])
    history = [dict(kl=0.0, rm_score=0.5, human_score=-0.1), dict(kl=-0.02, rm_score=0.7, human_score=0.0),
               dict(kl=4.0, rm_score=1.5, human_score=0.4)]
    points = rl_points(history)
    assert points["d"] == [0.0, 0.0, 2.0]
    assert points["proxy"] == pytest.approx([0.0, 0.2, 1.0]) and points["gold"] == pytest.approx([0.0, 0.1, 0.5])


# --- trainers: configs, mechanics -------------------------------------------------------------------

@pytest.mark.parametrize("config, field, value", [
    (GRPOConfig, "group_size", 1), (GRPOConfig, "estimator", "ppo"), (GRPOConfig, "kl_coef", -0.1),
    (GRPOConfig, "clip_epsilon", 1.0), (GRPOConfig, "num_minibatches", 65), (DPOConfig, "beta", 0.0),
    (DPOConfig, "learning_rate", -1.0), (DPOConfig, "num_epochs", 0),
])
def test_configs_name_a_bad_field(config, field, value):
    assert issubclass(config, TrainerConfig)
    with pytest.raises(ValueError, match=field):
        config(**{field: value})


def test_grpo_shares_chapter_8s_knobs_and_budget():
    grpo, ppo = GRPOConfig(), RLHFConfig()
    for name in ("kl_coef", "num_updates", "num_epochs", "num_minibatches", "learning_rate", "clip_epsilon",
                 "max_grad_norm", "batch_size"):
        assert getattr(grpo, name) == getattr(ppo, name), name
    assert advantage_function("rloo") is leave_one_out_advantages


@pytest.fixture(scope="module")
def lm():
    """The shipped SFT model, its frozen copy and an untrained reward model (for mechanics only)."""
    sft, vocab = tiny_lm.load_sft_model(verbose=False)
    torch.manual_seed(0)
    reward_model = RewardModel(sft).eval()
    torch.nn.init.normal_(reward_model.head.weight, std=0.3)
    return sft, copy.deepcopy(sft).requires_grad_(False), reward_model, vocab


def test_sequence_logprobs_sum_the_response_tokens_generate_sampled(lm, one_thread):
    sft, _, _, vocab = lm
    samples = tiny_lm.generate(sft, tiny_lm.sample_prompts(16, vocab, seed=5), 24, vocab,
                               generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = sequence_logprobs(sft, samples.sequences, last_token_index(samples))
    torch.testing.assert_close(got, samples.logprobs.sum(1), atol=1e-4, rtol=0)


def test_sample_groups_gives_one_kl_penalised_return_per_response(lm, one_thread):
    sft, reference, reward_model, vocab = lm
    policy = copy.deepcopy(sft)
    with torch.no_grad():  # move the policy away from the reference, so the penalty is not 0
        policy.lm_head.bias.add_(torch.randn(policy.lm_head.bias.shape, generator=torch.Generator().manual_seed(0)))
    prompts = tiny_lm.sample_prompts(3, vocab, seed=4)
    groups = sample_groups(policy, reference, reward_model, vocab, prompts, 4, 0.1, torch.Generator().manual_seed(0))
    assert groups.rewards.shape == (3, 4)
    assert torch.equal(groups.samples.prompts, prompts.repeat_interleave(4, dim=0))
    k1 = ((groups.logprobs - groups.ref_logprobs) * groups.samples.mask).sum(1)
    torch.testing.assert_close(groups.rewards.flatten(), groups.scores - 0.1 * k1)


def test_grpo_trains_no_critic_and_dpo_starts_at_log_2(lm, one_thread):
    sft, reference, reward_model, vocab = lm
    policy = copy.deepcopy(sft)
    value_head = copy.deepcopy(policy.value_head.state_dict())
    history = train_grpo(policy, reference, reward_model, vocab, GRPOConfig(num_updates=2, prompts_per_update=2,
                                                                            group_size=4))
    assert len(history) == 2 and {"reward_std", "zero_std_groups", "clip_fraction"} <= set(history[0])
    assert all(torch.equal(value_head[k], v) for k, v in policy.value_head.state_dict().items())
    assert not torch.equal(policy.lm_head.weight, sft.lm_head.weight)

    pairs = make_preference_pairs(sft, vocab, 48)
    dpo_policy = copy.deepcopy(sft)
    history = train_dpo(dpo_policy, reference, pairs, DPOConfig(batch_size=16, num_epochs=3),
                        callback=lambda row: row["update"] == 4)
    assert [row["update"] for row in history] == [1, 2, 3, 4]  # the callback stopped it
    first = history[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)  # measured before the first step: policy = reference
    assert first["chosen_logratio"] == pytest.approx(0.0, abs=1e-4)
    assert first["rejected_logratio"] == pytest.approx(0.0, abs=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(dpo_policy.value_head.parameters(), sft.value_head.parameters()))


def test_the_shared_ppo_clip_step_fits_the_value_head_only_when_given_returns(lm, one_thread):
    sft, _, _, vocab = lm
    samples = tiny_lm.generate(sft, tiny_lm.sample_prompts(8, vocab, seed=3), 24, vocab,
                               generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        old, _ = tiny_lm.response_logprobs(sft, samples.prompts, samples.responses)
    advantages = torch.randn(old.shape, generator=torch.Generator().manual_seed(1)) * samples.mask
    cfg = RLHFConfig(num_epochs=1, num_minibatches=2, batch_size=8)
    for returns, changes in ((None, False), (torch.ones_like(old), True)):
        policy = copy.deepcopy(sft)
        opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
        clip_fractions, _ = ppo_clip_epochs(policy, opt, samples, old, advantages, cfg,
                                            torch.Generator().manual_seed(0), returns=returns)
        assert len(clip_fractions) == 2
        assert (not torch.equal(policy.value_head.weight, sft.value_head.weight)) == changes


# --- the cached sweep and the chapter's claims, over seeds ------------------------------------------

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def chapter():
    """The chapter's set-up: the shipped SFT model, chapter 8's pairs, the cached sweep and its reward model."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    sft, vocab = tiny_lm.load_sft_model(verbose=False)
    reference = copy.deepcopy(sft).requires_grad_(False)
    train, held_out = sweeps.chapter_data(sft, vocab)
    sweep = sweeps.load_sweep()
    reward_model = sweeps.cached_reward_model(sft, sweep)
    baseline = evaluate_policy(sft, reference, reward_model, vocab)
    yield dict(sft=sft, vocab=vocab, reference=reference, train=train, held_out=held_out, sweep=sweep,
               reward_model=reward_model, baseline=baseline)
    torch.set_num_threads(before)


def run(chapter, method, seed, **kwargs):
    c = chapter
    return sweeps.run_method(method, seed, c["sft"], c["reference"], c["reward_model"], c["vocab"], c["train"],
                             **kwargs)


def test_the_cache_holds_every_method_and_seed_and_its_numbers_tell_the_chapters_story(chapter):
    sweep, sft = chapter["sweep"], chapter["sweep"]["sft"]
    assert set(sweep["runs"]) == set(sweeps.METHODS)
    assert all(sorted(sweep["runs"][m]) == list(SEEDS) for m in sweeps.METHODS)
    table = {row["method"]: row for row in sweeps.summary(sweep, ("ppo", "grpo", "dr_grpo", "rloo", "dpo"))}
    for method in ("ppo", "grpo", "dr_grpo", "rloo"):
        assert all(r["final"]["human_score"] > sft["human_score"] + 0.5 for r in sweep["runs"][method].values()), method
    assert all(r["final"]["human_score"] > sft["human_score"] + 0.3 for r in sweep["runs"]["dpo"].values())
    assert table["dpo"]["kl"] < table["ppo"]["kl"]
    for method in ("ppo_kl0", "grpo_kl0"):  # reward hacking without the penalty, in the proxy's favour
        for r in sweep["runs"][method].values():
            assert r["final"]["rm_score"] > table["ppo"]["rm_score"] and r["final"]["kl"] > 2 * table["ppo"]["kl"]


# The cache was made on one machine; another CPU's floating-point kernels can move a seeded run
# (a sampled token flips), so the first updates are compared with a tolerance, not bit for bit.
# Measured here: identical (differences 0.0).
@pytest.mark.slow
def test_a_subset_of_the_sweep_reruns_and_matches_the_cache(chapter):
    c, sweep = chapter, chapter["sweep"]
    # the reward model: chapter 8's recipe retrained from the same pairs
    reward_model, log = sweeps.fit_reward_model(c["sft"], c["reference"], c["vocab"], c["train"], c["held_out"])
    assert log["held_out_acc"][-1] == pytest.approx(sweep["meta"]["reward_model_held_out_acc"], abs=0.01)
    with torch.no_grad():
        fresh = reward_model(c["held_out"].chosen, c["held_out"].chosen_last)
        cached = c["reward_model"](c["held_out"].chosen, c["held_out"].chosen_last)
    torch.testing.assert_close(fresh, cached, atol=2e-2, rtol=0)
    for key, value in sweeps.final_scores(c["sft"], c["reference"], reward_model, c["vocab"]).items():
        assert value == pytest.approx(sweep["sft"][key], abs=2e-2), key
    # the first updates of seed 0 of every method, with the retrained reward model
    keys = {"dpo": ("loss", "chosen_logratio", "rejected_logratio")}
    for method in sweeps.METHODS:
        again = sweeps.run_method(method, 0, c["sft"], c["reference"], reward_model, c["vocab"], c["train"],
                                  stop_after=3)["history"]
        cached_rows = sweeps.rows(sweep["runs"][method][0]["history"])[:3]
        for row, cached_row in zip(again, cached_rows, strict=True):
            for key in keys.get(method, ("rm_score", "human_score", "kl")):
                assert row[key] == pytest.approx(cached_row[key], abs=2e-2), (method, row["update"], key)


@pytest.mark.slow
def test_dpo_raises_the_hidden_rule_score_over_sft_while_chosen_and_rejected_log_probs_fall(chapter):
    base = chapter["baseline"]["human_score"]
    outcomes = {}
    for seed in SEEDS:
        result = run(chapter, "dpo", seed)
        with torch.no_grad():
            chosen, rejected = pair_logprobs(result["policy"], chapter["held_out"])
            ref_chosen, ref_rejected = pair_logprobs(chapter["reference"], chapter["held_out"])
        outcomes[seed] = dict(human=round(result["final"]["human_score"], 3), kl=round(result["final"]["kl"], 2),
                              chosen=round((chosen - ref_chosen).mean().item(), 2),
                              rejected=round((rejected - ref_rejected).mean().item(), 2))
    # Measured here: human 0.590, 0.610, 0.641 (SFT -0.130), KL 1.56, 1.43, 1.70; held-out mean log-ratios
    # (chosen, rejected): (-0.77, -3.16), (-0.64, -2.98), (-0.75, -3.04). Asserting a gain > 0.3 on every
    # seed and both log-ratios falling on >= 2 of 3.
    assert all(o["human"] > base + 0.3 for o in outcomes.values()), outcomes
    assert sum(o["rejected"] < o["chosen"] < 0 for o in outcomes.values()) >= 2, outcomes


@pytest.mark.slow
def test_grpo_raises_the_hidden_rule_score_at_a_kl_comparable_to_ppos(chapter):
    base = chapter["baseline"]["human_score"]
    outcomes = {}
    for seed in SEEDS:
        outcomes[seed] = {method: {k: round(run(chapter, method, seed)["final"][k], 3) for k in ("human_score", "kl")}
                          for method in ("ppo", "grpo")}
    # Measured here (seeds 0-2, SFT -0.130): PPO human 0.779, 0.798, 0.781, KL 5.08, 4.92, 4.36;
    # GRPO human 0.800, 0.815, 0.825, KL 4.55, 4.61, 5.08 (KL ratios 0.90, 0.94, 1.17).
    for seed, o in outcomes.items():
        assert o["grpo"]["human_score"] > base + 0.5, outcomes
        assert o["grpo"]["human_score"] > o["ppo"]["human_score"] - 0.15, outcomes
        assert 0.5 < o["grpo"]["kl"] / o["ppo"]["kl"] < 2.0, outcomes


@pytest.mark.slow
def test_the_overoptimisation_fit_recovers_a_gold_peak_for_rl_while_the_proxy_keeps_rising(chapter):
    fits = {}
    for seed in SEEDS:
        points = rl_points(run(chapter, "ppo_kl0", seed)["history"])
        gold, proxy = fit("rl", points["d"], points["gold"]), fit("rl", points["d"], points["proxy"])
        d_max = max(points["d"])
        fits[seed] = dict(alpha=round(gold.alpha, 3), beta=round(gold.beta, 3), peak=round(gold.peak, 2),
                          peak_value=round(gold.peak_value, 2), d_max=round(d_max, 2), proxy_peak=round(proxy.peak, 2))
        # a peak inside the measured range, above the start, with the gold falling below it by the end
        assert gold.beta > 0 and 0 < gold.peak < d_max and gold.peak_value > 0.2, fits
        assert gold(d_max).item() < 0 < gold.peak_value, fits
        # the proxy is still rising where the gold peaks
        assert proxy.peak > 2 * gold.peak and proxy(d_max).item() > proxy(gold.peak).item() + 0.5, fits
    # Measured here: gold alpha 0.669, 0.578, 0.793, beta 0.530, 0.482, 0.642, peak d* 1.30, 1.22, 1.27
    # (d up to 7.6-9.0); proxy peaks 10.75, 12.81, 8.73.


@pytest.mark.slow
def test_best_of_n_raises_proxy_and_gold_and_spends_less_kl_than_rl_for_it(chapter):
    rows = best_of_n(chapter["sft"], chapter["reward_model"], chapter["vocab"], n_prompts=64, n_samples=64)
    assert [r["n"] for r in rows] == [1, 2, 4, 8, 16, 32, 64]
    # The proxy's curve is non-decreasing by construction (a random (n+1)-subset's best is at least as good
    # as a random n-subset's of it), on any machine. The gold one is a measurement: measured here it rose
    # +0.32, +0.25, +0.15 up to n = 8, then by +0.02-0.08 a step. Asserted with margins that other samples
    # (another CPU's kernels) keep: a clear rise to n = 8, never 0.05 below its best so far after it.
    proxy = [r["proxy"] for r in rows]
    assert proxy == sorted(proxy), proxy
    gold = [r["gold"] for r in rows]
    assert all(later > earlier + 0.05 for earlier, later in zip(gold[:4], gold[1:4])), gold
    assert all(value > max(gold[:i]) - 0.05 for i, value in enumerate(gold[4:], start=4)), gold
    gains = rows[-1]["gold"] - rows[0]["gold"]
    assert gains > 0.5 and rows[-1]["kl"] < chapter["sweep"]["runs"]["ppo"][0]["final"]["kl"]
    fitted = fit("bon", [r["d"] for r in rows], [r["gold"] - rows[0]["gold"] for r in rows])
    assert fitted.alpha > 0 and fitted.beta > 0
