"""Checks for chapter 2: ``probability_ratio``, ``categorical_kl``, ``conjugate_gradient``."""
from __future__ import annotations

from functools import partial

import torch

from ..exercises import trpo
from . import runners
from .inputs import log_probs, normal
from .judge import compare
from .protocol import Case
from .registry import Check, Mistake, register

# --- shared helpers -----------------------------------------------------------------------------


# --- probability_ratio --------------------------------------------------------------------------


def _ratio_case(generator: torch.Generator, description: str, size: int, shift: float = 0.0) -> Case:
    """New log-probs near the old ones (a policy that moved a little); ``shift`` makes actions unlikely."""
    old = log_probs(generator, size) + shift
    new = old + normal(generator, size, scale=0.3)
    return Case(description, {"new_log_probs": new, "old_log_probs": old})


def _ratio_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    if not hidden:
        return [_ratio_case(generator, "B = 6", 6),
                _ratio_case(generator, "very unlikely actions (log-probs near -120)", 4, shift=-118.0)]
    return [_ratio_case(generator, "B = 1", 1),
            _ratio_case(generator, "B = 300", 300),
            _ratio_case(generator, "very unlikely actions (log-probs near -120)", 50, shift=-118.0),
            _ratio_case(generator, "unlikely actions (log-probs near -90)", 20, shift=-88.0),
            _identical_policies_case(generator)]


def _identical_policies_case(generator: torch.Generator) -> Case:
    same = log_probs(generator, 10)
    return Case("identical policies (every ratio is 1)", {"new_log_probs": same, "old_log_probs": same.clone()})


register(Check(
    grade_id="test_probability_ratio",
    make_cases=_ratio_cases,
    reference=trpo.probability_ratio,
    run=partial(runners.output_and_grads, wrt=("new_log_probs", "old_log_probs")),
    mistakes=(
        Mistake("ratio_from_probabilities",
                "looks like the ratio was computed from probabilities, exp(new) / exp(old): both underflow to 0 "
                "for unlikely actions and 0/0 is NaN; subtract the log-probabilities first",
                lambda new_log_probs, old_log_probs: new_log_probs.exp() / old_log_probs.detach().exp()),
        Mistake("old_not_detached",
                "gradient flows into old_log_probs: the old policy is a constant while you optimise the new "
                "one (detach it)",
                lambda new_log_probs, old_log_probs: torch.exp(new_log_probs - old_log_probs)),
        Mistake("inverted_ratio", "looks like pi_old / pi_new: the ratio is new over old",
                lambda new_log_probs, old_log_probs: torch.exp(old_log_probs.detach() - new_log_probs)),
        Mistake("log_ratio_not_exponentiated", "looks like the log-ratio (new - old) without exp",
                lambda new_log_probs, old_log_probs: new_log_probs - old_log_probs.detach()),
    ),
))


# --- categorical_kl -----------------------------------------------------------------------------


def _kl_case(generator: torch.Generator, description: str, batch: int, actions: int, scale: float = 1.5) -> Case:
    old = normal(generator, batch, actions, scale=scale)
    new = old + normal(generator, batch, actions, scale=0.5 * scale)
    return Case(description, {"old_logits": old, "new_logits": new})


def _masked_actions_case(generator: torch.Generator, batch: int, actions: int) -> Case:
    """Some actions have logits 250 below the rest (as with action masking): probability exactly 0 in float32.

    Action 0 always stays possible, so every state has at least one.
    """
    impossible = torch.rand(batch, actions, generator=generator) < 0.4
    impossible[:, 0] = False
    old = normal(generator, batch, actions) - 250.0 * impossible
    new = old + normal(generator, batch, actions, scale=0.5)
    return Case("some actions impossible (logits 250 below the rest, as with action masking)",
                {"old_logits": old, "new_logits": new})


def _kl_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    if not hidden:
        return [_kl_case(generator, "B = 4 states, A = 3 actions", 4, 3),
                _masked_actions_case(generator, 3, 4)]
    shared = normal(generator, 5, 4)
    return [_kl_case(generator, "B = 1 state, A = 2 actions", 1, 2),
            _kl_case(generator, "B = 64 states, A = 6 actions", 64, 6),
            _kl_case(generator, "nearly deterministic policies (logits of size ~10)", 16, 5, scale=10.0),
            _masked_actions_case(generator, 32, 5),
            Case("logits shifted by a constant per state (same policy, KL = 0)",
                 {"old_logits": shared, "new_logits": shared + normal(generator, 5, 1) * 3.0}),
            Case("policies that differ a lot", {"old_logits": normal(generator, 8, 3, scale=4.0),
                                                "new_logits": normal(generator, 8, 3, scale=4.0)})]


