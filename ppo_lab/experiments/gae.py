"""A small chain MDP whose true values are known exactly: GAE's bias and variance, measured.

The walk: states 0 .. S-1 in a row, start in the middle. The policy steps right with
probability ``p_right`` and left otherwise; leaving the row on the right ends the episode with
reward +1, on the left with reward -1. Every reward also carries Gaussian noise of standard
deviation ``reward_noise`` (the randomness that makes long Monte-Carlo sums noisy).

Because the MDP is tiny, everything an advantage estimator is judged against can be solved
exactly with a linear system: V, Q, and, for a critic V_hat that is deliberately wrong, the mean
and variance of the GAE estimate A_hat_t for every (state, action). "Exact" below means
"solved, not sampled"; :func:`sample_episodes` + :func:`empirical_statistics` give the sampled
counterparts, so the notebook can check one against the other with the student's compute_gae.

What A_hat_t is compared with: the target is ``Q(s_t, a_t) - V_hat(s_t)``, the advantage
relative to the critic's own baseline. The difference from the true advantage, V(s) - V_hat(s),
depends on the state only, so it does not change the expected policy gradient; what remains is
the error that does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import validate
from ..exercises.gae import compute_gae

LEFT, RIGHT = 0, 1
TERMINAL = -1  # state index used for padding after an episode ended


@dataclass(frozen=True)
class ChainMDP:
    """A random walk on ``num_states`` states; the episode ends when it leaves the row.

    Attributes:
        num_states: number of non-terminal states S (>= 2).
        p_right: probability that the fixed policy steps right, in (0, 1).
        reward_noise: standard deviation of the Gaussian noise on every reward (>= 0).
        critic_scale, critic_offset: the imperfect critic is
            ``V_hat = critic_scale * V + critic_offset`` (an under-confident, shifted critic).
    """

    num_states: int = 9
    p_right: float = 0.5
    reward_noise: float = 0.1
    critic_scale: float = 0.2
    critic_offset: float = 0.3

    def __post_init__(self):
        validate.positive_int("num_states", self.num_states)
        if self.num_states < 2:
            raise ValueError(f"num_states must be >= 2, got {self.num_states}")
        validate.in_open_interval("p_right", self.p_right, 0.0, 1.0)
        validate.non_negative("reward_noise", self.reward_noise)
        validate.number("critic_scale", self.critic_scale)
        validate.number("critic_offset", self.critic_offset)

    @property
    def start(self) -> int:
        return self.num_states // 2

    def _policy(self) -> torch.Tensor:
        """pi(a|s), ``[2]`` (the same in every state): (left, right)."""
        return torch.tensor([1.0 - self.p_right, self.p_right], dtype=torch.float64)

    def _next_state(self) -> torch.Tensor:
        """``[S, 2]`` int64 successor of each (state, action); TERMINAL where the walk leaves the row."""
        states = torch.arange(self.num_states)
        following = torch.stack((states - 1, states + 1), dim=1)
        return torch.where((following < 0) | (following >= self.num_states), TERMINAL, following)

    def _mean_reward(self) -> torch.Tensor:
        """``[S, 2]`` expected reward of each (state, action)."""
        reward = torch.zeros(self.num_states, 2, dtype=torch.float64)
        reward[0, LEFT] = -1.0
        reward[-1, RIGHT] = 1.0
        return reward

    def _transition(self) -> torch.Tensor:
        """``[S, 2, S]``: 1 where (state, action) leads to a non-terminal state."""
        following = self._next_state()
        onehot = torch.zeros(self.num_states, 2, self.num_states, dtype=torch.float64)
        alive = following != TERMINAL
        onehot[alive.nonzero(as_tuple=True) + (following[alive],)] = 1.0
        return onehot


def _solve(matrix: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``matrix @ x = rhs`` for ``[..., S, S]`` and ``[..., S]`` float64, batched.

    numpy, not torch.linalg.solve: for a batch of tiny systems torch's multi-threaded solve
    costs ~15 ms on a busy 2-core machine against ~0.1 ms here, and the explorer calls this per move.
    """
    size = matrix.shape[-1]
    batch = torch.broadcast_shapes(matrix.shape[:-2], rhs.shape[:-1])
    matrix, rhs = matrix.expand(*batch, size, size), rhs.expand(*batch, size)
    return torch.from_numpy(np.linalg.solve(matrix.numpy(), rhs[..., None].numpy())[..., 0])


