"""Chapter 2: probability_ratio, categorical_kl, conjugate_gradient (references and checks), the TRPO update."""
import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, kl_divergence

from ppo_lab.models.actor_critic import ActorCritic
from ppo_lab.checks import get, verify
from ppo_lab.checks.student import run_answer
from ppo_lab.envs import BatchedCartPole
from ppo_lab.algos.rollout import RolloutCollector
from ppo_lab.exercises.trpo import categorical_kl, conjugate_gradient, probability_ratio
from ppo_lab.algos.trpo import TRPOConfig, fisher_vector_product, train_trpo, trpo_policy_step


def graded(grade_id, answer, hidden, seed=7):
    """Exactly what the grader does: run the answer on the cases, then verify the outputs."""
    outputs, used_reference = run_answer(get(grade_id), answer, seed, hidden)
    return verify(grade_id, hidden, seed, outputs, used_reference)


# --- probability_ratio: reference ---------------------------------------------------------------

def test_ratio_hand_computed():
    new = torch.tensor([math.log(0.5), math.log(0.2)])
    old = torch.tensor([math.log(0.25), math.log(0.4)])
    assert torch.allclose(probability_ratio(new, old), torch.tensor([2.0, 0.5]))


def test_ratio_of_very_unlikely_actions_is_finite_where_probabilities_underflow():
    new, old = torch.tensor([-120.3]), torch.tensor([-120.0])
    assert torch.isnan(new.exp() / old.exp()).all()  # the naive version: 0 / 0 in float32
    assert torch.allclose(probability_ratio(new, old), torch.tensor([math.exp(-0.3)]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-50.0, -0.01), min_size=1, max_size=20))
def test_identical_log_probs_give_ratio_one_and_no_gradient_to_the_old_ones(values):
    new = torch.tensor(values).requires_grad_(True)
    old = torch.tensor(values).requires_grad_(True)
    ratio = probability_ratio(new, old)
    assert torch.allclose(ratio, torch.ones_like(ratio))
    grad_new, grad_old = torch.autograd.grad(ratio.sum(), [new, old], allow_unused=True)
    assert torch.allclose(grad_new, torch.ones_like(grad_new))  # d exp(x - c)/dx = ratio = 1
    assert grad_old is None


@pytest.mark.parametrize("new, old, argument", [
    (torch.zeros(3), torch.zeros(4), "shape mismatch"),
    (torch.tensor([0.0, float("nan")]), torch.zeros(2), "new_log_probs contains NaN"),
    (torch.zeros(2), torch.tensor([float("-inf"), 0.0]), "old_log_probs contains NaN or inf"),
    (torch.zeros(2, 2), torch.zeros(2, 2), "new_log_probs must be 1-D"),
    ([0.0], torch.zeros(1), "new_log_probs must be a torch.Tensor"),
])
def test_ratio_rejects_bad_input_naming_the_argument(new, old, argument):
    with pytest.raises(ValueError, match=argument):
        probability_ratio(new, old)


# --- categorical_kl: reference ------------------------------------------------------------------

def test_kl_hand_computed():
    old = torch.tensor([[math.log(0.5), math.log(0.5)]])
    new = torch.tensor([[math.log(0.9), math.log(0.1)]])
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert categorical_kl(old, new).item() == pytest.approx(expected, rel=1e-5)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8), st.integers(2, 6), st.integers(0, 10_000))
def test_kl_matches_torch_distributions_and_is_not_symmetric(batch, actions, seed):
    generator = torch.Generator().manual_seed(seed)
    old, new = torch.randn(2, batch, actions, generator=generator) * 2
    want = kl_divergence(Categorical(logits=old), Categorical(logits=new))
    assert torch.allclose(categorical_kl(old, new), want, atol=1e-5)
    reverse = kl_divergence(Categorical(logits=new), Categorical(logits=old))
    if not torch.allclose(want, reverse, atol=1e-3):
        assert not torch.allclose(categorical_kl(old, new), reverse, atol=1e-4)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.integers(0, 10_000), st.floats(-5.0, 5.0))
