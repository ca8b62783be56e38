"""The chain MDP of ppo_lab.experiments.gae and the lambda explorer drawn from it (no browser needed)."""
import matplotlib
import pytest
import torch

from ppo_lab import compute_gae
from ppo_lab.experiments import gae as gae_lab
from ppo_lab.experiments.gae import ChainMDP
from ppo_lab.widgets.lambda_explorer import LambdaExplorer, explorer_view

MDP = ChainMDP()
LAMBDAS = torch.linspace(0, 1, 21)


def test_true_values_satisfy_bellman_and_are_antisymmetric_for_a_fair_walk():
    gamma = 0.95
    values, q = gae_lab.true_values(MDP, gamma), gae_lab.true_q(MDP, gamma)
    torch.testing.assert_close(values, q @ torch.tensor([0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(values, -values.flip(0))  # +1 on the right, -1 on the left
    assert values[-1] > values[0]


def test_undiscounted_values_of_the_fair_walk_are_linear():
    # Gambler's ruin: with gamma = 1 and +/-1 at the ends, V(s) = (2 (s + 1) / (S + 1)) - 1.
    states = torch.arange(MDP.num_states, dtype=torch.float64)
    expected = 2 * (states + 1) / (MDP.num_states + 1) - 1
    torch.testing.assert_close(gae_lab.true_values(MDP, 1.0), expected)


def test_the_critic_is_really_imperfect():
    error = gae_lab.critic_values(MDP, 0.99) - gae_lab.true_values(MDP, 0.99)
    assert error.abs().max() > 0.1


@pytest.mark.parametrize("gamma", [0.8, 0.95, 0.99, 1.0])
def test_bias_vanishes_at_lambda_one_despite_the_imperfect_critic(gamma):
    stats = gae_lab.gae_statistics(MDP, gamma, LAMBDAS)
    assert stats["bias2"][-1].item() < 1e-12
    assert stats["bias2"][0].item() > 0.05  # TD(0) inherits the critic's error


@pytest.mark.parametrize("gamma", [0.8, 0.95, 0.99, 1.0])
def test_variance_grows_and_bias_shrinks_with_lambda(gamma):
    stats = gae_lab.gae_statistics(MDP, gamma, LAMBDAS)
    assert (stats["variance"].diff() > 0).all()
    assert (stats["bias2"].diff() < 0).all()
    # lambda = 0: one reward's noise is all the randomness (moves are deterministic).
    assert stats["variance"][0].item() == pytest.approx(MDP.reward_noise**2)


def test_the_best_lambda_is_in_between_for_this_critic():
    stats = gae_lab.gae_statistics(MDP, 0.99, LAMBDAS)
    best = LAMBDAS[stats["mse"].argmin()].item()
    assert 0.3 < best < 0.95


@pytest.fixture(scope="module")
def episodes():
    return gae_lab.sample_episodes(MDP, 3000, seed=1)


@pytest.mark.parametrize("gae_lambda", [0.0, 0.7, 1.0])
def test_exact_statistics_match_sampled_episodes(episodes, gae_lambda):
    gamma = 0.95
    advantages = gae_lab.gae_on(episodes, MDP, gamma, gae_lambda)
    sampled = gae_lab.empirical_statistics(episodes, advantages, MDP, gamma)
    exact = gae_lab.gae_statistics(MDP, gamma, [gae_lambda])
    assert sampled["variance"] == pytest.approx(exact["variance"].item(), rel=0.08)
    assert sampled["bias2"] == pytest.approx(exact["bias2"].item(), rel=0.08, abs=2e-3)


def test_sampled_episodes_are_padded_with_dones_so_nothing_leaks():
    episodes = gae_lab.sample_episodes(MDP, 50, seed=2)
    padding = episodes["states"] == gae_lab.TERMINAL
    assert padding.any()
    assert (episodes["dones"][padding] == 1).all() and (episodes["rewards"][padding] == 0).all()
    # every episode ends with exactly one real step marked done
    real_done = (episodes["dones"] == 1) & ~padding
    assert (real_done.sum(0) == 1).all()


@pytest.mark.parametrize("gamma, gae_lambda, horizon", [(0.99, 0.95, 1 / (1 - 0.9405)), (0.9, 0.0, 1.0),
                                                         (1.0, 1.0, float("inf"))])
def test_effective_horizon(gamma, gae_lambda, horizon):
    assert gae_lab.effective_horizon(gamma, gae_lambda) == pytest.approx(horizon)


@pytest.mark.parametrize("call, name", [
    (lambda: ChainMDP(num_states=1), "num_states"),
    (lambda: ChainMDP(p_right=1.0), "p_right"),
    (lambda: ChainMDP(reward_noise=-1.0), "reward_noise"),
    (lambda: gae_lab.gae_statistics(MDP, 1.2, [0.5]), "gamma"),
    (lambda: gae_lab.gae_statistics(MDP, 0.9, [0.5, 1.5]), "gae_lambda"),
    (lambda: gae_lab.effective_horizon(0.9, -0.1), "gae_lambda"),
    (lambda: gae_lab.sample_episodes(MDP, 0), "num_episodes"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# --- the explorer ------------------------------------------------------------------------------------

def test_view_is_a_pure_function_of_the_slider_values():
    first, again = explorer_view(0.97, 0.6), explorer_view(0.97, 0.6)
    for key in ("target", "estimate", "bias2", "variance", "mse"):
        torch.testing.assert_close(first[key], again[key])
    assert first["horizon"] == pytest.approx(1 / (1 - 0.97 * 0.6))


def test_view_estimate_is_gae_on_the_shown_episode():
    gamma = 0.95
    episode = gae_lab.one_episode(MDP, seed=0)
    v_hat = gae_lab.critic_values(MDP, gamma)[episode["states"]]
    next_v_hat = torch.cat((v_hat[1:], torch.zeros(1)))  # the episode ends with its last step
    rewards = episode["rewards"].double()
    # lambda = 0: one TD error per step, with the imperfect critic.
    td_errors = rewards + gamma * next_v_hat - v_hat
    torch.testing.assert_close(explorer_view(gamma, 0.0)["estimate"].double(), td_errors, atol=1e-5, rtol=0)
    # lambda = 1: the discounted return of the rest of the episode minus V_hat.
    discounts = gamma ** torch.arange(len(rewards), dtype=torch.float64)
    returns = torch.stack([(rewards[t:] * discounts[: len(rewards) - t]).sum() for t in range(len(rewards))])
    torch.testing.assert_close(explorer_view(gamma, 1.0)["estimate"].double(), returns - v_hat, atol=1e-4, rtol=0)
    assert not torch.allclose(td_errors, explorer_view(gamma, 0.0)["target"], atol=1e-3)  # the critic is wrong


def test_view_current_statistics_agree_with_the_curve():
    view = explorer_view(0.99, 0.5)
    index = int(torch.isclose(view["lambdas"], torch.tensor(0.5, dtype=torch.float64)).nonzero())
    for key in ("bias2", "variance", "mse"):
        assert view["current"][key] == pytest.approx(view[key][index].item())


def test_slider_moves_update_the_same_artists_in_place():
    explorer = LambdaExplorer(gae_lambda=0.5, gamma=0.95)
    estimate_line, marker = explorer.estimate_line, explorer.lambda_marker
    before = estimate_line.get_ydata().copy()
    explorer.lambda_slider.value = 0.9
    assert explorer.estimate_line is estimate_line and explorer.lambda_marker is marker
    assert list(marker.get_xdata()) == [0.9, 0.9]
    assert not (before == estimate_line.get_ydata()).all()
    view = explorer_view(0.95, 0.9)
    torch.testing.assert_close(torch.as_tensor(estimate_line.get_ydata()), view["estimate"])
    assert "1/(1 − γλ) = <b>" + f"{1 / (1 - 0.95 * 0.9):.1f}" in explorer.readout.value

    curve = explorer.curve_lines["variance"].get_ydata().copy()
    explorer.gamma_slider.value = 1.0
    assert not (curve == explorer.curve_lines["variance"].get_ydata()).all()
    assert "<b>10.0</b>" in explorer.readout.value  # 1 / (1 - 1.0 * 0.9)
    explorer.lambda_slider.value = 1.0
    assert "<b>∞</b>" in explorer.readout.value
    assert explorer.figure.canvas in explorer.widget.children


def test_drawing_never_asks_for_another_draw(monkeypatch):
    # In a notebook (%matplotlib widget: interactive mode) a figure made through pyplot asks for a
    # full draw whenever one of its artists changes; redrawing the rescaling y axis changes its
    # ticks, so every draw asked for the next one and the kernel never went idle.
    monkeypatch.setattr(matplotlib, "is_interactive", lambda: True)
    explorer = LambdaExplorer()
    canvas = explorer.figure.canvas
    requests = []
    monkeypatch.setattr(canvas, "draw_idle", lambda: requests.append("draw_idle"))
    canvas.draw()  # the first picture, as when the browser asks for it
    for gamma in (0.8, 1.0, 0.9):  # each move rescales the curves' y axis
        explorer.gamma_slider.value = gamma
    explorer.lambda_slider.value = 0.3
    assert requests == []
    assert explorer.curves_ax.get_ylim()[1] == pytest.approx(1.05 * explorer.curve_lines["mse"].get_ydata().max())


def test_gae_on_uses_the_given_gae_function():
    episodes = gae_lab.one_episode(MDP, seed=0)
    calls = []

    def spy(*args):
        calls.append(args)
        return compute_gae(*args)

    spied = gae_lab.gae_on(episodes, MDP, 0.9, 0.5, gae=spy)
    torch.testing.assert_close(spied, gae_lab.gae_on(episodes, MDP, 0.9, 0.5))
    assert len(calls) == 1