def _gamma(gamma) -> float:
    return validate.in_closed_interval("gamma", gamma, 0.0, 1.0)


def _policy_matrix(mdp: ChainMDP) -> torch.Tensor:
    """``[S, S]`` P_pi(s'|s) between non-terminal states (rows sum to < 1 at the ends)."""
    return torch.einsum("a,sat->st", mdp._policy(), mdp._transition())


def true_values(mdp: ChainMDP, gamma: float) -> torch.Tensor:
    """V(s) of the fixed policy, ``[S]`` float64: solves V = r_pi + gamma * P_pi V."""
    gamma = _gamma(gamma)
    r_pi = mdp._mean_reward() @ mdp._policy()
    eye = torch.eye(mdp.num_states, dtype=torch.float64)
    return _solve(eye - gamma * _policy_matrix(mdp), r_pi)


def _after(values: torch.Tensor, mdp: ChainMDP) -> torch.Tensor:
    """``[..., S, 2]``: the value (``values`` is ``[..., S]``) of the state each (state, action)
    leads to, 0 where the episode ends."""
    return torch.einsum("sat,...t->...sa", mdp._transition(), values)


def true_q(mdp: ChainMDP, gamma: float) -> torch.Tensor:
    """Q(s, a), ``[S, 2]`` float64 (deterministic moves: Q = r + gamma * V(s'))."""
    return mdp._mean_reward() + _gamma(gamma) * _after(true_values(mdp, gamma), mdp)


def critic_values(mdp: ChainMDP, gamma: float) -> torch.Tensor:
    """The deliberately imperfect critic V_hat(s), ``[S]`` float64."""
    return mdp.critic_scale * true_values(mdp, gamma) + mdp.critic_offset


def target_advantages(mdp: ChainMDP, gamma: float) -> torch.Tensor:
    """What A_hat(s, a) estimates: ``Q(s, a) - V_hat(s)``, ``[S, 2]`` float64 (see module docstring)."""
    return true_q(mdp, gamma) - critic_values(mdp, gamma)[:, None]


def visit_weights(mdp: ChainMDP) -> torch.Tensor:
    """``[S, 2]`` how often each (state, action) is visited per episode, normalised to sum to 1."""
    eye = torch.eye(mdp.num_states, dtype=torch.float64)
    start = eye[mdp.start]
    visits = _solve((eye - _policy_matrix(mdp)).T, start)  # expected visits per episode
    weights = visits[:, None] * mdp._policy()[None, :]
    return weights / weights.sum()


