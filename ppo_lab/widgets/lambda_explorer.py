"""The lambda explorer: how GAE's lambda trades bias for variance, on a chain with known truth.

Two sliders (lambda, gamma) drive one ipympl figure:
  left:  one episode of the chain (ppo_lab.experiments.gae) -- the GAE estimate A_hat_t next to its
         target Q(s_t, a_t) - V_hat(s_t), computed with a deliberately imperfect critic;
  right: exact bias^2, variance and their sum over all visited (s, a) as a function of lambda,
         with the current lambda marked.
A readout states the effective horizon 1 / (1 - gamma * lambda).

Everything drawn is :func:`explorer_view` of the slider values (tested without a browser); the
figure's artists are only updated in place, and the lambda curves are cached per gamma, so a
slider move costs one small GAE pass.
"""
from __future__ import annotations

from functools import lru_cache

import ipywidgets as widgets
import torch

from ..experiments import gae as gae_lab
from ..style import COLORS
from ._blit import BlitDrawer, explorer_figure

LAMBDA_GRID = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
EPISODE_SEED = 0
# bias² + variance in neutral grey: black is the truth in the episode panel.
CURVE_COLORS = {"bias2": COLORS["zero_grad"], "variance": COLORS["clipped"], "mse": COLORS["vanilla_pg"]}
CURVE_LABELS = {"bias2": "bias²", "variance": "variance", "mse": "bias² + variance"}


def _curves(mdp: gae_lab.ChainMDP, gamma: float) -> dict[str, torch.Tensor]:
    # Rounded so that 0.95 and 0.9500000000000001 (a slider's float steps) share one cache entry.
    return _cached_curves(mdp, round(gamma, 6))


@lru_cache(maxsize=256)
def _cached_curves(mdp: gae_lab.ChainMDP, gamma: float) -> dict[str, torch.Tensor]:
    return gae_lab.gae_statistics(mdp, gamma, LAMBDA_GRID)


@lru_cache(maxsize=4)
def _episode(mdp: gae_lab.ChainMDP) -> dict[str, torch.Tensor]:
    return gae_lab.one_episode(mdp, seed=EPISODE_SEED)


def explorer_view(gamma: float, gae_lambda: float, mdp: gae_lab.ChainMDP = gae_lab.ChainMDP()) -> dict:
    """Everything the explorer shows for these slider values.

    Returns:
        dict with ``steps`` ``[T]``, ``target`` ``[T]`` (Q(s_t, a_t) - V_hat(s_t)) and
        ``estimate`` ``[T]`` (GAE with this gamma and lambda) for the fixed episode;
        ``lambdas`` ``[L]`` and ``bias2``, ``variance``, ``mse`` ``[L]`` curves for this gamma;
        ``current`` (dict of the three statistics at exactly ``gae_lambda``) and
        ``horizon`` = 1 / (1 - gamma * lambda) (inf at gamma * lambda = 1).
    """
    gamma, gae_lambda = float(gamma), float(gae_lambda)
    horizon = gae_lab.effective_horizon(gamma, gae_lambda)  # also validates both values
    episode = _episode(mdp)
    target = gae_lab.target_advantages(mdp, gamma)[episode["states"], episode["actions"]]
    estimate = gae_lab.gae_on(episode, mdp, gamma, gae_lambda)
    curves = _curves(mdp, gamma)
    current = gae_lab.gae_statistics(mdp, gamma, [gae_lambda])
    return {
        "steps": torch.arange(len(target)),
        "target": target,
        "estimate": estimate,
        "lambdas": curves["lambdas"],
        **{key: curves[key] for key in CURVE_LABELS},
        "current": {key: current[key].item() for key in CURVE_LABELS},
        "horizon": horizon,
    }


def readout_html(view: dict, gamma: float, gae_lambda: float) -> str:
    """The numbers that matter, as one line of HTML."""
    horizon = "∞" if view["horizon"] == float("inf") else f"{view['horizon']:.1f}"
    current = view["current"]
    return (
        f"effective horizon 1/(1 − γλ) = <b>{horizon}</b> steps (γ = {gamma:.2f}, λ = {gae_lambda:.2f}) · "
        f"bias² = {current['bias2']:.4f} · variance = {current['variance']:.4f} · "
        f"bias² + variance = {current['mse']:.4f}"
    )


