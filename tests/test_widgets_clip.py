"""The clipping explorer: its drawing logic (pure functions) and the widget's in-place updates, no browser."""
import math

import ipywidgets as widgets
import numpy as np
import pytest
import torch

from ppo_lab import ppo_clip_objective
from ppo_lab.widgets import ClipExplorer, clip_explorer
from ppo_lab.widgets.clip_explorer import HISTOGRAM_EDGES, RATIO_LIMITS, batch_view, objective_view, sample_ratios


@pytest.mark.parametrize("advantage, expected", [(1.3, (1.2, RATIO_LIMITS[1])), (-0.7, (RATIO_LIMITS[0], 0.8)),
                                                 (0.0, RATIO_LIMITS)])
def test_zero_gradient_interval_follows_the_sign_of_the_advantage(advantage, expected):
    assert objective_view(0.2, advantage).zero_grad == pytest.approx(expected)


@pytest.mark.parametrize("advantage", [1.5, -0.8])
def test_the_shaded_interval_is_where_autograd_finds_no_gradient(advantage):
    view = objective_view(0.25, advantage, ratio=np.linspace(0.01, 2.0, 200))  # ratios are > 0
    ratio = torch.tensor(view.ratio, dtype=torch.float64, requires_grad=True)
    per_sample = [torch.autograd.grad(ppo_clip_objective(r.view(1), torch.tensor([advantage], dtype=torch.float64),
                                                          0.25), r)[0].item() for r in ratio]
    low, high = view.zero_grad
    away_from_edges = np.abs(view.ratio - low) > 1e-6
    away_from_edges &= np.abs(view.ratio - high) > 1e-6
    inside = (view.ratio > low) & (view.ratio < high)
    grads = np.array(per_sample)
    assert np.all(grads[inside & away_from_edges] == 0.0)
    assert np.all(grads[~inside & away_from_edges] != 0.0)


def test_curves_by_hand():
    view = objective_view(0.2, -2.0, ratio=np.array([0.5, 1.0, 1.5]))
    assert view.unclipped.tolist() == pytest.approx([-1.0, -2.0, -3.0])
    assert view.clipped.tolist() == pytest.approx([-1.6, -2.0, -2.4])
    assert view.objective.tolist() == pytest.approx([-1.6, -2.0, -3.0])
    assert np.all(view.objective <= view.unclipped)


def test_batch_numbers_by_hand():
    ratios = np.array([0.5, 0.9, 1.0, 1.1, 1.5])
    batch = batch_view(0.2, ratios, advantage_sign=1.0)
    assert batch.clip_fraction == pytest.approx(2 / 5)  # 0.5 and 1.5 are outside [0.8, 1.2]
    assert batch.gradient_removed_fraction == pytest.approx(1 / 5)  # only 1.5, for A > 0
    assert batch_view(0.2, ratios, advantage_sign=-1.0).gradient_removed_fraction == pytest.approx(1 / 5)  # 0.5
    assert batch_view(0.2, ratios, advantage_sign=0.0).gradient_removed_fraction == 0.0
    k3 = [(r - 1) - math.log(r) for r in ratios]
    assert batch.approx_kl == pytest.approx(sum(k3) / 5)
    assert batch.quadratic_kl == pytest.approx(0.02)
    assert batch.counts.sum() == 5 and len(batch.counts) == len(HISTOGRAM_EDGES) - 1
    centres = (HISTOGRAM_EDGES[:-1] + HISTOGRAM_EDGES[1:]) / 2
    assert batch.outside.tolist() == (np.abs(centres - 1) > 0.2).tolist()


def test_a_policy_that_did_not_move_has_no_clipping_and_no_kl():
    batch = batch_view(0.1, sample_ratios(0.0))
    assert batch.clip_fraction == 0.0 and batch.approx_kl == 0.0


def test_wider_batches_are_clipped_more_and_sampling_is_reproducible():
    assert np.array_equal(sample_ratios(0.2, seed=3), sample_ratios(0.2, seed=3))
    fractions = [batch_view(0.2, sample_ratios(spread)).clip_fraction for spread in (0.05, 0.15, 0.3)]
    assert fractions[0] < fractions[1] < fractions[2]


@pytest.mark.parametrize("call, argument", [
    (lambda: objective_view(0.0, 1.0), "epsilon"),
    (lambda: objective_view(0.2, float("nan")), "advantage"),
    (lambda: batch_view(1.0, np.ones(3)), "epsilon"),
    (lambda: batch_view(0.2, np.array([1.0, -0.5])), "ratios"),
    (lambda: batch_view(0.2, np.array([])), "ratios"),
    (lambda: sample_ratios(-0.1), "spread"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_sliders_move_the_artists_in_place():
    explorer = clip_explorer()
    assert isinstance(explorer, (ClipExplorer, widgets.VBox)) and explorer.canvas in explorer.children
    objective_line, patch, inside = explorer.objective_line, explorer.zero_grad_patch, explorer.inside_bars

    explorer.epsilon.value = 0.3
    explorer.advantage.value = -1.5
    explorer.spread.value = 0.4

    view = objective_view(0.3, -1.5)
    batch = batch_view(0.3, sample_ratios(0.4), -1.5)
    assert explorer.objective_line is objective_line and explorer.zero_grad_patch is patch  # same artists, moved
    assert np.allclose(objective_line.get_ydata(), view.objective)
    assert (patch.get_x(), patch.get_x() + patch.get_width()) == pytest.approx(view.zero_grad)
    assert explorer.band_patch.get_x() == pytest.approx(0.7) and explorer.band_patch.get_width() == pytest.approx(0.6)
    assert explorer.inside_bars is inside
    shown = explorer.inside_bars.get_data().values + explorer.outside_bars.get_data().values
    assert shown.tolist() == batch.counts.tolist()
    assert (explorer.outside_bars.get_data().values[~batch.outside] == 0).all()
    assert (explorer.inside_bars.get_data().values[batch.outside] == 0).all()
    assert f"{batch.clip_fraction:.3f}" in explorer.readout.value
    assert f"{batch.approx_kl:.4f}" in explorer.readout.value