def _kl_old_new(old_logits, new_logits):
    """KL(pi_old || pi_new) with the old policy constant; building block of the mistakes below."""
    old_log_p = torch.log_softmax(old_logits.detach(), -1)
    return (old_log_p.exp() * (old_log_p - torch.log_softmax(new_logits, -1))).sum(-1)


register(Check(
    grade_id="test_categorical_kl",
    make_cases=_kl_cases,
    reference=trpo.categorical_kl,
    run=partial(runners.output_and_grads, wrt=("old_logits", "new_logits")),
    mistakes=(
        Mistake("reversed_direction",
                "looks like KL(pi_new || pi_old): the expectation must be under the OLD policy, the one that "
                "collected the data",
                lambda old_logits, new_logits: (torch.softmax(new_logits, -1) * (
                    torch.log_softmax(new_logits, -1) - torch.log_softmax(old_logits.detach(), -1))).sum(-1)),
        Mistake("logits_as_log_probs",
                "looks like the logits were used as log-probabilities: normalise them first (log_softmax)",
                lambda old_logits, new_logits: (torch.softmax(old_logits.detach(), -1)
                                                * (old_logits.detach() - new_logits)).sum(-1)),
        Mistake("log_of_softmax",
                "NaN where an action has probability 0: log(softmax) gives log(0) = -inf and 0 * inf is NaN; "
                "work with log_softmax instead",
                lambda old_logits, new_logits: (torch.softmax(old_logits.detach(), -1) * (
                    torch.softmax(old_logits.detach(), -1).log() - torch.softmax(new_logits, -1).log())).sum(-1)),
        Mistake("old_not_detached",
                "gradient flows into old_logits: the old policy is a constant (detach it)",
                lambda old_logits, new_logits: (torch.softmax(old_logits, -1) * (
                    torch.log_softmax(old_logits, -1) - torch.log_softmax(new_logits, -1))).sum(-1)),
        Mistake("mean_over_states", "looks like one number for the whole batch: return the KL of every state, [B]",
                lambda old_logits, new_logits: _kl_old_new(old_logits, new_logits).mean()),
    ),
))


# --- conjugate_gradient -------------------------------------------------------------------------


def _spd_matrix(generator: torch.Generator, n: int, low: float = 1.0, high: float = 5.0) -> torch.Tensor:
    """A random symmetric positive-definite ``[n, n]`` matrix with eigenvalues in [low, high]."""
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    eigenvalues = low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
    return (q * eigenvalues) @ q.T


def _spd_with_few_eigenvalues(generator: torch.Generator, n: int, values: tuple[float, ...]) -> torch.Tensor:
    """SPD ``[n, n]`` with only the eigenvalues ``values``: exact CG solves it in len(values) steps."""
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    eigenvalues = torch.tensor(values, dtype=torch.float64).repeat(n)[:n]
    return (q * eigenvalues) @ q.T


def _cg_case(description: str, A: torch.Tensor, b: torch.Tensor, n_steps: int, tol: float) -> Case:
    return Case(description, {"A": A.float(), "b": b.float(), "n_steps": n_steps, "tol": tol})


def _early_stop_case(description: str, A: torch.Tensor, b: torch.Tensor, stop_after: int) -> Case:
    """A case whose tol lies halfway (in log scale) between the squared residuals of steps
    ``stop_after - 1`` and ``stop_after``, so every correct CG stops after exactly ``stop_after`` steps
    whatever its rounding."""

    def residual_sq(steps):
        x = trpo.conjugate_gradient(lambda v: A @ v, b, n_steps=steps, tol=0.0) if steps else torch.zeros_like(b)
        return ((b - A @ x) ** 2).sum().item()

    tol = (residual_sq(stop_after - 1) * residual_sq(stop_after)) ** 0.5
    return _cg_case(description, A, b, n_steps=len(b), tol=tol)


