"""The machinery behind every autograded exercise check.

A *check* knows how to make test inputs, how to run a student's answer on them, what the
reference answer is, and which classic mistakes to recognise. One function, :func:`check`,
serves two audiences:

* a student running a notebook: the check runs here and raises ``AssertionError`` with a
  message that says what was expected, what came back, and which mistake it looks like;
* the autograder: with ``PPO_LAB_GRADING_DIR`` set, the check only runs the student's answer
  and writes the outputs to ``records.jsonl`` in that directory. Pass/fail is decided later,
  by :func:`verify` in the grader's own clean process, so nothing the student's code does to
  torch, numpy or this module inside the kernel can turn a wrong answer into points.

Both paths encode the outputs to JSON and judge them with the same :func:`verify`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

GRADING_DIR_VARIABLE = "PPO_LAB_GRADING_DIR"
REGISTRY: dict[str, "Check"] = {}


@dataclass
class Case:
    """One set of inputs. ``description`` is safe to show even for hidden cases."""

    description: str
    kwargs: dict[str, Any]

    def fresh_kwargs(self) -> dict[str, Any]:
        """Deep copies, so an answer that modifies its inputs in place cannot spoil the reference."""
        return copy.deepcopy(self.kwargs)


@dataclass(frozen=True)
class Mistake:
    """A classic wrong implementation and how to name it in feedback."""

    name: str  # short id for grade sheets, e.g. "max_instead_of_min"
    message: str  # shown to the student, e.g. "looks like max instead of min"
    implementation: Callable


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str
    mistake: str | None = None


@dataclass
class Check:
    """One autograded item (its ``grade_id`` is the nbgrader grade id of the test cell).

    Args:
        grade_id: ``test_<function>`` or ``test_<function>_<aspect>``.
        make_cases: ``(generator, hidden) -> list[Case]``. Hidden cases are stronger
            (more shapes, edge cases), never different in kind.
        reference: the ``ppo_lab`` function that is the right answer, or None when the answer
            is data (e.g. a student's measured sweep). Calling it from the answer earns nothing.
        run: ``(answer, case) -> outputs`` (tensors, floats, dicts, lists). Default: ``answer(**kwargs)``.
        judge: ``(got, want, case) -> problem or None``; ``want`` is ``run(reference, case)``
            (None without a reference). Default: numerical comparison, see :func:`compare`.
        mistakes: wrong implementations to recognise when the answer fails.
    """

    grade_id: str
    make_cases: Callable[[torch.Generator, bool], list[Case]]
    reference: Callable | None = None
    run: Callable[[Any, Case], Any] = field(default=lambda answer, case: answer(**case.fresh_kwargs()))
    judge: Callable[[Any, Any, Case], str | None] | None = None
    mistakes: tuple[Mistake, ...] = ()

    @property
    def reference_name(self) -> str | None:
        return None if self.reference is None else self.reference.__name__

    def cases(self, seed: int, hidden: bool) -> list[Case]:
        generator = torch.Generator().manual_seed(seed)
        return self.make_cases(generator, hidden)

    def problem(self, got, want, case: Case) -> str | None:
        return (self.judge or compare)(got, want, case)


def register(item: Check) -> Check:
    if item.grade_id in REGISTRY:
        raise ValueError(f"duplicate check grade_id {item.grade_id!r}")
    REGISTRY[item.grade_id] = item
    return item


def get(grade_id: str) -> Check:
    try:
        return REGISTRY[grade_id]
    except KeyError:
        raise ValueError(f"unknown check {grade_id!r}; known: {', '.join(sorted(REGISTRY))}") from None


def visible_seed(grade_id: str) -> int:
    """Visible cases are the same for everyone and every run: a seed derived from the id."""
    return int.from_bytes(hashlib.sha256(grade_id.encode()).digest()[:4], "little")


LOCAL_HIDDEN_SEED = 12345  # hidden cases outside grading (instructor running the solution)


# --- running an answer -------------------------------------------------------------------------

def check(grade_id: str, answer, *, hidden: bool = False) -> None:
    """Check ``answer`` (usually the student's function) for the exercise ``grade_id``."""
    item = get(grade_id)
    grading_dir = os.environ.get(GRADING_DIR_VARIABLE)
    if hidden:
        seed = _grading_seed(grading_dir) if grading_dir else LOCAL_HIDDEN_SEED
    else:
        seed = visible_seed(grade_id)
    outputs, used_reference = run_answer(item, answer, seed, hidden)
    if grading_dir:
        _append_record(grading_dir, grade_id, hidden, seed, outputs, used_reference)
        return
    verdict = verify(grade_id, hidden, seed, outputs, used_reference)
    if not verdict.passed:
        raise AssertionError(verdict.message)
    kind = "hidden" if hidden else "visible"
    print(f"✓ {grade_id}: all {len(outputs)} {kind} cases pass")


def run_answer(item: Check, answer, seed: int, hidden: bool) -> tuple[list, bool]:
    """Run the answer on every case; returns the encoded outputs and whether it used the reference."""
    outputs, used_reference = [], False
    for case in item.cases(seed, hidden):
        with _ReferenceTripwire(item.reference) as tripwire:
            try:
                result = encode(item.run(answer, case))
            except NotImplementedError:
                result = {"error": "NotImplementedError: the exercise is not implemented yet"}
            except Exception as error:  # noqa: BLE001 - any failure of student code is a result
                result = {"error": f"{type(error).__name__}: {error}"[:500]}
        used_reference = used_reference or tripwire.called
        outputs.append(result)
    return outputs, used_reference


class _ReferenceTripwire:
    """Notices a call into the reference function's code, however it was reached.

    Matching on the code location (file, line, name) rather than the function object also
    catches aliases, ``__wrapped__``, ``importlib.reload`` and re-imports under another name.
    """

    def __init__(self, reference: Callable | None):
        self.called = False
        code = getattr(reference, "__code__", None)
        self._where = None if code is None else (code.co_filename, code.co_firstlineno, code.co_name)

    def _profile(self, frame, event, arg):
        if event == "call":
            code = frame.f_code
            if (code.co_filename, code.co_firstlineno, code.co_name) == self._where:
                self.called = True

    def __enter__(self):
        if self._where is not None:
            self._previous = sys.getprofile()
            sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        if self._where is not None:
            sys.setprofile(self._previous)
        return False


def _grading_seed(grading_dir: str) -> int:
    with open(os.path.join(grading_dir, "seed")) as f:
        return int(f.read().strip())


def _append_record(grading_dir, grade_id, hidden, seed, outputs, used_reference) -> None:
    record = {
        "grade_id": grade_id,
        "hidden": hidden,
        "seed": seed,
        "outputs": outputs,
        "used_reference": used_reference,
    }
    with open(os.path.join(grading_dir, "records.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"{grade_id}: answer recorded for grading")


# --- judging outputs (also runs in the grader's own process) ------------------------------------

def verify(grade_id: str, hidden: bool, seed: int, outputs: list, used_reference: bool = False) -> Verdict:
    """Judge encoded ``outputs`` of an answer against the reference, from scratch.

    Messages for hidden cases describe the case (e.g. "[T, N] rollout with terminations")
    and a recognised mistake, never the hidden inputs or reference outputs.
    """
    item = get(grade_id)
    if used_reference:
        return Verdict(False, f"{grade_id}: the answer calls ppo_lab's reference "
                              f"`{item.reference_name}`: write your own implementation.", "uses_reference")
    cases = item.cases(seed, hidden)
    if not isinstance(outputs, list) or len(outputs) != len(cases):
        return Verdict(False, f"{grade_id}: expected results for {len(cases)} cases, got something else.")
    for index, (case, got) in enumerate(zip(cases, outputs)):
        label = f"{'hidden' if hidden else 'visible'} case {index + 1}/{len(cases)} ({case.description})"
        if isinstance(got, dict) and set(got) == {"error"}:
            return Verdict(False, f"{grade_id}: {label} raised {got['error']}")
        want = None if item.reference is None else encode(item.run(item.reference, case))
        problem = item.problem(decode(got), decode(want), case)
        if problem is None:
            continue
        mistake = _recognise(item, case, got)
        detail = "" if hidden else f": {problem}"
        hint = f" — {mistake.message}" if mistake else ""
        return Verdict(False, f"{grade_id}: {label} is wrong{detail}{hint}", mistake.name if mistake else None)
    return Verdict(True, f"{grade_id}: all {len(cases)} {'hidden' if hidden else 'visible'} cases pass")


def _recognise(item: Check, case: Case, got) -> Mistake | None:
    for mistake in item.mistakes:
        try:
            theirs = encode(item.run(mistake.implementation, case))
        except Exception:  # noqa: BLE001 - a mistake that cannot run on this case just does not match
            continue
        if item.problem(decode(got), decode(theirs), case) is None:
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


# --- JSON encoding of outputs ------------------------------------------------------------------

def encode(value):
    """Outputs -> JSON-safe data. Tensors keep dtype and shape; anything else unknown is named."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu()
        return {"tensor": {"data": data.tolist(), "dtype": str(data.dtype).removeprefix("torch."),
                           "shape": list(data.shape)}}
    if isinstance(value, dict):
        return {"dict": {str(k): encode(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"list": [encode(v) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    if hasattr(value, "item") and getattr(value, "size", None) == 1:  # numpy scalar
        return {"value": value.item()}
    return {"unsupported": type(value).__name__}


def decode(data):
    """Inverse of :func:`encode` (``None`` stays ``None``)."""
    if data is None:
        return None
    if not isinstance(data, dict) or len(data) != 1:
        return _Unsupported("malformed")
    (kind, payload), = data.items()
    if kind == "tensor":
        return _tensor(payload)
    if kind == "dict" and isinstance(payload, dict):
        return {k: decode(v) for k, v in payload.items()}
    if kind == "list" and isinstance(payload, list):
        return [decode(v) for v in payload]
    if kind == "value":
        return payload
    return _Unsupported(str(payload))


def _tensor(payload):
    try:
        dtype = getattr(torch, payload["dtype"])
        if not isinstance(dtype, torch.dtype):
            raise TypeError(payload["dtype"])
        return torch.tensor(payload["data"], dtype=dtype).reshape(payload["shape"])
    except Exception:  # noqa: BLE001 - a forged or broken record is just a wrong answer
        return _Unsupported("malformed tensor")


@dataclass(frozen=True)
class _Unsupported:
    type_name: str

    def __repr__(self):
        return f"<{self.type_name}>"


def answer_or_reference(answer, grade_id: str):
    """For demos that build on an exercise: the student's answer if it passes its visible
    check, otherwise ppo_lab's reference — and say which one runs, so nothing is hidden."""
    item = get(grade_id)
    seed = visible_seed(grade_id)
    outputs, used_reference = run_answer(item, answer, seed, hidden=False)
    verdict = verify(grade_id, False, seed, outputs, used_reference)
    if verdict.passed:
        print(f"Using your {item.reference_name}.")
        return answer
    print(f"Your {item.reference_name} does not pass its check yet, so this demo uses "
          f"{item.reference.__module__}.{item.reference_name} instead.")
    return item.reference