def gae_moments(mdp: ChainMDP, gamma: float, lambdas) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and variance of the GAE estimate A_hat_t given (s_t, a_t) = (s, a).

    Episodes run to termination (no rollout cut). With G(s) the lambda-return from s,
    ``A_hat = r + noise + gamma * ((1 - lambda) V_hat(s') + lambda G(s')) - V_hat(s)``, so
    the mean of G and E[G^2] each solve a linear system over the S states.

    Args:
        lambdas: ``[L]`` values of gae_lambda in [0, 1] (tensor or sequence); all are solved
            in one batch, which keeps a widget's curves cheap.

    Returns:
        ``(mean, variance)``, each ``[L, S, 2]`` float64.
    """
    gamma = _gamma(gamma)
    lam = torch.as_tensor(lambdas, dtype=torch.float64).reshape(-1)
    if not ((lam >= 0) & (lam <= 1)).all():
        raise ValueError(f"gae_lambda must be in [0, 1], got {lam.tolist()}")
    lam = lam[:, None, None]  # [L, 1, 1], broadcasts against [S, S] and [S, 2]
    pi, reward, v_hat = mdp._policy(), mdp._mean_reward(), critic_values(mdp, gamma)
    p_pi, eye, noise_var = _policy_matrix(mdp), torch.eye(mdp.num_states, dtype=torch.float64), mdp.reward_noise**2
    # Mean lambda-return: G = r_pi + gamma * P_pi ((1 - lambda) V_hat + lambda G).
    rhs = reward @ pi + gamma * (1 - lam[..., 0]) * (p_pi @ v_hat)  # [L, S]
    g_mean = _solve(eye - gamma * lam * p_pi, rhs)
    # E[r + gamma * ((1 - lambda) V_hat(s') + lambda G(s'))] for every (s, a): [L, S, 2].
    step_mean = reward + gamma * _after((1 - lam[..., 0]) * v_hat + lam[..., 0] * g_mean, mdp)
    # Second moment M = E[G^2]: M = sum_a pi(a) (noise_var + step_mean^2) + (gamma*lam)^2 P_pi Var G.
    factor = (gamma * lam) ** 2
    rhs = (noise_var + step_mean**2) @ pi - factor[..., 0] * (g_mean**2 @ p_pi.T)
    g_second = _solve(eye - factor * p_pi, rhs)
    g_var = (g_second - g_mean**2).clamp_min(0.0)  # clamp: rounding only
    mean = step_mean - v_hat[:, None]
    variance = noise_var + factor * _after(g_var, mdp)
    return mean, variance


def gae_statistics(mdp: ChainMDP, gamma: float, lambdas) -> dict[str, torch.Tensor]:
    """Exact bias^2 and variance of A_hat as a function of lambda, averaged over visited (s, a).

    Args:
        mdp: the chain.
        gamma: discount in [0, 1].
        lambdas: ``[L]`` values of gae_lambda in [0, 1] (a tensor or a sequence).

    Returns:
        dict of ``[L]`` float64 tensors: ``lambdas``, ``bias2`` (visit-weighted mean of
        (E[A_hat|s,a] - target)^2), ``variance`` (visit-weighted mean of Var[A_hat|s,a]) and
        ``mse`` = bias2 + variance.
    """
    mean, variance = gae_moments(mdp, gamma, lambdas)
    weights, target = visit_weights(mdp), target_advantages(mdp, gamma)
    bias2 = (weights * (mean - target) ** 2).sum((1, 2))
    variance = (weights * variance).sum((1, 2))
    lambdas = torch.as_tensor(lambdas, dtype=torch.float64).reshape(-1)
    return {"lambdas": lambdas, "bias2": bias2, "variance": variance, "mse": bias2 + variance}


def sample_episodes(mdp: ChainMDP, num_episodes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Run ``num_episodes`` episodes side by side until all have ended.

    Returns:
        time-major ``[T, N]`` tensors (T = the longest episode): ``states`` (int64, TERMINAL
        after an episode ended), ``actions`` (int64), ``rewards`` (float32, 0 after the end) and
        ``dones`` (float32, 1 at the last step of an episode and at every padding step, so GAE
        never carries anything across). The columns are independent episodes.
    """
    validate.positive_int("num_episodes", num_episodes)
    generator = torch.Generator().manual_seed(seed)
    following, reward = mdp._next_state(), mdp._mean_reward()
    state = torch.full((num_episodes,), mdp.start, dtype=torch.int64)
    columns = {"states": [], "actions": [], "rewards": [], "dones": []}
    while (state != TERMINAL).any():
        alive = state != TERMINAL
        action = (torch.rand(num_episodes, generator=generator) < mdp.p_right).long()
        here = state.clamp_min(0)
        noise = mdp.reward_noise * torch.randn(num_episodes, generator=generator, dtype=torch.float64)
        columns["states"].append(state)
        columns["actions"].append(action)
        columns["rewards"].append(torch.where(alive, reward[here, action] + noise, 0.0))
        state = torch.where(alive, following[here, action], TERMINAL)
        columns["dones"].append(state == TERMINAL)
    episodes = {key: torch.stack(value) for key, value in columns.items()}
    episodes["rewards"] = episodes["rewards"].float()
    episodes["dones"] = episodes["dones"].float()
    return episodes