def test_kl_is_non_negative_and_zero_exactly_for_the_same_policy(batch, actions, seed, shift):
    generator = torch.Generator().manual_seed(seed)
    old = torch.randn(batch, actions, generator=generator)
    assert (categorical_kl(old, old + shift) < 1e-6).all()  # a constant shift of logits: same policy
    other = old + torch.randn(batch, actions, generator=generator)
    kl = categorical_kl(old, other)
    assert (kl >= -1e-7).all()
    different = ~torch.allclose(torch.softmax(old, -1), torch.softmax(other, -1), atol=1e-3)
    assert not different or (kl > 0).any()


def test_kl_gradient_flows_into_the_new_logits_only():
    old = torch.randn(3, 4).requires_grad_(True)
    new = torch.randn(3, 4).requires_grad_(True)
    grad_old, grad_new = torch.autograd.grad(categorical_kl(old, new).sum(), [old, new], allow_unused=True)
    assert grad_old is None
    # d KL / d new_logits = softmax(new) - softmax(old), per state
    assert torch.allclose(grad_new, torch.softmax(new, -1) - torch.softmax(old, -1), atol=1e-6)


def test_kl_with_impossible_actions_is_finite():
    old = torch.tensor([[0.0, -300.0, 1.0]])
    new = torch.tensor([[0.5, -280.0, 0.0]])
    assert torch.isfinite(categorical_kl(old, new)).all()


@pytest.mark.parametrize("old, new, argument", [
    (torch.zeros(2, 3), torch.zeros(2, 4), "shape mismatch"),
    (torch.zeros(3), torch.zeros(3), "old_logits must be 2-D"),
    (torch.zeros(2, 3), torch.full((2, 3), float("inf")), "new_logits contains NaN or inf"),
    (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), "old_logits must be a floating-point tensor"),
])
def test_kl_rejects_bad_input_naming_the_argument(old, new, argument):
    with pytest.raises(ValueError, match=argument):
        categorical_kl(old, new)


# --- conjugate_gradient: reference --------------------------------------------------------------

def random_spd(n, seed, condition=10.0):
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return (q * torch.linspace(1.0, condition, n, dtype=torch.float64)) @ q.T


@pytest.mark.parametrize("n, seed", [(1, 0), (5, 1), (12, 2)])
def test_cg_matches_linalg_solve_with_enough_steps(n, seed):
    A = random_spd(n, seed)
    b = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, n_steps=n + 5, tol=1e-20)
    assert torch.allclose(x, torch.linalg.solve(A, b), atol=1e-8)


def test_cg_two_by_two_by_hand():
    # A = diag(1, 2), b = (1, 1): the first step goes along b with step |b|^2 / b^T A b = 2/3.
    A = torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))
    b = torch.ones(2, dtype=torch.float64)
    assert torch.allclose(conjugate_gradient(lambda v: A @ v, b, n_steps=1), torch.full((2,), 2 / 3, dtype=torch.float64))
    assert torch.allclose(conjugate_gradient(lambda v: A @ v, b, n_steps=2), torch.tensor([1.0, 0.5], dtype=torch.float64))


def test_cg_stops_at_tol_and_never_divides_zero_by_zero():
    calls = []

    def Avp(v):
        calls.append(v)
        return 3.0 * v

    b = torch.tensor([1.0, -2.0, 0.5])
    x = conjugate_gradient(Avp, b, n_steps=10, tol=1e-10)
    assert len(calls) == 1 and torch.allclose(x, b / 3)
    calls.clear()
    assert torch.equal(conjugate_gradient(Avp, torch.zeros(3)), torch.zeros(3)) and not calls


def test_cg_does_not_modify_b():
    b = torch.tensor([1.0, 2.0])
    before = b.clone()
    conjugate_gradient(lambda v: 2 * v, b)
    assert torch.equal(b, before)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(n_steps=0), "n_steps must be a positive integer"),
    (dict(n_steps=2.5), "n_steps must be a positive integer"),
    (dict(tol=-1.0), "tol must be >= 0"),
    (dict(tol=float("nan")), "tol must be finite"),
])
def test_cg_rejects_bad_hyperparameters_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        conjugate_gradient(lambda v: v, torch.ones(3), **kwargs)


@pytest.mark.parametrize("Avp, argument", [
    (lambda v: -v, "not positive definite"),
    (lambda v: torch.ones(5), "Avp must return a tensor of shape"),
])
def test_cg_rejects_a_bad_Avp(Avp, argument):
    with pytest.raises(ValueError, match=argument):
        conjugate_gradient(Avp, torch.ones(3))


