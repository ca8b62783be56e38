"""The checkpoint slider of chapter 7: a Gaussian policy's action distribution at a few states, at
each checkpoint of a training run.

One panel per probe state: the density of the torque the policy samples there, N(mu(s), sigma^2),
its mean mu(s), and shaded, the torques beyond the env's bounds that the env clips. The slider picks
the checkpoint; the readout states sigma, the entropy and the share of samples the env clips.

The views are computed by the pure function ``distribution_view``; the widget only moves existing
artists to them (``BlitDrawer``), so a slider move costs one small redraw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np

from ..style import COLORS
from ._blit import BlitDrawer, explorer_figure

TORQUE_LIMITS = (-4.0, 4.0)  # the x range of every panel


@dataclass(frozen=True)
class DistributionView:
    """N(mean[s], std^2) at S states over a torque grid (arrays ``[S, G]`` and ``[S]``)."""

    torque: np.ndarray  # [G] the grid
    density: np.ndarray  # [S, G]
    clipped_fraction: np.ndarray  # [S] P(a < low) + P(a > high): samples the env clips to its bounds
    entropy: float  # of one action dimension, in nats: 0.5 * log(2 pi e sigma^2), the same at every state


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(x, dtype=float) / math.sqrt(2.0)))


def distribution_view(mean, std: float, low: float = -2.0, high: float = 2.0, torque=None) -> DistributionView:
    """The densities and the clipped shares for means ``[S]`` and one std (> 0)."""
    mean = np.atleast_1d(np.asarray(mean, dtype=float))
    if not (np.isfinite(std) and std > 0):
        raise ValueError(f"std must be a positive number, got {std!r}")
    if not low < high:
        raise ValueError(f"low must be below high, got {low!r} and {high!r}")
    torque = np.linspace(*TORQUE_LIMITS, 321) if torque is None else np.asarray(torque, dtype=float)
    z = (torque[None, :] - mean[:, None]) / std
    density = np.exp(-0.5 * z**2) / (std * math.sqrt(2 * math.pi))
    clipped = _normal_cdf((low - mean) / std) + 1.0 - _normal_cdf((high - mean) / std)
    return DistributionView(torque, density, clipped, 0.5 * math.log(2 * math.pi * math.e * std**2))


class ActionDistributionExplorer(widgets.VBox):
    """A slider over training checkpoints and one panel per probe state.

    Args:
        snapshots: the checkpoints, each with ``update``, ``global_step``, ``mean`` (``[S]``, the mean
            torque at each state) and ``std`` (sigma): ``ppo_lab.experiments.continuous.Snapshot``.
        state_names: the S probe states' names (panel titles).
        low, high: the env's action bounds.
    """

    def __init__(self, snapshots, state_names, low: float = -2.0, high: float = 2.0):
        if not snapshots:
            raise ValueError("snapshots is empty: record at least one checkpoint")
        self.snapshots, self.state_names = list(snapshots), list(state_names)
        self.low, self.high = low, high
        if any(len(np.atleast_1d(s.mean)) != len(self.state_names) for s in self.snapshots):
            raise ValueError(f"every snapshot needs one mean per state ({len(self.state_names)})")
        options = [(f"update {s.update} ({s.global_step:,} steps)", i) for i, s in enumerate(self.snapshots)]
        self.slider = widgets.SelectionSlider(options=options, value=0, description="checkpoint",
                                              style={"description_width": "90px"},
                                              layout=widgets.Layout(width="560px"), continuous_update=True)
        self.readout = widgets.HTML()
        self.figure = explorer_figure((2.6 * len(self.state_names), 2.6))
        self.canvas = self.figure.canvas
        peak = max(distribution_view(s.mean, s.std).density.max() for s in self.snapshots)
        self.density_lines, self.mean_lines = [], []
        for i, name in enumerate(self.state_names):
            ax = self.figure.add_subplot(1, len(self.state_names), i + 1)
            ax.axvspan(TORQUE_LIMITS[0], low, color=COLORS["clipped"], alpha=0.15, lw=0)
            ax.axvspan(high, TORQUE_LIMITS[1], color=COLORS["clipped"], alpha=0.15, lw=0,
                       label="clipped by the env" if i == 0 else None)
            (line,) = ax.plot([], [], color=COLORS["estimate"], lw=2, label="π(a|s) = N(μ(s), σ²)" if i == 0 else None)
            mean_line = ax.axvline(0.0, color=COLORS["truth"], lw=1, ls="--", label="μ(s)" if i == 0 else None)
            ax.set(xlim=TORQUE_LIMITS, ylim=(0, 1.1 * peak), title=name, xlabel="torque a (N·m)")
            ax.title.set_fontsize(9)
            if i == 0:
                ax.set_ylabel("density")
                ax.legend(loc="upper left", fontsize=7)
            self.density_lines.append(line)
            self.mean_lines.append(mean_line)
        self.slider.observe(self._on_change, names="value")
        self.drawer = BlitDrawer(self.figure, [*self.density_lines, *self.mean_lines])
        self.update()
        super().__init__([self.slider, self.canvas, self.readout])

    def _on_change(self, change) -> None:
        self.update()

    def update(self) -> None:
        """Move the artists to the selected checkpoint and redraw once."""
        snapshot = self.snapshots[self.slider.value]
        view = distribution_view(snapshot.mean, snapshot.std, self.low, self.high)
        for line, mean_line, density, mean in zip(self.density_lines, self.mean_lines, view.density,
                                                  np.atleast_1d(snapshot.mean)):
            line.set_data(view.torque, density)
            mean_line.set_xdata([mean, mean])
        self.readout.value = readout_html(snapshot, view, self.state_names)
        self.drawer.redraw()


def readout_html(snapshot, view: DistributionView, state_names) -> str:
    clipped = ", ".join(f"{name} {share:.0%}" for name, share in zip(state_names, view.clipped_fraction))
    return (f"<b>σ</b> {snapshot.std:.3f} &nbsp;·&nbsp; <b>entropy H</b> {view.entropy:.3f} nats &nbsp;·&nbsp; "
            f"<b>samples the env clips</b>: {clipped}")
