"""Chapter 1: pg_loss — the reference and its check."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_lab.checks import get, verify
from ppo_lab.checks.student import run_answer
from ppo_lab.pg import pg_loss


def graded(answer, hidden, seed=7):
    """Exactly what the grader does: run the answer on the cases, then verify the outputs."""
    outputs, used_reference = run_answer(get("test_pg_loss"), answer, seed, hidden)
    return verify("test_pg_loss", hidden, seed, outputs, used_reference)


def test_pg_loss_hand_computed_value_and_gradient():
    log_probs = torch.tensor([-0.5, -2.0], requires_grad=True)
    advantages = torch.tensor([2.0, 1.0])
    loss = pg_loss(log_probs, advantages)
    assert loss.item() == pytest.approx(1.5)  # -((-0.5)(2) + (-2)(1)) / 2
    (grad,) = torch.autograd.grad(loss, log_probs)
    assert torch.allclose(grad, torch.tensor([-1.0, -0.5]))  # -A / B: raise log-probs of good actions


def test_pg_loss_averages_a_time_major_rollout_over_every_element():
    log_probs = torch.tensor([[-1.0, -2.0], [-3.0, -4.0]])
    advantages = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert pg_loss(log_probs, advantages).item() == pytest.approx(5.0 / 4)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 50), st.floats(-10.0, 10.0), st.integers(0, 10_000))
def test_pg_loss_is_linear_in_the_advantages_and_gives_them_no_gradient(batch, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    log_probs = -torch.rand(batch, generator=generator) * 3
    advantages = torch.randn(batch, generator=generator).requires_grad_(True)
    scaled = pg_loss(log_probs, advantages * scale)
    assert scaled.item() == pytest.approx(scale * pg_loss(log_probs, advantages).item(), rel=1e-4, abs=1e-5)
    (grad,) = torch.autograd.grad(pg_loss(log_probs.requires_grad_(True), advantages), [advantages],
                                  allow_unused=True)
    assert grad is None  # advantages score the actions; they are not optimised


@pytest.mark.parametrize("log_probs, advantages, argument", [
    (torch.zeros(3), torch.zeros(4), "shape mismatch"),
    (torch.tensor([float("nan")]), torch.zeros(1), "log_probs contains NaN"),
    (torch.zeros(2), torch.tensor([0.0, float("inf")]), "advantages contains NaN or inf"),
    (torch.zeros(2, 2, 2), torch.zeros(2, 2, 2), "log_probs must be 1-D or 2-D"),
    (torch.zeros(0), torch.zeros(0), "log_probs is empty"),
    ([0.0], torch.zeros(1), "log_probs must be a torch.Tensor"),
])
def test_pg_loss_rejects_bad_input_naming_the_argument(log_probs, advantages, argument):
    with pytest.raises(ValueError, match=argument):
        pg_loss(log_probs, advantages)


@pytest.mark.parametrize("answer", [
    lambda log_probs, advantages: -(log_probs * advantages.detach()).mean(),
    lambda log_probs, advantages: -torch.mean(advantages * log_probs),
    lambda log_probs, advantages: -(log_probs * advantages).sum() / log_probs.numel(),
])
def test_right_answers_written_differently_pass(answer):
    for seed in range(10):
        assert graded(answer, hidden=False, seed=seed).passed
        assert graded(answer, hidden=True, seed=seed).passed


@pytest.mark.parametrize("mistake", get("test_pg_loss").mistakes, ids=lambda m: m.name)
@pytest.mark.parametrize("hidden", [False, True])
def test_each_classic_mistake_loses_the_points_and_is_named(mistake, hidden):
    verdict = graded(mistake.implementation, hidden)
    assert not verdict.passed
    assert verdict.mistake == mistake.name and mistake.message in verdict.message


def test_a_detached_loss_is_caught_by_the_gradient():
    verdict = graded(lambda log_probs, advantages: -(log_probs.detach() * advantages).mean(), hidden=False)
    assert not verdict.passed and "no gradient reaches log_probs" in verdict.message


def test_the_time_major_case_is_visible_too():
    descriptions = [case.description for case in get("test_pg_loss").cases(0, hidden=False)]
    assert "[T, N] rollout" in descriptions


def test_the_shipped_cartpole_policy_is_worth_destroying():
    """Chapter 1 starts from ppo_lab/data/cartpole_policy.pt: it must load and really balance the pole."""
    from importlib.resources import files

    from ppo_lab.agent import ActorCritic
    from ppo_lab.data.make_cartpole_policy import REQUIRED_RETURN, SETTINGS
    from ppo_lab.train import evaluate

    saved = torch.load(files("ppo_lab") / "data" / "cartpole_policy.pt", weights_only=True)
    assert saved["settings"] == SETTINGS
    agent = ActorCritic()
    agent.load_state_dict(saved["actor_critic"])
    torch.manual_seed(1)
    returns = evaluate(agent, episodes=32, deterministic=False, seed=99)  # other episodes than when it was saved
    assert sum(returns) / len(returns) >= REQUIRED_RETURN
