"""Checks for the extra exercises (docs/exercises.md): chapter 3's three derivations, chapter 4's lr sweep.

Their reference versions live here, next to their checks, because they exist only to be
checked: ``gradients_at_ratio_one``, ``surrogate_lower_bound_gap``, ``clip_boundary_kl``, ``lr_sweep``.
"""
from __future__ import annotations

import math

import torch

from ..exercises.ppo_clip import ppo_clip_objective
from ..exercises.pg import pg_loss
from .inputs import normal
from .judge import compare
from .ppo import _ratio_advantage_cases
from .protocol import Case
from .registry import Check, Mistake, register

# --- derivation 1: at ratio = 1, the PPO-Clip gradient is the policy gradient ----------------------


def gradients_at_ratio_one(logits, actions, advantages, epsilon=0.2):
    """Gradients of the PPO-Clip loss and of the PG loss with respect to ``logits``, at ratio = 1.

    Args:
        logits: ``[B, A]`` a random categorical policy (constant; differentiate a leaf copy).
        actions: ``[B]`` int64 taken actions.
        advantages: ``[B]``.
        epsilon: clip range.

    Returns:
        ``(ppo_grad, pg_grad)``, both ``[B, A]``. They are equal: at r = 1 the clip is inactive
        and d r / d theta = r * d log pi / d theta = d log pi / d theta.
    """
    logits = logits.detach().clone().requires_grad_(True)
    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    # Old log-probs = new ones, detached: the ratio is exactly 1 but still depends on logits.
    ratio = torch.exp(log_probs - log_probs.detach())
    # retain_graph: both losses share the graph up to log_probs.
    (ppo_grad,) = torch.autograd.grad(ppo_clip_objective(ratio, advantages, epsilon), logits, retain_graph=True)
    (pg_grad,) = torch.autograd.grad(pg_loss(log_probs, advantages), logits)
    return ppo_grad, pg_grad


def _policy_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(description, batch, num_actions, epsilon=0.2, advantages=None):
        return Case(description, {
            "logits": normal(generator, batch, num_actions),
            "actions": torch.randint(0, num_actions, (batch,), generator=generator),
            "advantages": normal(generator, batch) if advantages is None else advantages,
            "epsilon": epsilon,
        })

    cases = [case("random policy, B = 8, 3 actions", 8, 3)]
    if hidden:
        cases += [
            case("B = 1, 2 actions", 1, 2),
            case("B = 64, 6 actions, epsilon = 0.1", 64, 6, epsilon=0.1),
            case("all advantages positive", 16, 4, advantages=normal(generator, 16).abs() + 0.05),
            case("all advantages negative, epsilon = 0.3", 16, 2, epsilon=0.3,
                 advantages=-normal(generator, 16).abs() - 0.05),
        ]
    return cases


def _ratio_one_with(ratio_fn=None, pg_from="log"):
    """Wrong versions of gradients_at_ratio_one (the mistake catalogue)."""

    def wrong(logits, actions, advantages, epsilon=0.2):
        logits = logits.detach().clone().requires_grad_(True)
        log_probs = torch.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        ratio = ratio_fn(log_probs)
        ppo_loss = ppo_clip_objective(ratio, advantages, epsilon)
        ppo_grad = (torch.autograd.grad(ppo_loss, logits, retain_graph=True)[0] if ppo_loss.requires_grad
                    else torch.zeros_like(logits))
        pg_input = log_probs if pg_from == "log" else log_probs.exp()
        (pg_grad,) = torch.autograd.grad(pg_loss(pg_input, advantages), logits)
        return ppo_grad, pg_grad

    return wrong


register(Check(
    grade_id="test_gradients_at_ratio_one",
    make_cases=_policy_cases,
    reference=gradients_at_ratio_one,  # its two gradients are equal, so matching both shows the claim
    mistakes=(
        Mistake("constant_ratio", "looks like the ratio does not depend on the logits (exp(lp - lp) or a tensor of "
                                  "ones): detach only the OLD log-probs",
                _ratio_one_with(ratio_fn=lambda lp: torch.exp(lp - lp))),
        Mistake("pg_from_probabilities", "looks like the PG loss used probabilities instead of log-probabilities",
                _ratio_one_with(ratio_fn=lambda lp: torch.exp(lp - lp.detach()), pg_from="prob")),
    ),
))


