"""The clipping explorer: what PPO-Clip's objective does to one sample, and to a batch.

Left: the objective of one sample as a function of its ratio r = pi_new / pi_old, for the
advantage A and clip range epsilon set by the sliders; the unclipped r * A, the clipped
clip(r, 1 - eps, 1 + eps) * A, their minimum (what PPO maximises), and shaded, the ratios where
that minimum is flat, i.e. where the sample stops contributing gradient.
Right: a batch of sampled ratios (log r ~ Normal(0, spread), a stand-in for one update's policy
change) against the range [1 - eps, 1 + eps], with the numbers PPO logs for it. Every sample is read
with the advantage's sign and coloured by which of the four cases it is in: inside the range (the
gradient of r * A, as without a clip), outside it on the side where the clip removes its gradient,
or outside it on the other side, where the min keeps r * A and the sample still pushes.

Everything drawn is computed by the pure functions ``objective_view`` and ``batch_view``; the
widget only moves existing artists to their results, so a slider move costs one redraw.
"""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
from matplotlib.patches import Rectangle

from .. import validate
from ..style import COLORS, ZERO_GRAD_ALPHA
from ._blit import BlitDrawer, explorer_figure

RATIO_LIMITS = (0.0, 2.0)  # the objective plot's x range
HISTOGRAM_EDGES = np.linspace(0.0, 2.5, 51)  # ratio bins of the batch view (the last one collects r >= 2.5)
MAX_ADVANTAGE = 2.0


@dataclass(frozen=True)
class ObjectiveView:
    """One sample's objective over a grid of ratios (all arrays ``[R]``)."""

    ratio: np.ndarray
    unclipped: np.ndarray  # r * A
    clipped: np.ndarray  # clip(r, 1 - eps, 1 + eps) * A
    objective: np.ndarray  # min of the two: PPO-Clip's per-sample objective
    zero_grad: tuple[float, float]  # (low, high): the ratios where d objective / d r = 0


@dataclass(frozen=True)
class BatchView:
    """A batch of ratios seen through the clip (plain floats, counts ``[bins]``)."""

    clip_fraction: float  # share with |r - 1| > eps (what PPO logs), whatever the advantage's sign
    gradient_removed_fraction: float  # share where the clip removes the gradient, for the advantage's sign
    gradient_kept_fraction: float  # share outside the range on the other side: the min keeps r * A there
    approx_kl: float  # mean of (r - 1) - log r
    quadratic_kl: float  # eps^2 / 2, the k3 estimate at the clip boundary to second order
    counts: np.ndarray  # histogram of all the ratios over HISTOGRAM_EDGES
    in_range: np.ndarray  # histogram of the ratios inside [1 - eps, 1 + eps]
    removed: np.ndarray  # histogram of those outside it whose gradient the clip removes
    kept: np.ndarray  # histogram of those outside it whose gradient is kept (in_range + removed + kept = counts)


def objective_view(epsilon: float, advantage: float, ratio: np.ndarray | None = None) -> ObjectiveView:
    """The curves and the zero-gradient interval of the left plot.

    Args:
        epsilon: clip range, in (0, 1).
        advantage: the sample's advantage A (any sign).
        ratio: ``[R]`` grid of ratios (default: 401 points over RATIO_LIMITS).
    """
    epsilon = validate.in_open_interval("epsilon", epsilon, 0.0, 1.0)
    advantage = validate.number("advantage", advantage)
    ratio = np.linspace(*RATIO_LIMITS, 401) if ratio is None else np.asarray(ratio, dtype=float)
    unclipped = ratio * advantage
    clipped = np.clip(ratio, 1 - epsilon, 1 + epsilon) * advantage
    low, high = RATIO_LIMITS
    if advantage > 0:  # pushing r up is rewarded, and stops paying beyond 1 + eps
        zero_grad = (1 + epsilon, high)
    elif advantage < 0:  # pushing r down is rewarded, and stops paying below 1 - eps
        zero_grad = (low, 1 - epsilon)
    else:  # A = 0: the objective is 0 for every ratio
        zero_grad = (low, high)
    return ObjectiveView(ratio, unclipped, clipped, np.minimum(unclipped, clipped), zero_grad)


def sample_ratios(spread: float, size: int = 4000, seed: int = 0) -> np.ndarray:
    """``[size]`` ratios with log r ~ Normal(0, spread): a policy that moved by about ``spread``."""
    spread = validate.non_negative("spread", spread)
    standard = np.random.default_rng(seed).standard_normal(size)  # same draws for every spread
    return np.exp(spread * standard)