def _cg_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def rhs(n):
        return torch.randn(n, generator=generator, dtype=torch.float64)

    if not hidden:
        return [_cg_case("8 x 8 system with 3 distinct eigenvalues: solved in 3 steps, then it must stop",
                         _spd_with_few_eigenvalues(generator, 8, (1.0, 2.0, 4.0)), rhs(8), 10, 1e-10),
                _cg_case("8 x 8 system, only n_steps = 3", _spd_matrix(generator, 8), rhs(8), 3, 1e-10),
                _cg_case("A = 2.5 * identity: solved after one step, then it must stop",
                         2.5 * torch.eye(5, dtype=torch.float64), rhs(5), 10, 1e-10),
                _early_stop_case("12 x 12 system, tol reached before n_steps", _spd_matrix(generator, 12), rhs(12), 4)]
    return [_cg_case("1 x 1 system", _spd_matrix(generator, 1), rhs(1), 10, 1e-10),
            _cg_case("30 x 30 system, n_steps = 10", _spd_matrix(generator, 30), rhs(30), 10, 1e-10),
            _cg_case("n_steps = 1", _spd_matrix(generator, 7), rhs(7), 1, 1e-10),
            _cg_case("20 x 20 system with 5 distinct eigenvalues: solved in 5 steps, then it must stop",
                     _spd_with_few_eigenvalues(generator, 20, (0.5, 1.0, 3.0, 7.0, 9.0)), rhs(20), 25, 1e-10),
            _cg_case("A = 0.7 * identity: solved after one step, then it must stop",
                     0.7 * torch.eye(9, dtype=torch.float64), rhs(9), 10, 1e-10),
            _early_stop_case("20 x 20 system, tol reached before n_steps", _spd_matrix(generator, 20), rhs(20), 3),
            _early_stop_case("16 x 16 system, tol reached before n_steps",
                             _spd_matrix(generator, 16, high=20.0), rhs(16), 6),
            _cg_case("b = 0: x = 0 is already the answer", _spd_matrix(generator, 4), torch.zeros(4), 10, 1e-10)]


def _judge_cg(got, want, case: Case) -> str | None:
    if not isinstance(got, dict) or set(got) != {"x", "avp_calls"}:
        return f"the answer should return a tensor x of shape {list(want['x'].shape)}"
    problem = compare(got["x"], want["x"], case)
    if problem is not None:
        return problem.replace("result", "x", 1)
    if got["avp_calls"] != want["avp_calls"]:
        return (f"Avp was called {got['avp_calls']} times, expected {want['avp_calls']}: one call per iteration, "
                f"at most n_steps = {case.kwargs['n_steps']}, stopping as soon as |r|^2 < tol = {case.kwargs['tol']:g}")
    return None


def _cg(Avp, b, n_steps, tol, *, stop=lambda residual_sq, tol: residual_sq < tol, conjugate=True, beta_is_one=False):
    """Conjugate gradient with switchable faults, for the mistakes below (the right version is trpo.conjugate_gradient)."""
    x, residual = torch.zeros_like(b), b.clone()
    direction, residual_sq = residual.clone(), residual @ residual
    for _ in range(n_steps):
        if stop(residual_sq, tol):
            break
        A_direction = Avp(direction)
        step = residual_sq / (direction @ A_direction)
        x = x + step * direction
        residual = residual - step * A_direction
        new_residual_sq = residual @ residual
        beta = 1.0 if beta_is_one else new_residual_sq / residual_sq
        direction = residual + beta * direction if conjugate else residual.clone()
        residual_sq = new_residual_sq
    return x


register(Check(
    grade_id="test_conjugate_gradient",
    make_cases=_cg_cases,
    reference=trpo.conjugate_gradient,
    run=runners.conjugate_gradient,
    judge=_judge_cg,
    mistakes=(
        Mistake("no_early_stop",
                "looks like the loop ignores tol: once |r|^2 < tol it must stop (on an exactly solved system "
                "the next step divides 0 by 0)",
                lambda Avp, b, n_steps, tol: _cg(Avp, b, n_steps, tol, stop=lambda residual_sq, tol: False)),
        Mistake("norm_not_squared",
                "looks like the stopping test uses |r| instead of the squared norm |r|^2",
                lambda Avp, b, n_steps, tol: _cg(Avp, b, n_steps, tol,
                                                 stop=lambda residual_sq, tol: residual_sq.sqrt() < tol)),
        Mistake("steepest_descent",
                "looks like steepest descent: the new direction must be r + beta * d (conjugate to the old "
                "ones), not just r",
                lambda Avp, b, n_steps, tol: _cg(Avp, b, n_steps, tol, conjugate=False)),
        Mistake("beta_is_one",
                "looks like beta = 1: |r|^2 was overwritten before beta = |r_new|^2 / |r_old|^2 was computed "
                "(update order)",
                lambda Avp, b, n_steps, tol: _cg(Avp, b, n_steps, tol, beta_is_one=True)),
    ),
))