# --- derivation 2: the clipped surrogate is a lower bound -------------------------------------------


def surrogate_lower_bound_gap(ratio, advantages, epsilon=0.2):
    """Per sample: unclipped surrogate ``r * A`` minus PPO's ``min(r * A, clip(r) * A)``.

    Args:
        ratio, advantages: ``[B]`` (or ``[T, N]``).
        epsilon: clip range.

    Returns:
        ``[B]`` gaps, all >= 0 whatever the sign of A (the clipped surrogate is a lower bound),
        and 0 wherever the clip is inactive.
    """
    unclipped = ratio * advantages
    return unclipped - torch.min(unclipped, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages)


register(Check(
    grade_id="test_surrogate_lower_bound_gap",
    make_cases=_ratio_advantage_cases,
    reference=surrogate_lower_bound_gap,
    mistakes=(
        Mistake("max_instead_of_min", "looks like max instead of min: the gap comes out <= 0",
                lambda ratio, advantages, epsilon=0.2: ratio * advantages
                - torch.max(ratio * advantages, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages)),
        Mistake("clipped_minus_unclipped", "looks like clipped - unclipped: the gap is unclipped minus PPO's term",
                lambda ratio, advantages, epsilon=0.2: torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages
                - ratio * advantages),
        Mistake("clipped_advantage", "looks like the advantage was clipped instead of the ratio",
                lambda ratio, advantages, epsilon=0.2: ratio * advantages
                - torch.min(ratio * advantages, ratio * torch.clamp(advantages, 1 - epsilon, 1 + epsilon))),
    ),
))


# --- derivation 3: epsilon and the KL ---------------------------------------------------------------


def clip_boundary_kl(epsilon):
    """The k3 KL estimate ``(r - 1) - log r`` at the clip boundaries and its quadratic approximation.

    Returns:
        ``{"kl_low": k3(1 - eps), "kl_high": k3(1 + eps), "quadratic": eps**2 / 2}`` as floats.
        Both exact values are eps^2/2 -/+ eps^3/3 + O(eps^4): the quadratic is close for small eps.
    """
    return {"kl_low": -epsilon - math.log(1 - epsilon),
            "kl_high": epsilon - math.log(1 + epsilon),
            "quadratic": epsilon ** 2 / 2}


def _epsilon_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    # Up to 0.3: the quadratic approximation's relative error (about 2 eps / 3) stays below eps there.
    epsilons = [0.2] if not hidden else [0.05, 0.1, 0.3, round(float(torch.rand(1, generator=generator)) * 0.2 + 0.1, 3)]
    return [Case(f"epsilon = {eps}" if not hidden else "an epsilon in (0, 0.3]", {"epsilon": eps}) for eps in epsilons]


register(Check(
    grade_id="test_clip_boundary_kl",
    make_cases=_epsilon_cases,
    reference=clip_boundary_kl,
    mistakes=(
        Mistake("k1_estimator", "looks like -log r (the k1 estimator): negative at 1 + eps; use (r - 1) - log r",
                lambda epsilon: {"kl_low": -math.log(1 - epsilon), "kl_high": -math.log(1 + epsilon),
                                 "quadratic": epsilon ** 2 / 2}),
        Mistake("kl_wrong_direction", "looks like r log r - (r - 1), the estimator of KL(new || old)",
                lambda epsilon: {"kl_low": (1 - epsilon) * math.log(1 - epsilon) + epsilon,
                                 "kl_high": (1 + epsilon) * math.log(1 + epsilon) - epsilon,
                                 "quadratic": epsilon ** 2 / 2}),
        Mistake("quadratic_without_half", "looks like the quadratic term is eps^2: the expansion gives eps^2 / 2",
                lambda epsilon: {"kl_low": -epsilon - math.log(1 - epsilon), "kl_high": epsilon - math.log(1 + epsilon),
                                 "quadratic": epsilon ** 2}),
    ),
))


# --- the learning-rate sweep: the student's own measurements -----------------------------------------