def test_cg_rejects_a_non_vector_b():
    with pytest.raises(ValueError, match="b must be 1-D"):
        conjugate_gradient(lambda v: v, torch.ones(2, 2))


# --- the checks: right answers written differently pass, classic mistakes lose the points ------

def ratio_written_differently(new_log_probs, old_log_probs):
    return (new_log_probs - old_log_probs.detach()).exp()


def kl_via_torch_distributions(old_logits, new_logits):
    return kl_divergence(Categorical(logits=old_logits.detach()), Categorical(logits=new_logits))


def kl_via_functional(old_logits, new_logits):
    old_log_p = F.log_softmax(old_logits.detach(), dim=-1)
    return F.kl_div(F.log_softmax(new_logits, dim=-1), old_log_p, log_target=True, reduction="none").sum(-1)


def cg_written_differently(Avp, b, n_steps=10, tol=1e-10):
    """Right, but organised differently: tol checked after each update, dot products via torch.dot."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    if rr < tol:
        return x
    for _ in range(n_steps):
        Ap = Avp(p)
        alpha = rr / torch.dot(p, Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_next = torch.dot(r, r)
        if rr_next < tol:
            break
        p = r + (rr_next / rr) * p
        rr = rr_next
    return x


RIGHT_ANSWERS = [
    ("test_probability_ratio", ratio_written_differently),
    ("test_categorical_kl", kl_via_torch_distributions),
    ("test_categorical_kl", kl_via_functional),
    ("test_conjugate_gradient", cg_written_differently),
]


@pytest.mark.parametrize("grade_id, answer", RIGHT_ANSWERS)
def test_right_answers_written_differently_pass_on_many_seeds(grade_id, answer):
    for seed in range(15):
        for hidden in (False, True):
            verdict = graded(grade_id, answer, hidden, seed)
            assert verdict.passed, (seed, verdict.message)


MISTAKES = [(grade_id, mistake) for grade_id in ("test_probability_ratio", "test_categorical_kl",
                                                 "test_conjugate_gradient")
            for mistake in get(grade_id).mistakes]


@pytest.mark.parametrize("grade_id, mistake", MISTAKES, ids=lambda m: getattr(m, "name", m))
@pytest.mark.parametrize("hidden", [False, True])
def test_each_classic_mistake_loses_the_points_and_is_named(grade_id, mistake, hidden):
    verdict = graded(grade_id, mistake.implementation, hidden)
    assert not verdict.passed
    assert verdict.mistake == mistake.name and mistake.message in verdict.message


@pytest.mark.parametrize("grade_id", ["test_probability_ratio", "test_categorical_kl", "test_conjugate_gradient"])
def test_references_pass_their_own_checks(grade_id):
    reference = get(grade_id).reference
    outputs, _ = run_answer(get(grade_id), reference, 7, True)
    assert verify(grade_id, True, 7, outputs).passed  # judged as if it were a student's outputs


def test_visible_cg_feedback_says_how_many_calls_were_expected():
    def no_early_stop(Avp, b, n_steps=10, tol=1e-10):
        return cg_written_differently(Avp, b, n_steps, tol=-1.0)

    verdict = graded("test_conjugate_gradient", no_early_stop, hidden=False)
    assert "Avp was called 10 times, expected 3" in verdict.message
    assert "ignores tol" in verdict.message


def test_ratio_feedback_shows_the_nan_of_the_naive_version():
    verdict = graded("test_probability_ratio", lambda new_log_probs, old_log_probs:
                     new_log_probs.exp() / old_log_probs.detach().exp(), hidden=False)
    assert "got nan" in verdict.message and "underflow" in verdict.message


def test_unimplemented_exercises_score_zero_without_crashing():
    def stub(*args, **kwargs):
        raise NotImplementedError()

    for grade_id in ("test_probability_ratio", "test_categorical_kl", "test_conjugate_gradient"):
        for hidden in (False, True):
            verdict = graded(grade_id, stub, hidden)
            assert not verdict.passed and "not implemented yet" in verdict.message


# --- the TRPO update and trainer ----------------------------------------------------------------

def fresh_rollout(seed=0, num_envs=8, num_steps=64, hidden=16):
    torch.manual_seed(seed)
    agent = ActorCritic(hidden=hidden)
    rollout = RolloutCollector(BatchedCartPole(num_envs, seed=seed), seed=seed).collect(agent, num_steps)
    return agent, rollout


def test_fisher_vector_product_matches_the_explicit_hessian_of_the_kl():
    torch.manual_seed(0)
    actor = torch.nn.Linear(3, 2)  # small enough to build the Hessian explicitly
    obs = torch.randn(20, 3)
    with torch.no_grad():
        old_logits = actor(obs)
    params = list(actor.parameters())
    shapes = [p.shape for p in params]

    def mean_kl(flat):
        weight, bias = flat[:6].reshape(shapes[0]), flat[6:].reshape(shapes[1])
        return categorical_kl(old_logits, obs @ weight.T + bias).mean()

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    hessian = torch.autograd.functional.hessian(mean_kl, flat)
    v = torch.randn(8)
    product = fisher_vector_product(actor, obs, old_logits, damping=0.1)
    assert torch.allclose(product(v), hessian @ v + 0.1 * v, atol=1e-5)


def test_a_trpo_step_respects_the_trust_region_and_improves_the_surrogate():
    agent, rollout = fresh_rollout()
    config = TRPOConfig(max_kl=0.01)
    before = [p.detach().clone() for p in agent.actor.parameters()]
    step = trpo_policy_step(agent.actor, rollout, config)
    assert step["step_accepted"] and 0 < step["kl"] <= 0.01 and step["surrogate_improvement"] > 0
    with torch.no_grad():
        kl = categorical_kl(rollout.logits, agent.actor(rollout.obs)).mean().item()
    assert kl == pytest.approx(step["kl"])
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.actor.parameters()))


def test_a_tiny_trust_region_still_moves_and_a_zero_signal_changes_nothing():
    agent, rollout = fresh_rollout(seed=1)
    step = trpo_policy_step(agent.actor, rollout, TRPOConfig(max_kl=1e-6))
    assert step["step_accepted"] and step["kl"] <= 1e-6
    rollout.advantages = torch.zeros_like(rollout.advantages)
    before = [p.detach().clone() for p in agent.actor.parameters()]
    step = trpo_policy_step(agent.actor, rollout, TRPOConfig())
    assert not step["step_accepted"]
    assert all(torch.equal(b, p) for b, p in zip(before, agent.actor.parameters()))


@pytest.mark.parametrize("changes, argument", [
    (dict(max_kl=0.0), "max_kl must be > 0"),
    (dict(cg_steps=0), "cg_steps must be a positive integer"),
    (dict(backtrack_coef=1.0), "backtrack_coef must be in"),
    (dict(gamma=1.5), "gamma must be in"),
    (dict(cg_damping=-0.1), "cg_damping must be >= 0"),
    (dict(total_timesteps=100), "total_timesteps=100 is less than one rollout"),
])
def test_trpo_config_rejects_bad_values_naming_them(changes, argument):
    with pytest.raises(ValueError, match=argument):
        TRPOConfig(**changes)


# A seeded run's trajectory depends on the CPU's floating-point kernels, and TRPO's outcome on
# CartPole varies a lot from seed to seed: judge the median of five seeds. Measured here (AMD EPYC),
# the mean return of the episodes ending in the last 8 of the 48 updates, seeds 1-5: 364, 253, 309,
# 270, 176 (median 270); seeds 1-20 range 176-500 (median 392), only seed 5 below 200. A random
# policy lasts ~18 steps. Asserting median > 200: 26% under the median measured, 10x random.
@pytest.mark.slow
def test_train_trpo_learns_cartpole_on_most_seeds(one_thread):
    config, late = TRPOConfig(), {}
    for seed in range(1, 6):
        _, history = train_trpo(config.replace(seed=seed), progress=False)
        assert len(history) == config.num_updates
        assert all(row["kl"] <= config.max_kl for row in history)  # the line search's guarantee
        assert history[0]["mean_episode_return"] < 50  # it starts from a random policy
        returns = [r for row in history[-8:] for r in row["episode_returns"]]
        late[seed] = round(sum(returns) / len(returns), 1)
    assert statistics.median(late.values()) > 200, f"late mean return per seed: {late}"
    assert {"rollout_time", "policy_time", "value_time", "wall_time", "global_step"} <= set(history[-1])
