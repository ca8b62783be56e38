"""Judging encoded outputs against the reference: in the grader's own process, or in a student's
kernel outside grading. Grader side only (never in the grading box)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .protocol import Case, decode, encode


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str
    mistake: str | None = None


def verify(grade_id: str, hidden: bool, seed: int, outputs: list, used_reference: bool = False) -> Verdict:
    """Judge encoded ``outputs`` of an answer against the reference, from scratch.

    The cases are regenerated here from ``seed``: outputs computed on any other inputs fail.
    Messages for hidden cases describe the case (e.g. "[T, N] rollout with terminations")
    and a recognised mistake, never the hidden inputs or reference outputs. ``used_reference``
    is only ever known outside grading (the grading box has no reference to call).
    """
    from .registry import get  # here, not at the top: loading the registry imports modules that import compare

    item = get(grade_id)
    if used_reference:
        return Verdict(False, f"{grade_id}: the answer calls ppo_lab's reference `{item.reference_name}`: write your "
                              "own implementation (while grading, ppo_lab has no reference to call).", "uses_reference")
    cases = item.cases(seed, hidden)
    if not isinstance(outputs, list) or len(outputs) != len(cases):
        return Verdict(False, f"{grade_id}: expected results for {len(cases)} cases, got something else.")
    for index, (case, got) in enumerate(zip(cases, outputs)):
        label = f"{'hidden' if hidden else 'visible'} case {index + 1}/{len(cases)} ({case.description})"
        if isinstance(got, dict) and set(got) == {"error"}:
            return Verdict(False, f"{grade_id}: {label} raised {got['error']}")
        want = None if item.reference is None else encode(item.run(item.reference, case))
        problem = _problem(item, decode(got), decode(want), case)
        if problem is None:
            continue
        mistake = _recognise(item, case, got)
        detail = "" if hidden else f": {problem}"
        hint = f" — {mistake.message}" if mistake else ""
        return Verdict(False, f"{grade_id}: {label} is wrong{detail}{hint}", mistake.name if mistake else None)
    return Verdict(True, f"{grade_id}: all {len(cases)} {'hidden' if hidden else 'visible'} cases pass")


def _problem(item, got, want, case: Case) -> str | None:
    return (item.judge or compare)(got, want, case)


def _recognise(item, case: Case, got):
    for mistake in item.mistakes:
        try:
            theirs = encode(item.run(mistake.implementation, case))
        except Exception:  # noqa: BLE001 - a mistake that cannot run on this case just does not match
            continue
        if _problem(item, decode(got), decode(theirs), case) is None:
            return mistake
    return None


def compare(got, want, case: Case, *, rtol: float = 1e-4, atol: float = 1e-5, where: str = "result") -> str | None:
    """Compare decoded outputs; returns a human-readable problem or None when they match."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{where} should be a dict with keys {sorted(want)}, got {type(got).__name__}"
        if set(got) != set(want):
            return f"{where} should have keys exactly {sorted(want)}, got {sorted(got)}"
        for key in want:
            problem = compare(got[key], want[key], case, rtol=rtol, atol=atol, where=f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(want, (list, tuple)) and not isinstance(want, torch.Tensor):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return f"{where} should be a sequence of {len(want)} items, got {_describe(got)}"
        for i, (g, w) in enumerate(zip(got, want)):
            problem = compare(g, w, case, rtol=rtol, atol=atol, where=f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(want, torch.Tensor):
        if got is None and "grad_" in where:
            return f"no gradient reaches {where.split('grad_')[-1].rstrip(chr(39) + ']')}: is the result detached?"
        if not isinstance(got, torch.Tensor):
            return f"{where} should be a tensor of shape {list(want.shape)}, got {_describe(got)}"
        if got.shape != want.shape:
            return f"{where} should have shape {list(want.shape)}, got {list(got.shape)}"
        if want.dtype == torch.bool or got.dtype == torch.bool:
            if got.dtype != want.dtype:
                return f"{where} should have dtype {want.dtype}, got {got.dtype}"
            wrong = (got != want).nonzero()
            if len(wrong):
                i = tuple(wrong[0].tolist())
                return f"{where}{list(i)} should be {want[i].item()}, got {got[i].item()}"
            return None
        got64, want64 = got.double(), want.double()
        # Matching NaNs count as equal: the reference never returns NaN on valid inputs, so this
        # changes no grade, but it lets feedback recognise mistakes whose symptom IS a NaN.
        close = torch.isclose(got64, want64, rtol=rtol, atol=atol, equal_nan=True)
        if not close.all():
            i = tuple((~close).nonzero()[0].tolist())
            at = f"{where}{list(i)}" if i else where
            return f"{at} should be {want64[i].item():.6g}, got {got64[i].item():.6g}"
        return None
    if isinstance(want, bool) or want is None:
        return None if got == want else f"{where} should be {want!r}, got {got!r}"
    if isinstance(want, (int, float)):
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return f"{where} should be a number, got {_describe(got)}"
        both_nan = math.isnan(got) and math.isnan(want)
        if not (both_nan or math.isclose(got, want, rel_tol=rtol, abs_tol=atol)):
            return f"{where} should be {want:.6g}, got {got:.6g}"
        return None
    return None if got == want else f"{where} should be {want!r}, got {got!r}"


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    return type(value).__name__