def critic_on(episodes: dict[str, torch.Tensor], mdp: ChainMDP, gamma: float) -> torch.Tensor:
    """V_hat(s_t) for sampled episodes, ``[T, N]`` float32 (0 on padding steps)."""
    states = episodes["states"]
    values = critic_values(mdp, gamma)[states.clamp_min(0)]
    return torch.where(states == TERMINAL, 0.0, values).float()


def empirical_statistics(episodes, advantages: torch.Tensor, mdp: ChainMDP, gamma: float) -> dict[str, float]:
    """Sampled bias^2 and variance of ``advantages`` (``[T, N]``, computed on ``episodes``).

    Groups the estimates by (state, action), compares each group's mean with the exact target
    and weights groups by how often they were visited: the sampled twin of :func:`gae_statistics`.
    """
    states, actions = episodes["states"], episodes["actions"]
    if advantages.shape != states.shape:
        raise ValueError(f"advantages must have shape {list(states.shape)} like the episodes, "
                         f"got {list(advantages.shape)}")
    real = states != TERMINAL
    target = target_advantages(mdp, gamma)
    keys = (states[real] * 2 + actions[real])
    estimates = advantages[real].double()
    counts = torch.bincount(keys, minlength=2 * mdp.num_states).double()
    sums = torch.bincount(keys, estimates, minlength=2 * mdp.num_states)
    squares = torch.bincount(keys, estimates**2, minlength=2 * mdp.num_states)
    seen = counts > 1
    mean = sums[seen] / counts[seen]
    variance = (squares[seen] - counts[seen] * mean**2) / (counts[seen] - 1)
    weights = counts[seen] / counts[seen].sum()
    bias2 = (weights * (mean - target.reshape(-1)[seen]) ** 2).sum()
    return {"bias2": bias2.item(), "variance": (weights * variance).sum().item()}


def effective_horizon(gamma: float, gae_lambda: float) -> float:
    """1 / (1 - gamma * lambda): the number of steps over which GAE trusts rewards more than V_hat.

    The weights (gamma*lambda)^k on delta_{t+k} sum to exactly this; ``inf`` when gamma*lambda = 1.
    """
    decay = _gamma(gamma) * validate.in_closed_interval("gae_lambda", gae_lambda, 0.0, 1.0)
    return float("inf") if decay == 1.0 else 1.0 / (1.0 - decay)


def one_episode(mdp: ChainMDP, seed: int, min_length: int = 12, max_length: int = 40) -> dict[str, torch.Tensor]:
    """The first of the seeded episodes whose length is in [min_length, max_length], as ``[T]`` tensors.

    A readable trajectory for figures: long enough to show the recursion, short enough to see.
    """
    episodes = sample_episodes(mdp, 64, seed=seed)
    lengths = (episodes["states"] != TERMINAL).sum(0)
    fitting = ((lengths >= min_length) & (lengths <= max_length)).nonzero().flatten()
    if len(fitting) == 0:
        raise ValueError(f"no episode of length {min_length}..{max_length} among 64 with seed {seed}")
    column, length = fitting[0].item(), lengths[fitting[0]].item()
    return {key: value[:length, column] for key, value in episodes.items()}


def gae_on(episodes: dict[str, torch.Tensor], mdp: ChainMDP, gamma: float, gae_lambda: float, gae=compute_gae):
    """Advantages of ``episodes`` (``[T]`` or ``[T, N]``) with the imperfect critic and ``gae``."""
    values = critic_on(episodes, mdp, gamma)
    return gae(episodes["rewards"], values, episodes["dones"], 0.0, gamma, gae_lambda)[0]