class LambdaExplorer:
    """Sliders for lambda and gamma driving the explorer figure; display it in a notebook.

    The figure sits on its own ipympl canvas (a widget) whatever matplotlib backend is active.
    """

    def __init__(self, gae_lambda: float = 0.95, gamma: float = 0.99, mdp: gae_lab.ChainMDP = gae_lab.ChainMDP()):
        self.mdp = mdp
        self.lambda_slider = widgets.FloatSlider(value=gae_lambda, min=0.0, max=1.0, step=0.01,
                                                 description="λ", readout_format=".2f")
        self.gamma_slider = widgets.FloatSlider(value=gamma, min=0.8, max=1.0, step=0.01,
                                                description="γ", readout_format=".2f")
        self.readout = widgets.HTML()
        self.figure = explorer_figure((9, 3.6))
        self.episode_ax, self.curves_ax = self.figure.subplots(1, 2)
        # Solve the curves for every gamma on the slider now (~1 s), so that no move waits for them.
        steps = round((self.gamma_slider.max - self.gamma_slider.min) / self.gamma_slider.step)
        for k in range(steps + 1):
            _curves(mdp, self.gamma_slider.min + k * self.gamma_slider.step)
        self._build_artists()
        self.drawer = BlitDrawer(self.figure, [self.target_line, self.estimate_line, *self.curve_lines.values(),
                                               self.lambda_marker, self.curves_ax.yaxis])
        self.update()
        for slider in (self.lambda_slider, self.gamma_slider):
            slider.observe(lambda change: self.update(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.lambda_slider, self.gamma_slider]), self.readout,
                                    self.figure.canvas])

    def _build_artists(self) -> None:
        view = explorer_view(self.gamma_slider.value, self.lambda_slider.value, self.mdp)
        ax = self.episode_ax
        steps = view["steps"].numpy()
        (self.target_line,) = ax.plot(steps, view["target"].numpy(), "o-", color=COLORS["truth"], ms=4,
                                      label="target Q(s_t, a_t) − V̂(s_t)")
        (self.estimate_line,) = ax.plot(steps, view["estimate"].numpy(), "s-", color=COLORS["estimate"], ms=4,
                                        label="GAE estimate Â_t")
        ax.axhline(0.0, color="0.8", lw=0.8)
        ax.set(xlabel="step t of one episode", ylabel="advantage A", ylim=(-1.6, 1.6),
               title="one episode: estimate vs target")
        ax.legend(loc="upper left", fontsize=8)
        ax = self.curves_ax
        self.curve_lines = {
            key: ax.plot(view["lambdas"].numpy(), view[key].numpy(), color=CURVE_COLORS[key], label=label)[0]
            for key, label in CURVE_LABELS.items()
        }
        self.lambda_marker = ax.axvline(self.lambda_slider.value, color=COLORS["estimate"], ls="--", lw=1.2)
        ax.set(xlabel="GAE λ", ylabel="averaged over visited (s, a)", xlim=(0, 1),
               title="bias² and variance of Â_t")
        ax.legend(loc="upper center", fontsize=8)

    def update(self) -> None:
        """Redraw for the current slider values (in place: set_ydata / set_xdata only)."""
        gamma, gae_lambda = self.gamma_slider.value, self.lambda_slider.value
        view = explorer_view(gamma, gae_lambda, self.mdp)
        self.target_line.set_ydata(view["target"].numpy())
        self.estimate_line.set_ydata(view["estimate"].numpy())
        for key, line in self.curve_lines.items():
            line.set_ydata(view[key].numpy())
        self.curves_ax.set_ylim(0.0, 1.05 * view["mse"].max().item())
        self.lambda_marker.set_xdata([gae_lambda, gae_lambda])
        self.readout.value = readout_html(view, gamma, gae_lambda)
        self.drawer.redraw()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