def batch_view(epsilon: float, ratios: np.ndarray, advantage_sign: float = 1.0) -> BatchView:
    """The numbers and histogram of the right plot for ratios ``[B]`` and clip range ``epsilon``.

    ``advantage_sign``: the batch is read as if every sample had an advantage of this sign,
    which decides on which side of the range the clip removes gradient (0: nowhere: with A = 0
    there is no gradient to remove). Each sample falls in one of three classes, histogrammed
    separately: in range, outside with its gradient removed, outside with its gradient kept.
    """
    epsilon = validate.in_open_interval("epsilon", epsilon, 0.0, 1.0)
    ratios = np.asarray(ratios, dtype=float)
    if ratios.ndim != 1 or ratios.size == 0 or not np.isfinite(ratios).all() or (ratios <= 0).any():
        raise ValueError(f"ratios must be a non-empty 1-D array of finite positive numbers, got {ratios!r:.80}")
    sign = np.sign(validate.number("advantage_sign", advantage_sign))
    outside = np.abs(ratios - 1) > epsilon
    if sign > 0:
        removed = ratios > 1 + epsilon
    elif sign < 0:
        removed = ratios < 1 - epsilon
    else:
        removed = np.zeros_like(ratios, dtype=bool)
    kept = outside & ~removed

    def histogram(selected: np.ndarray) -> np.ndarray:
        return np.histogram(np.minimum(ratios[selected], HISTOGRAM_EDGES[-1] - 1e-9), HISTOGRAM_EDGES)[0]

    return BatchView(
        clip_fraction=float(outside.mean()),
        gradient_removed_fraction=float(removed.mean()),
        gradient_kept_fraction=float(kept.mean()),
        approx_kl=float(np.mean((ratios - 1) - np.log(ratios))),
        quadratic_kl=epsilon ** 2 / 2,
        counts=histogram(np.ones_like(outside)),
        in_range=histogram(~outside),
        removed=histogram(removed),
        kept=histogram(kept),
    )


def readout_html(epsilon: float, batch: BatchView) -> str:
    """The numbers under the figure, as one line of HTML."""
    return (
        f"<b>clip fraction</b> {batch.clip_fraction:.3f} (|r &minus; 1| &gt; {epsilon:.2f}) &nbsp;·&nbsp; "
        f"of which <b>gradient removed</b> {batch.gradient_removed_fraction:.3f}, "
        f"<b>still pushing</b> {batch.gradient_kept_fraction:.3f} &nbsp;·&nbsp; "
        f"<b>approx KL</b> {batch.approx_kl:.4f} &nbsp;·&nbsp; "
        f"<b>&epsilon;&sup2;/2</b> {batch.quadratic_kl:.4f}"
    )


