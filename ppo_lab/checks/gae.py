"""Checks for chapter 5: ``compute_gae``, one graded item per aspect.

test_compute_gae                  [T] rollouts, no terminations, no bootstrap (the seed's setting)
test_compute_gae_dones            terminations inside the rollout
test_compute_gae_bootstrap        the rollout stops mid-episode: bootstrap from last_value
test_compute_gae_batched          [T, N] rollouts with terminations and a last_value per env
test_compute_gae_lambda_extremes  lambda = 0 (one-step TD errors) and lambda = 1 (Monte Carlo)
"""
from __future__ import annotations

from functools import partial

import torch

from ..exercises import gae
from . import runners
from .inputs import normal
from .protocol import Case
from .registry import Check, Mistake, register


def _rollout(generator, shape, *, done_rate=0.0, last_value=0.0, gamma=None, gae_lambda=None, last_done=None):
    """kwargs for one compute_gae call; gamma/lambda default to random values in [0.8, 1)."""
    uniform = lambda low, high: low + (high - low) * torch.rand((), generator=generator).item()  # noqa: E731
    dones = (torch.rand(*shape, generator=generator) < done_rate).float()
    if last_done is not None:
        dones[-1] = float(last_done)
    if last_value == "random":
        last_value = normal(generator, *shape[1:]) * 2 if len(shape) == 2 else round(uniform(-3, 3), 3)
    return {
        "rewards": normal(generator, *shape),
        "values": normal(generator, *shape),
        "dones": dones,
        "last_value": last_value,
        "gamma": round(uniform(0.8, 1.0), 3) if gamma is None else gamma,
        "gae_lambda": round(uniform(0.8, 1.0), 3) if gae_lambda is None else gae_lambda,
    }


def _basic_cases(generator, hidden):
    lengths = [1, 9, 64] if hidden else [5]
    cases = [Case(f"[T] rollout, T = {t}, no terminations, last_value = 0", _rollout(generator, (t,)))
             for t in lengths]
    if hidden:
        cases.append(Case("[T] rollout, gamma = 1 and gae_lambda = 1",
                          _rollout(generator, (12,), gamma=1.0, gae_lambda=1.0)))
    return cases


def _dones_cases(generator, hidden):
    if not hidden:
        kwargs = _rollout(generator, (6,), gamma=0.9, gae_lambda=0.8)
        kwargs["dones"] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
        return [Case("[T] rollout, the episode terminates at step 2", kwargs)]
    return [
        Case("[T] rollout with several terminations", _rollout(generator, (40,), done_rate=0.2)),
        Case("[T] rollout, terminations on consecutive steps", {**_rollout(generator, (8,)),
                                                                "dones": torch.tensor([0.0, 1, 1, 0, 1, 1, 0, 0])}),
        Case("[T] rollout ending in a termination", _rollout(generator, (10,), done_rate=0.2, last_done=1)),
        Case("[T] rollout, every step terminates", _rollout(generator, (5,), done_rate=1.0)),
    ]


def _bootstrap_cases(generator, hidden):
    if not hidden:
        return [Case("[T] rollout cut mid-episode, last_value = 2.5",
                     _rollout(generator, (5,), last_value=2.5, gamma=0.9, gae_lambda=0.8))]
    return [
        Case("[T] rollout cut mid-episode, random last_value", _rollout(generator, (30,), last_value="random")),
        Case("[T] rollout with terminations, cut mid-episode", _rollout(generator, (30,), done_rate=0.15,
                                                                        last_value="random", last_done=0)),
        Case("[T] rollout whose last step terminates: last_value must be ignored",
             _rollout(generator, (7,), done_rate=0.2, last_value="random", last_done=1)),
        Case("T = 1, cut mid-episode", _rollout(generator, (1,), last_value="random", last_done=0)),
        Case("last_value given as a 0-dim tensor", {**_rollout(generator, (6,)), "last_value": torch.tensor(1.5)}),
    ]


def _batched_cases(generator, hidden):
    if not hidden:
        return [Case("[T, N] rollout (T = 4, N = 3), terminations, last_value per env",
                     _rollout(generator, (4, 3), done_rate=0.25, last_value="random", gamma=0.9, gae_lambda=0.8))]
    return [
        Case("[T, N] rollout, N = 1", _rollout(generator, (16, 1), done_rate=0.1, last_value="random")),
        Case("[T, N] rollout, many envs", _rollout(generator, (32, 24), done_rate=0.05, last_value="random")),
        Case("[T, N] rollout, T = 1", _rollout(generator, (1, 5), done_rate=0.3, last_value="random")),
        Case("[T, N] rollout, scalar last_value", _rollout(generator, (8, 4), done_rate=0.2, last_value=0.7)),
        Case("[T, N] rollout, some envs terminate at the last step",
             _rollout(generator, (10, 6), done_rate=0.3, last_value="random")),
    ]