def lr_sweep(learning_rates, config, train):
    """Train once per learning rate (held constant) and average each run's diagnostics.

    Args:
        learning_rates: increasing learning rates.
        config: a ``PPOConfig``; each run uses it with ``learning_rate=lr, anneal_lr=False``.
        train: the trainer, ``train(config, progress=False) -> (agent, history)`` (``train_ppo``).
            An argument rather than an import so that the student's function names nothing of
            ppo_lab (the autograder's static scan flags any exercise function that does).

    Returns:
        One dict per lr, in order: ``{"learning_rate", "clip_fraction", "approx_kl"}``, the last
        two averaged over the run's updates (floats).
    """
    rows = []
    for lr in learning_rates:
        _, history = train(config.replace(learning_rate=lr, anneal_lr=False), progress=False)
        rows.append({"learning_rate": lr,
                     "clip_fraction": sum(row["clip_fraction"] for row in history) / len(history),
                     "approx_kl": sum(row["approx_kl"] for row in history) / len(history)})
    return rows


def _sweep_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    from ..algos.ppo import PPOConfig, train_ppo  # the trainer pulls in gymnasium; only the sweep needs it

    seed = int(torch.randint(0, 10_000, (1,), generator=generator)) if hidden else 1
    # Spelled out rather than derived from fast_cartpole(), so that retuning that does not change this test.
    tiny = PPOConfig(num_envs=64, num_steps=16, num_minibatches=2, num_epochs=4, gamma=0.99, gae_lambda=0.9,
                     entropy_coef=0.0, total_timesteps=3 * 1024, seed=seed)
    return [Case("three short runs, learning rates 10x apart" + (" (another seed)" if hidden else ""),
                 {"learning_rates": [3e-4, 3e-3, 3e-2], "config": tiny, "train": train_ppo})]


def _judge_sweep(got, want, case: Case) -> str | None:
    """The student's measurements, judged on what they must show.

    Runs on other machines or thread counts differ in the last digits, so the reference's numbers
    are not the yardstick; identical numbers are accepted (that is also how a wrong sweep is
    recognised as one of the catalogued mistakes).
    """
    if compare(got, want, case) is None:
        return None
    lrs = case.kwargs["learning_rates"]
    if not isinstance(got, list) or len(got) != len(lrs):
        return f"the sweep should return a list of {len(lrs)} dicts (one per learning rate), got {got!r:.80}"
    fractions = []
    for lr, row in zip(lrs, got):
        if not isinstance(row, dict) or set(row) != {"learning_rate", "clip_fraction", "approx_kl"}:
            return "each row should be a dict with keys exactly 'learning_rate', 'clip_fraction', 'approx_kl'"
        problem = compare(row["learning_rate"], lr, case, where="row['learning_rate']")
        if problem:
            return problem + " (rows must follow the order of learning_rates)"
        fraction, kl = row["clip_fraction"], row["approx_kl"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (fraction, kl)):
            return f"clip_fraction and approx_kl should be finite floats, got {fraction!r} and {kl!r}"
        if not 0.0 <= fraction <= 1.0:
            return f"clip_fraction is a share of samples, between 0 and 1; got {fraction:.4g} at lr {lr:g}"
        fractions.append(fraction)
    if any(b <= a for a, b in zip(fractions, fractions[1:])):
        listed = ", ".join(f"{lr:g}: {f:.4f}" for lr, f in zip(lrs, fractions))
        same = " (identical runs: did each one use its own lr?)" if len(set(fractions)) == 1 else ""
        return f"clip_fraction should rise with the learning rate, got {listed}{same}"
    return None


def _sweep_with(*, use_lr=True, scale=1.0):
    """Wrong sweeps (the mistake catalogue); like ``lr_sweep`` but without calling it (it is the reference)."""

    def wrong(learning_rates, config, train):
        rows = []
        for lr in learning_rates:
            run = config.replace(learning_rate=lr if use_lr else config.learning_rate, anneal_lr=False)
            history = train(run, progress=False)[1]
            rows.append({"learning_rate": lr,
                         "clip_fraction": scale * sum(row["clip_fraction"] for row in history) / len(history),
                         "approx_kl": sum(row["approx_kl"] for row in history) / len(history)})
        return rows

    return wrong


register(Check(
    grade_id="test_lr_sweep_clip_fraction",
    make_cases=_sweep_cases,
    reference=lr_sweep,
    judge=_judge_sweep,
    mistakes=(
        Mistake("ignores_learning_rate", "looks like every run used config.learning_rate: put each lr in the config",
                _sweep_with(use_lr=False)),
        Mistake("percent", "looks like clip_fraction in percent: report the fraction (0 to 1)",
                _sweep_with(scale=100.0)),
    ),
))
