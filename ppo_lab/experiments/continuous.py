"""Chapter 7's measurements on Pendulum: a few probe states, snapshots of a Gaussian policy while it
trains, swings played out for rendering, and the drawing of a pendulum.

Angles follow Gymnasium's Pendulum-v1: theta = 0 is upright, theta = pi hangs down, and a positive
torque turns the pendulum counter-clockwise (theta grows). The observation is (cos theta, sin theta,
theta_dot).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..envs import BatchedPendulum
from ..envs.pendulum import MAX_TORQUE, PENDULUM_MAX_EPISODE_STEPS

# name -> (theta in rad, theta_dot in rad/s): where the policy's choice is easy to read.
PROBE_STATES = {
    "hanging down, at rest": (math.pi, 0.0),
    "swinging up, horizontal": (math.pi / 2, -4.0),
    "near the top, tipping over": (0.3, 1.0),
    "upright, at rest": (0.0, 0.0),
}


def observations(states) -> torch.Tensor:
    """``[S, 3]`` float32 observations (cos theta, sin theta, theta_dot) of ``(theta, theta_dot)`` pairs."""
    theta, theta_dot = torch.tensor([list(s) for s in states], dtype=torch.float64).T
    return torch.stack([theta.cos(), theta.sin(), theta_dot], dim=1).float()


@dataclass(frozen=True)
class Snapshot:
    """The policy at one moment of training, at the probe states."""

    update: int  # updates done so far (0: before training)
    global_step: int  # env steps so far
    mean: np.ndarray  # [S] the mean torque mu(s) at each probe state
    std: float  # sigma (state-independent)


class PolicySnapshots:
    """A ``train_ppo`` callback that watches a Gaussian policy learn.

    After every update it records sigma (``sigmas``, with ``steps``, the env steps so far); before
    the first update and after every ``every``-th one (and the last) it also keeps a ``Snapshot``
    of the mean torque at the probe states. It never stops training.

    Args:
        agent: the ``GaussianActorCritic`` being trained (with one action dimension).
        states: name -> (theta, theta_dot), default ``PROBE_STATES``.
        every: updates between snapshots.
        total_updates: the run's number of updates (the last one is always kept).
    """

    def __init__(self, agent, states: dict | None = None, every: int = 5, total_updates: int | None = None):
        self.agent, self.every, self.total_updates = agent, every, total_updates
        self.states = dict(PROBE_STATES if states is None else states)
        self.obs = observations(self.states.values())
        self.steps, self.sigmas, self.snapshots = [0], [self.sigma()], []
        self.snapshots.append(self.snapshot(0, 0))

    def sigma(self) -> float:
        return self.agent.log_std.exp()[0].item()

    @torch.no_grad()
    def snapshot(self, update: int, global_step: int) -> Snapshot:
        mean = self.agent.act(self.obs, deterministic=True)[:, 0].numpy().copy()
        return Snapshot(update, global_step, mean, self.sigma())

    def __call__(self, row) -> bool:
        self.steps.append(row["global_step"])
        self.sigmas.append(self.sigma())
        if row["update"] % self.every == 0 or row["update"] == self.total_updates:
            self.snapshots.append(self.snapshot(row["update"], row["global_step"]))
        return False


@torch.no_grad()
def swing(agent, theta: float = math.pi, theta_dot: float = 0.0, steps: int = PENDULUM_MAX_EPISODE_STEPS,
          deterministic: bool = True) -> dict:
    """Play one episode of ``agent`` from a chosen state in a ``BatchedPendulum``.

    Returns a dict of numpy arrays ``[steps]``: ``theta`` (before each step, wrapped to [-pi, pi)),
    ``theta_dot``, ``torque`` (the clipped torque the env applied) and ``reward``; and ``return``.
    """
    if not 1 <= steps <= PENDULUM_MAX_EPISODE_STEPS:
        raise ValueError(f"steps must be in [1, {PENDULUM_MAX_EPISODE_STEPS}], got {steps!r}")
    env = BatchedPendulum(1, seed=0)
    env.reset(seed=0)
    env.state = [[theta, theta_dot]]
    record = {key: np.zeros(steps) for key in ("theta", "theta_dot", "torque", "reward")}
    for t in range(steps):
        state = env.state[0].numpy()
        record["theta"][t] = (state[0] + np.pi) % (2 * np.pi) - np.pi
        record["theta_dot"][t] = state[1]
        action = agent.act(observations([tuple(state)]), deterministic=deterministic)
        torque = action.clamp(-MAX_TORQUE, MAX_TORQUE)
        _, reward, *_ = env.step(torque)
        record["torque"][t], record["reward"][t] = torque.item(), reward.item()
    record["return"] = float(record["reward"].sum())
    return record


def draw_pendulum(ax, theta: float, torque: float = 0.0, color: str = "#1f77b4") -> None:
    """One frame: the rod from the pivot at angle ``theta`` (0 = up), and an arc for the torque
    (counter-clockwise for a positive one, its length proportional to |torque|)."""
    from matplotlib.patches import Arc, Circle

    x, y = -math.sin(theta), math.cos(theta)  # theta grows counter-clockwise from upright
    ax.plot([0, x], [0, y], color=color, lw=3, solid_capstyle="round")
    ax.add_patch(Circle((x, y), 0.09, color=color))
    ax.add_patch(Circle((0, 0), 0.05, color="0.3"))
    if abs(torque) > 0.05:
        sweep = 150 * abs(torque) / MAX_TORQUE  # degrees of arc: full torque, 150 degrees
        start = 90 + math.degrees(theta)  # the rod's direction in matplotlib's angles
        theta1, theta2 = (start, start + sweep) if torque > 0 else (start - sweep, start)
        ax.add_patch(Arc((0, 0), 0.6, 0.6, theta1=theta1, theta2=theta2, color="#d62728", lw=1.5))
    ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal", xticks=[], yticks=[])


def band(ax, runs, key: str, color: str, label: str) -> None:
    """Median over seeds of one history column against env steps, and shaded, the seeds' range.

    ``runs``: a list of histories (one per seed, the same updates each)."""
    import warnings

    steps = [row["global_step"] for row in runs[0]]
    curves = np.array([[row[key] for row in history] for history in runs], dtype=float)  # [seed, update]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an update where no seed finished an episode: a gap
        low, middle, high = np.nanmin(curves, 0), np.nanmedian(curves, 0), np.nanmax(curves, 0)
    ax.fill_between(steps, low, high, color=color, alpha=0.25, lw=0)
    ax.plot(steps, middle, color=color, label=label)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:.0f}k")  # env steps in thousands