def _extreme_cases(generator, hidden):
    shapes = [(12,), (7, 5)] if hidden else [(6,)]
    cases = []
    for shape in shapes:
        kind = "[T]" if len(shape) == 1 else "[T, N]"
        for lam, meaning in ((0.0, "one-step TD errors"), (1.0, "Monte-Carlo returns minus values")):
            cases.append(Case(f"{kind} rollout, gae_lambda = {lam:g}: advantages are the {meaning}",
                              _rollout(generator, shape, done_rate=0.2 if hidden else 0.0,
                                       last_value="random", gae_lambda=lam)))
    return cases


# --- classic mistakes: one recursion, switched into each wrong version ---------------------------

def _wrong_gae(*, mask_delta=True, mask_carry=True, bootstrap=True, done_shift=False, store_early=False,
               add_values=True):
    """A GAE with one classic mistake switched on (every switch at its default is correct)."""

    def wrong(rewards, values, dones, last_value=0.0, gamma=0.99, gae_lambda=0.95):
        next_value = torch.as_tensor(last_value if bootstrap else 0.0, dtype=rewards.dtype).expand(rewards.shape[1:])
        if done_shift:  # the flag of step t + 1 cuts step t (a mix-up of two done conventions)
            dones = torch.cat((dones[1:], torch.zeros_like(dones[:1])))
        advantages, carry = torch.zeros_like(rewards), torch.zeros_like(rewards[0])
        for t in reversed(range(len(rewards))):
            alive = 1.0 - dones[t]
            delta = rewards[t] + gamma * next_value * (alive if mask_delta else 1.0) - values[t]
            if store_early:  # step t receives the advantage of step t + 1
                advantages[t] = carry
            carry = delta + gamma * gae_lambda * (alive if mask_carry else 1.0) * carry
            if not store_early:
                advantages[t] = carry
            next_value = values[t]
        return advantages, advantages + values if add_values else advantages

    return wrong


MISTAKES = (
    Mistake("ignores_dones", "looks like dones are ignored: after a termination nothing may be "
            "bootstrapped or carried back (multiply both by 1 - dones[t])",
            _wrong_gae(mask_delta=False, mask_carry=False)),
    Mistake("never_bootstraps", "looks like the last step is never bootstrapped (the seed's next_value = 0): "
            "when the rollout stops mid-episode, use last_value as V(s_T)", _wrong_gae(bootstrap=False)),
    Mistake("bootstraps_across_terminal", "looks like V(s_{t+1}) is bootstrapped across a termination: "
            "delta_t must not include gamma * V(s_{t+1}) when dones[t] = 1", _wrong_gae(mask_delta=False)),
    Mistake("carries_across_terminal", "looks like the advantage is carried back across a termination: "
            "the recursion must restart (multiply the carried term by 1 - dones[t])", _wrong_gae(mask_carry=False)),
    Mistake("done_off_by_one", "looks like the done flags are shifted by one step: dones[t] = 1 means the "
            "episode ended WITH step t, so it cuts step t itself (use 1 - dones[t], not dones[t + 1])",
            _wrong_gae(done_shift=True)),
    Mistake("recursion_off_by_one", "looks like the recursion is one step off: advantages[t] must be "
            "delta_t + gamma * lambda * advantages[t + 1], including step t's own delta", _wrong_gae(store_early=True)),
    Mistake("returns_without_values", "the advantages look right but returns do not: returns = advantages + values",
            _wrong_gae(add_values=False)),
)

for grade_id, make_cases in (
    ("test_compute_gae", _basic_cases),
    ("test_compute_gae_dones", _dones_cases),
    ("test_compute_gae_bootstrap", _bootstrap_cases),
    ("test_compute_gae_batched", _batched_cases),
    ("test_compute_gae_lambda_extremes", _extreme_cases),
):
    register(Check(grade_id, make_cases, reference=gae.compute_gae, mistakes=MISTAKES,
                   run=partial(runners.named, names=("advantages", "returns"))))
