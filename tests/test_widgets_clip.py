"""The clipping explorer: its drawing logic (pure functions) and the widget's in-place updates, no browser."""
import math

import ipywidgets as widgets
import numpy as np
import pytest
import torch

from ppo_lab import clip_active_mask, ppo_clip_objective
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
    assert batch.gradient_kept_fraction == pytest.approx(1 / 5)  # 0.5: a good action made rarer is pulled back
    assert batch_view(0.2, ratios, advantage_sign=-1.0).gradient_removed_fraction == pytest.approx(1 / 5)  # 0.5
    assert batch_view(0.2, ratios, advantage_sign=0.0).gradient_removed_fraction == 0.0
    k3 = [(r - 1) - math.log(r) for r in ratios]
    assert batch.approx_kl == pytest.approx(sum(k3) / 5)
    assert batch.quadratic_kl == pytest.approx(0.02)
    assert batch.counts.sum() == 5 and len(batch.counts) == len(HISTOGRAM_EDGES) - 1
    assert (batch.in_range.sum(), batch.removed.sum(), batch.kept.sum()) == (3, 1, 1)
    assert np.array_equal(batch.in_range + batch.removed + batch.kept, batch.counts)
    bin_of = lambda r: np.searchsorted(HISTOGRAM_EDGES, r, side="right") - 1  # noqa: E731
    assert batch.removed[bin_of(1.5)] == 1 and batch.kept[bin_of(0.5)] == 1


@pytest.mark.parametrize("sign", [1.0, -1.0, 0.0])
def test_each_sample_is_coloured_by_its_case_for_the_advantages_sign(sign):
    # The clip removes the gradient on one side only: above the range for A > 0, below it for A < 0,
    # nowhere for A = 0. Outside the range on the other side the min keeps r * A: still pushing.
    ratios = sample_ratios(0.3)
    batch = batch_view(0.2, ratios, advantage_sign=sign)
    centres = (HISTOGRAM_EDGES[:-1] + HISTOGRAM_EDGES[1:]) / 2
    above, below = centres > 1.2 + 0.05, centres < 0.8 - 0.05  # bins well clear of the range's edges
    removed_side, kept_side = {1.0: (above, below), -1.0: (below, above), 0.0: (np.zeros_like(above), above | below)}[sign]
    assert (batch.removed[removed_side].sum() > 0) == (sign != 0)
    assert (batch.removed[~removed_side & (above | below)] == 0).all()
    assert batch.kept[kept_side].sum() > 0 and (batch.kept[~kept_side & (above | below)] == 0).all()
    assert (batch.in_range[above | below] == 0).all()
    mask = clip_active_mask(torch.tensor(ratios), torch.full((len(ratios),), sign, dtype=torch.float64), 0.2)
    assert batch.gradient_removed_fraction == pytest.approx(mask.double().mean().item())
    assert batch.gradient_removed_fraction + batch.gradient_kept_fraction == pytest.approx(batch.clip_fraction)


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
    objective_line, patch, in_range = explorer.objective_line, explorer.zero_grad_patch, explorer.in_range_bars

    explorer.epsilon.value = 0.3
    explorer.advantage.value = -1.5
    explorer.spread.value = 0.4

    view = objective_view(0.3, -1.5)
    batch = batch_view(0.3, sample_ratios(0.4), -1.5)
    assert explorer.objective_line is objective_line and explorer.zero_grad_patch is patch  # same artists, moved
    assert np.allclose(objective_line.get_ydata(), view.objective)
    assert (patch.get_x(), patch.get_x() + patch.get_width()) == pytest.approx(view.zero_grad)
    assert explorer.band_patch.get_x() == pytest.approx(0.7) and explorer.band_patch.get_width() == pytest.approx(0.6)
    assert explorer.in_range_bars is in_range
    # Stacked: in range at the bottom, then the samples still pushing, then those whose gradient is removed.
    in_range_shown = explorer.in_range_bars.get_data()
    kept_shown, removed_shown = explorer.kept_bars.get_data(), explorer.removed_bars.get_data()
    assert in_range_shown.values.tolist() == batch.in_range.tolist()
    assert np.array_equal(kept_shown.baseline, batch.in_range)
    assert np.array_equal(kept_shown.values - kept_shown.baseline, batch.kept)
    assert np.array_equal(removed_shown.baseline, batch.in_range + batch.kept)
    assert removed_shown.values.tolist() == batch.counts.tolist()
    assert f"{batch.clip_fraction:.3f}" in explorer.readout.value
    assert f"{batch.gradient_removed_fraction:.3f}" in explorer.readout.value
    assert f"{batch.gradient_kept_fraction:.3f}" in explorer.readout.value
    assert f"{batch.approx_kl:.4f}" in explorer.readout.value


def test_a_slider_move_after_the_first_paint_is_a_blit_not_a_full_draw(monkeypatch):
    explorer = clip_explorer()
    for artist in (explorer.in_range_bars, explorer.kept_bars, explorer.removed_bars, explorer.objective_line):
        assert artist in explorer.drawer.moving and artist.get_animated()
    explorer.canvas.draw()  # the first paint: saves the background
    assert explorer.drawer.background is not None
    full_draws, blits = [], []
    explorer.canvas.mpl_connect("draw_event", full_draws.append)
    monkeypatch.setattr(explorer.canvas, "draw_idle", lambda *a, **k: full_draws.append("idle"))
    blit = explorer.canvas.blit
    monkeypatch.setattr(explorer.canvas, "blit", lambda *a, **k: (blits.append(1), blit(*a, **k)))
    explorer.advantage.value = -1.0
    explorer.epsilon.value = 0.35
    explorer.spread.value = 0.25
    assert full_draws == [] and len(blits) == 3
