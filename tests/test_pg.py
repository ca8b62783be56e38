"""Chapter 1: pg_loss and reward_to_go — the references and their checks."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_lab.checks import get, verify
from ppo_lab.checks.student import run_answer
from ppo_lab.exercises.pg import pg_loss, reward_to_go


def graded(answer, hidden, seed=7, grade_id="test_pg_loss"):
    """Exactly what the grader does: run the answer on the cases, then verify the outputs."""
    outputs, used_reference = run_answer(get(grade_id), answer, seed, hidden)
    return verify(grade_id, hidden, seed, outputs, used_reference)


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

    from ppo_lab.models.actor_critic import ActorCritic
    from ppo_lab.data.make_cartpole_policy import REQUIRED_RETURN, SETTINGS
    from ppo_lab.algos.ppo import evaluate

    saved = torch.load(files("ppo_lab") / "data" / "cartpole_policy.pt", weights_only=True)
    assert saved["settings"] == SETTINGS
    agent = ActorCritic()
    agent.load_state_dict(saved["actor_critic"])
    torch.manual_seed(1)
    returns = evaluate(agent, episodes=32, deterministic=False, seed=99)  # other episodes than when it was saved
    assert sum(returns) / len(returns) >= REQUIRED_RETURN


# --- reward_to_go: reference ---------------------------------------------------------------------

def test_reward_to_go_hand_computed_with_an_episode_end_inside():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0])
    dones = torch.tensor([0.0, 1.0, 0.0, 0.0])  # the first episode ends with step 1
    # G_3 = 4, G_2 = 3 + 0.5 * 4 = 5; G_1 = 2 (its episode ends there), G_0 = 1 + 0.5 * 2 = 2
    assert torch.equal(reward_to_go(rewards, dones, gamma=0.5), torch.tensor([2.0, 2.0, 5.0, 4.0]))


def test_reward_to_go_hand_computed_time_major_rollout():
    rewards = torch.tensor([[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
    dones = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # env 0: episode of steps 0-1 (G = 1.9, 1), then step 2 alone (1); env 1: one episode 1 + 0.9 * (2 + 0.9 * 3)
    want = torch.tensor([[1.9, 1.0 + 0.9 * 4.7], [1.0, 4.7], [1.0, 3.0]])
    assert torch.allclose(reward_to_go(rewards, dones, gamma=0.9), want)


def test_reward_to_go_gamma_zero_is_the_reward_and_gamma_one_the_plain_sum():
    rewards = torch.tensor([0.5, -1.0, 2.0, 3.0])
    no_ends = torch.zeros(4)
    assert torch.equal(reward_to_go(rewards, no_ends, gamma=0.0), rewards)
    assert torch.equal(reward_to_go(rewards, no_ends, gamma=1.0), torch.tensor([4.5, 4.0, 5.0, 3.0]))
    # CartPole pays 1 per step: undiscounted, G_t counts the steps left in the episode
    ends = torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0])
    assert torch.equal(reward_to_go(torch.ones(5), ends, gamma=1.0), torch.tensor([3.0, 2.0, 1.0, 2.0, 1.0]))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 6), st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_reward_to_go_matches_the_definition_and_leaves_its_inputs_alone(steps, envs, gamma, seed):
    generator = torch.Generator().manual_seed(seed)
    rewards = torch.randn(steps, envs, generator=generator).requires_grad_(True)
    dones = (torch.rand(steps, envs, generator=generator) < 0.2).float()
    before = rewards.detach().clone(), dones.clone()
    got = reward_to_go(rewards, dones, gamma)
    assert not got.requires_grad and got.shape == rewards.shape
    assert torch.equal(rewards.detach(), before[0]) and torch.equal(dones, before[1])
    for n in range(envs):  # G_t = sum over k >= t up to the episode's end of gamma^(k - t) r_k
        for t in range(steps):
            total, discount = 0.0, 1.0
            for k in range(t, steps):
                total += discount * rewards[k, n].item()
                discount *= gamma
                if dones[k, n] == 1:
                    break
            assert got[t, n].item() == pytest.approx(total, rel=1e-4, abs=1e-4)
    assert torch.allclose(reward_to_go(rewards[:, 0], dones[:, 0], gamma), got[:, 0])  # [T] is one column of [T, N]


@pytest.mark.parametrize("rewards, dones, gamma, argument", [
    (torch.zeros(3), torch.zeros(4), 0.9, "shape mismatch"),
    (torch.tensor([1.0, float("nan")]), torch.zeros(2), 0.9, "rewards contains NaN"),
    (torch.zeros(2, 2, 2), torch.zeros(2, 2, 2), 0.9, "rewards must be 1-D or 2-D"),
    (torch.zeros(0), torch.zeros(0), 0.9, "rewards is empty"),
    ([1.0, 2.0], torch.zeros(2), 0.9, "rewards must be a torch.Tensor"),
    (torch.zeros(2), [0.0, 1.0], 0.9, "dones must be a torch.Tensor"),
    (torch.zeros(3), torch.tensor([0.0, 2.0, 0.0]), 0.9, "dones must contain only 0 and 1"),
    (torch.zeros(3), torch.zeros(3), 1.5, "gamma must be in"),
    (torch.zeros(3), torch.zeros(3), -0.1, "gamma must be in"),
    (torch.zeros(3), torch.zeros(3), float("nan"), "gamma must be finite"),
])
def test_reward_to_go_rejects_bad_input_naming_the_argument(rewards, dones, gamma, argument):
    with pytest.raises(ValueError, match=argument):
        reward_to_go(rewards, dones, gamma)


def test_reward_to_go_is_exported_by_the_package():
    import ppo_lab

    assert ppo_lab.reward_to_go is reward_to_go


# --- reward_to_go: the check --------------------------------------------------------------------

def rtg_with_a_forward_mask(rewards, dones, gamma=0.99):
    """Right, written differently: episode by episode, each G_t an explicit sum of gamma^(k - t) r_k."""
    out = torch.zeros_like(rewards)
    columns = rewards.reshape(len(rewards), -1).T
    flags = dones.reshape(len(dones), -1).T
    result = out.reshape(len(out), -1).T
    for n in range(columns.shape[0]):
        start = 0
        ends = [t for t in range(len(flags[n])) if flags[n][t] == 1] + [len(flags[n]) - 1]
        for end in ends:
            if end < start:
                continue
            segment = columns[n, start:end + 1]
            for t in range(len(segment)):
                powers = gamma ** torch.arange(len(segment) - t, dtype=rewards.dtype)
                result[n, start + t] = (segment[t:] * powers).sum()
            start = end + 1
    return out


def rtg_with_a_python_loop(rewards, dones, gamma=0.99):
    running, out = 0.0, []
    for r, d in zip(reversed(rewards), reversed(dones)):
        running = r + gamma * running * (1 - d)
        out.append(running)
    return torch.stack(out[::-1])


@pytest.mark.parametrize("answer", [rtg_with_a_forward_mask, rtg_with_a_python_loop])
def test_right_reward_to_go_answers_written_differently_pass(answer):
    for seed in range(8):
        assert graded(answer, hidden=False, seed=seed, grade_id="test_reward_to_go").passed
        verdict = graded(answer, hidden=True, seed=seed, grade_id="test_reward_to_go")
        assert verdict.passed, verdict.message


@pytest.mark.parametrize("mistake", get("test_reward_to_go").mistakes, ids=lambda m: m.name)
@pytest.mark.parametrize("hidden", [False, True])
def test_each_reward_to_go_mistake_loses_the_points_and_is_named(mistake, hidden):
    verdict = graded(mistake.implementation, hidden, grade_id="test_reward_to_go")
    assert not verdict.passed
    assert verdict.mistake == mistake.name and mistake.message in verdict.message


def test_reward_to_go_reference_passes_its_own_check_and_a_stub_scores_zero():
    assert graded(reward_to_go, hidden=True, grade_id="test_reward_to_go").passed is False  # calls the reference
    outputs, _ = run_answer(get("test_reward_to_go"), reward_to_go, 7, True)
    assert verify("test_reward_to_go", True, 7, outputs).passed

    def stub(rewards, dones, gamma=0.99):
        raise NotImplementedError()

    verdict = graded(stub, hidden=False, grade_id="test_reward_to_go")
    assert not verdict.passed and "not implemented yet" in verdict.message


def test_reward_to_go_hidden_cases_cover_time_major_rollouts_and_both_gamma_extremes():
    hidden = get("test_reward_to_go").cases(0, hidden=True)
    visible = get("test_reward_to_go").cases(0, hidden=False)
    assert any(case.kwargs["rewards"].dim() == 2 for case in visible)  # [T, N] is visible too: not a surprise
    assert any(case.kwargs["rewards"].dim() == 2 and case.kwargs["dones"].sum() > 0 for case in hidden)
    assert {0.0, 1.0} <= {case.kwargs["gamma"] for case in hidden}


def test_visible_reward_to_go_feedback_says_which_step_was_expected_what():
    verdict = graded(get("test_reward_to_go").mistakes[0].implementation, hidden=False, grade_id="test_reward_to_go")
    assert not verdict.passed
    assert "result[0] should be" in verdict.message and ", got " in verdict.message