class ClipExplorer(widgets.VBox):
    """Sliders for epsilon, the advantage and the batch's spread, an ipympl figure and a readout.

    ``clip_explorer()`` builds one; the attributes are public so tests (and curious students)
    can drive the sliders and look at the artists.
    """

    def __init__(self, epsilon: float = 0.2, advantage: float = 1.0, spread: float = 0.15, seed: int = 0):
        self.seed = seed  # the batch keeps its draws as the spread changes
        style = {"description_width": "150px"}
        layout = widgets.Layout(width="460px")
        self.epsilon = widgets.FloatSlider(value=epsilon, min=0.05, max=0.5, step=0.01, description="clip range ε",
                                           style=style, layout=layout, continuous_update=True)
        self.advantage = widgets.FloatSlider(value=advantage, min=-MAX_ADVANTAGE, max=MAX_ADVANTAGE, step=0.1,
                                             description="advantage A", style=style, layout=layout)
        self.spread = widgets.FloatSlider(value=spread, min=0.0, max=0.5, step=0.01,
                                          description="batch spread (std log r)", style=style, layout=layout)
        self.readout = widgets.HTML()
        self.figure = explorer_figure((9.5, 3.6))
        self.canvas = self.figure.canvas
        self._build_objective_axes(self.figure.add_subplot(1, 2, 1))
        self._build_batch_axes(self.figure.add_subplot(1, 2, 2))
        for slider in (self.epsilon, self.advantage, self.spread):
            slider.observe(self._on_change, names="value")
        self.drawer = BlitDrawer(self.figure, [
            self.zero_grad_patch, self.unclipped_line, self.clipped_line, self.objective_line,
            *self.objective_bounds, self.band_patch, self.in_range_bars, self.kept_bars, self.removed_bars,
            self.batch_axes.yaxis,
        ])
        self.update()
        super().__init__([self.epsilon, self.advantage, self.spread, self.canvas, self.readout])

    def _build_objective_axes(self, ax) -> None:
        ax.set(xlim=RATIO_LIMITS, ylim=(-1.05 * MAX_ADVANTAGE * RATIO_LIMITS[1], 1.05 * MAX_ADVANTAGE * RATIO_LIMITS[1]),
               xlabel="ratio r = π_new / π_old", ylabel="objective L(r)", title="one sample")
        self.zero_grad_patch = Rectangle((0, 0), 0, 1, transform=ax.get_xaxis_transform(),
                                         color=COLORS["zero_grad"], alpha=ZERO_GRAD_ALPHA, label="gradient = 0")
        ax.add_patch(self.zero_grad_patch)
        (self.unclipped_line,) = ax.plot([], [], color=COLORS["unclipped"], ls="--", label="r·A (unclipped)")
        (self.clipped_line,) = ax.plot([], [], color=COLORS["clipped"], ls=":", lw=2, label="clip(r)·A")
        (self.objective_line,) = ax.plot([], [], color=COLORS["objective"], lw=2.5, label="min: PPO-Clip")
        self.objective_bounds = [ax.axvline(1.0, color="0.5", lw=0.8) for _ in range(2)]
        ax.axhline(0.0, color="0.8", lw=0.8)
        ax.legend(loc="upper left", fontsize=8)

    def _build_batch_axes(self, ax) -> None:
        ax.set(xlim=(HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1]), xlabel="ratio r (batch of 4000 samples)",
               ylabel="samples", title="a batch of ratios, all with A's sign")
        self.band_patch = Rectangle((0, 0), 0, 1, transform=ax.get_xaxis_transform(), color=COLORS["objective"],
                                    alpha=ZERO_GRAD_ALPHA, label="[1 − ε, 1 + ε]")
        ax.add_patch(self.band_patch)
        # Three stacked step patches over the same bins, one per case. Blue where the sample's
        # objective is r * A (its gradient is the unclipped one): solid inside the range, hatched
        # outside it on the side the min does not clip; red, the left plot's zero-gradient colour,
        # where the clip removes the gradient.
        empty = np.zeros(len(HISTOGRAM_EDGES) - 1)
        self.in_range_bars = ax.stairs(empty, HISTOGRAM_EDGES, fill=True, color=COLORS["unclipped"],
                                       label="in range")
        self.kept_bars = ax.stairs(empty, HISTOGRAM_EDGES, fill=True, facecolor="white", edgecolor=COLORS["unclipped"],
                                   hatch="////", lw=0.8, label="outside, not clipped: still pushes")
        self.removed_bars = ax.stairs(empty, HISTOGRAM_EDGES, fill=True, color=COLORS["zero_grad"],
                                      label="outside, clipped: gradient 0")
        self.batch_axes = ax
        ax.legend(loc="upper right", fontsize=8)

    def _on_change(self, change) -> None:
        self.update()

    def update(self) -> None:
        """Move every artist to the views of the current slider values and redraw once."""
        eps, advantage = self.epsilon.value, self.advantage.value
        view = objective_view(eps, advantage)
        self.unclipped_line.set_data(view.ratio, view.unclipped)
        self.clipped_line.set_data(view.ratio, view.clipped)
        self.objective_line.set_data(view.ratio, view.objective)
        low, high = view.zero_grad
        self.zero_grad_patch.set_x(low)
        self.zero_grad_patch.set_width(high - low)
        for line, x in zip(self.objective_bounds, (1 - eps, 1 + eps)):
            line.set_xdata([x, x])

        batch = batch_view(eps, sample_ratios(self.spread.value, seed=self.seed), advantage)
        self.in_range_bars.set_data(batch.in_range, baseline=0)
        self.kept_bars.set_data(batch.in_range + batch.kept, baseline=batch.in_range)
        self.removed_bars.set_data(batch.in_range + batch.kept + batch.removed, baseline=batch.in_range + batch.kept)
        self.batch_axes.set_ylim(0, 1.5 * max(batch.counts.max(), 1))  # headroom for the legend
        self.band_patch.set_x(1 - eps)
        self.band_patch.set_width(2 * eps)
        self.readout.value = readout_html(eps, batch)
        self.drawer.redraw()


def clip_explorer(epsilon: float = 0.2, advantage: float = 1.0, spread: float = 0.15, seed: int = 0) -> ClipExplorer:
    """Show PPO-Clip's objective and a batch of ratios, driven by sliders (display the result)."""
    return ClipExplorer(epsilon=epsilon, advantage=advantage, spread=spread, seed=seed)
