"""What chapter 7 measures and shows beyond its exercises: the probe states, the policy snapshots,
the swings it renders (``ppo_lab/experiments/continuous.py``), and the checkpoint slider
(``ppo_lab/widgets/policy_checkpoints.py``), without a browser."""
import math

import matplotlib
import numpy as np
import pytest
import torch

from ppo_lab import gaussian_entropy
from ppo_lab.algos.ppo import PPOConfig, train_ppo
from ppo_lab.algos.rollout import env_and_agent
from ppo_lab.experiments import continuous as lab
from ppo_lab.models.actor_critic import GaussianActorCritic
from ppo_lab.widgets.policy_checkpoints import ActionDistributionExplorer, distribution_view

matplotlib.use("Agg")


class ConstantTorque:
    def __init__(self, torque):
        self.torque = torque

    def act(self, obs, deterministic=True):
        return torch.full((len(obs), 1), float(self.torque))


def test_observations_are_gymnasiums_cos_sin_and_velocity():
    obs = lab.observations([(0.0, 0.0), (math.pi, 1.5), (math.pi / 2, -2.0)])
    torch.testing.assert_close(obs, torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 1.5], [0.0, 1.0, -2.0]]),
                               atol=1e-6, rtol=0)  # fmt: skip
    assert obs.dtype == torch.float32 and lab.observations(lab.PROBE_STATES.values()).shape == (4, 3)


def test_swing_of_a_pendulum_at_rest_at_the_bottom_with_no_torque_stays_there():
    played = lab.swing(ConstantTorque(0.0), math.pi, 0.0, steps=50)
    assert set(played) == {"theta", "theta_dot", "torque", "reward", "return"}
    assert all(len(played[key]) == 50 for key in ("theta", "theta_dot", "torque", "reward"))
    np.testing.assert_allclose(np.abs(played["theta"]), math.pi, atol=1e-6)
    np.testing.assert_allclose(played["reward"], -(math.pi**2), rtol=1e-5)  # the cost of hanging down
    assert played["return"] == pytest.approx(played["reward"].sum())


def test_swing_clips_the_torque_and_plays_gymnasiums_physics():
    played = lab.swing(ConstantTorque(5.0), 0.5, 0.0, steps=3)
    assert played["torque"].tolist() == [2.0, 2.0, 2.0]
    # theta_dot' = theta_dot + (3 g / 2 l sin theta + 3 torque) dt, theta' = theta + theta_dot' dt (g = 10, dt = 0.05)
    theta_dot = (15 * math.sin(0.5) + 6.0) * 0.05
    assert played["theta_dot"][1] == pytest.approx(theta_dot, rel=1e-6)
    assert played["theta"][1] == pytest.approx(0.5 + theta_dot * 0.05, rel=1e-6)
    with pytest.raises(ValueError, match="steps must be in"):
        lab.swing(ConstantTorque(0.0), steps=201)


def test_policy_snapshots_follow_training():
    config = PPOConfig.fast_pendulum(num_envs=8, num_steps=25, total_timesteps=6 * 200, hidden=16)
    _, agent = env_and_agent(config)
    snapshots = lab.PolicySnapshots(agent, every=4, total_updates=config.num_updates)
    trained, history = train_ppo(config, agent=agent, callback=snapshots, progress=False)
    assert len(history) == 6 and snapshots.steps == [0] + [row["global_step"] for row in history]
    assert [s.update for s in snapshots.snapshots] == [0, 4, 6]  # before, every 4th update, the last
    assert snapshots.sigmas[0] == 1.0 and snapshots.sigmas[-1] == pytest.approx(trained.log_std.exp().item())
    last = snapshots.snapshots[-1]
    expected = trained.act(lab.observations(lab.PROBE_STATES.values()), deterministic=True)[:, 0]
    np.testing.assert_allclose(last.mean, expected.numpy(), rtol=1e-6)
    assert not np.allclose(snapshots.snapshots[0].mean, last.mean)  # the snapshot is a copy, not a view


def test_draw_pendulum_puts_the_rod_where_gymnasium_does():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    lab.draw_pendulum(ax, math.pi / 2, torque=1.0)  # a quarter turn counter-clockwise from upright: pointing left
    (rod,) = ax.lines
    np.testing.assert_allclose(rod.get_xydata(), [[0.0, 0.0], [-1.0, 0.0]], atol=1e-12)
    assert len(ax.patches) == 3  # bob, pivot, torque arc
    plt.close(fig)


# --- the checkpoint slider -------------------------------------------------------------------------

def test_distribution_view_by_hand():
    view = distribution_view([0.0, 2.0, -5.0], std=0.5)
    step = view.torque[1] - view.torque[0]
    np.testing.assert_allclose(view.density[:2].sum(1) * step, 1.0, atol=1e-3)  # densities inside the grid
    assert view.clipped_fraction[0] == pytest.approx(2 * 0.5 * math.erfc(4 / math.sqrt(2)))  # 4 sigma out
    assert view.clipped_fraction[1] == pytest.approx(0.5, abs=1e-9)  # mean on the bound: half of it clipped
    assert view.clipped_fraction[2] == pytest.approx(1.0)
    assert view.density[0].max() == pytest.approx(1 / (0.5 * math.sqrt(2 * math.pi)), rel=1e-3)
    assert view.entropy == pytest.approx(gaussian_entropy(torch.tensor([math.log(0.5)])).item(), rel=1e-6)
    with pytest.raises(ValueError, match="std must be a positive number"):
        distribution_view([0.0], std=0.0)


def test_the_slider_moves_the_same_artists_to_each_checkpoint():
    snapshots = [lab.Snapshot(0, 0, np.array([0.0, 0.0]), 1.0), lab.Snapshot(5, 8000, np.array([-1.0, 2.5]), 0.4)]
    explorer = ActionDistributionExplorer(snapshots, ["a", "b"])
    lines, readout = list(explorer.density_lines), explorer.readout.value
    assert "σ</b> 1.000" in readout and "b 5%" in readout  # P(|z| > 2)
    explorer.slider.value = 1
    assert explorer.density_lines == lines  # moved in place, not redrawn as new artists
    assert explorer.mean_lines[1].get_xdata()[0] == 2.5
    np.testing.assert_allclose(lines[0].get_ydata(), distribution_view([-1.0], 0.4).density[0])
    assert "σ</b> 0.400" in explorer.readout.value and "b 89%" in explorer.readout.value
    with pytest.raises(ValueError, match="one mean per state"):
        ActionDistributionExplorer(snapshots, ["only one"])
    with pytest.raises(ValueError, match="snapshots is empty"):
        ActionDistributionExplorer([], ["a"])


def test_the_slider_shows_a_trained_agents_snapshots():
    agent = GaussianActorCritic(hidden=8)
    snapshots = lab.PolicySnapshots(agent)
    explorer = ActionDistributionExplorer(snapshots.snapshots, list(snapshots.states))
    assert len(explorer.density_lines) == len(lab.PROBE_STATES) and explorer.slider.options[0][0].startswith("update 0")
