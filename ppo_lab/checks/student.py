"""``check`` and ``answer_or_reference``: what a notebook calls. Kernel side (``protocol.KERNEL_SIDE``).

Two modes:

* a student running a notebook: the check runs here, against the registry's reference, and
  raises ``AssertionError`` saying what was expected, what came back and which mistake it looks
  like;
* grading (``PPO_LAB_GRADING_DIR`` set): the kernel runs in the grader's sandbox with a build of
  ppo_lab that has no registry, no references of the graded exercises and no judge. ``check``
  runs the answer on the cases the grader put in the box and publishes the outputs as a record;
  the grader judges them in its own process. Whatever the student's code does here, it can only
  hand in outputs, and only a right implementation computes the right ones.
"""
from __future__ import annotations

import json  # noqa: F401 - json, IPython.display and torch are in MEASURING
import os
import sys
import threading
from typing import Callable

import IPython.display  # noqa: F401
import torch  # noqa: F401

from . import protocol, runners
from .protocol import Case, Record, encode

# What turns an answer into a record once the answer has returned. A record made after student
# code swapped any of it says so (``Record.changed``): runtime evidence, and no points for it.
MEASURING = ("torch.autograd.grad", "json.dumps", "IPython.display.display",
             *(f"torch.Tensor.{name}" for name in ("detach", "cpu", "tolist", "clone", "requires_grad_", "sum", "dim")),
             *(f"ppo_lab.checks.runners.{name}" for name in runners.__all__),
             "ppo_lab.checks.protocol.encode", "ppo_lab.checks.protocol.publish", "ppo_lab.checks.student.outputs")


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is not None:
            value = module
            for attribute in parts[cut:]:
                value = getattr(value, attribute, None)
            return value
    return None


def _fingerprint(obj) -> tuple:
    return id(obj), id(getattr(obj, "__code__", None))


def grading_dir() -> str | None:
    return os.environ.get(protocol.GRADING_DIR_VARIABLE)


def check(grade_id: str, answer, *, hidden: bool = False) -> None:
    """Check ``answer`` (usually the student's function) for the exercise ``grade_id``."""
    where = grading_dir()
    if where:
        run, cases = protocol.read_cases(where, grade_id, hidden)
        results = outputs(run, answer, cases)
        changed = tuple(name for name, seen in _MEASURED.items() if _fingerprint(_resolve(name)) != seen)
        protocol.publish(Record(grade_id, hidden, results, changed))
        print(f"{grade_id}: answer recorded for grading")
        return
    from .judge import verify
    from .registry import LOCAL_HIDDEN_SEED, get, visible_seed

    seed = LOCAL_HIDDEN_SEED if hidden else visible_seed(grade_id)
    verdict = verify(grade_id, hidden, seed, *run_answer(get(grade_id), answer, seed, hidden))
    if not verdict.passed:
        raise AssertionError(verdict.message)
    print(f"✓ {verdict.message}")


def outputs(run: Callable, answer, cases: list[Case]) -> list:
    """The answer's encoded outputs on every case; a failure of the answer is an output too."""
    results = []
    for case in cases:
        try:
            results.append(encode(run(answer, case)))
        except NotImplementedError:
            results.append({"error": "NotImplementedError: the exercise is not implemented yet"})
        except Exception as error:  # noqa: BLE001 - any failure of student code is a result
            results.append({"error": f"{type(error).__name__}: {error}"[:500]})
    return results


def run_answer(item, answer, seed: int, hidden: bool) -> tuple[list, bool]:
    """Outside grading: the outputs, and whether the answer called the reference on the way
    (it passes nothing then, and would fail while grading, where the reference is absent)."""
    cases = item.cases(seed, hidden)  # outside the tripwire: making some cases calls the reference
    with _ReferenceTripwire(item.reference) as tripwire:
        results = outputs(item.run, answer, cases)
    return results, tripwire.called


class _ReferenceTripwire:
    """Notices a call into the reference function's code, however it was reached.

    Matching on the code location (file, line, name) rather than the function object also
    catches aliases, ``__wrapped__``, ``importlib.reload`` and re-imports under another name.
    A courtesy for students outside grading; grading does not rely on it.
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


def answer_or_reference(answer, grade_id: str):
    """For demos that build on an exercise: the student's answer if it passes its visible
    check, otherwise ppo_lab's reference, saying which one runs. While grading there is no
    reference: the demo always runs the student's answer."""
    if grading_dir():
        print(f"While grading, this demo runs your {getattr(answer, '__name__', 'answer')}.")
        return answer
    from .judge import verify
    from .registry import get, visible_seed

    item = get(grade_id)
    seed = visible_seed(grade_id)
    if verify(grade_id, False, seed, *run_answer(item, answer, seed, hidden=False)).passed:
        print(f"Using your {item.reference_name}.")
        return answer
    print(f"Your {item.reference_name} does not pass its check yet, so this demo uses "
          f"{item.reference.__module__}.{item.reference_name} instead.")
    return item.reference


class _Delegate:
    """What a graded exercise's reference becomes in the grading build of ppo_lab: course code
    that calls it (a trainer, a widget) runs the student's own function of that name instead."""

    def __init__(self, name: str):
        self.__name__ = self.__qualname__ = name
        self._active = threading.local()

    def __call__(self, *args, **kwargs):
        answer = getattr(sys.modules.get("__main__"), self.__name__, None)
        if answer is None or answer is self or getattr(self._active, "on", False):
            raise RuntimeError(f"ppo_lab's {self.__name__} is not available while grading: course code runs your "
                               f"own {self.__name__}, which must not call ppo_lab's")
        self._active.on = True
        try:
            return answer(*args, **kwargs)
        finally:
            self._active.on = False


def student_answer(name: str) -> Callable:
    return _Delegate(name)


_MEASURED = {name: _fingerprint(_resolve(name)) for name in MEASURING}  # as the setup cell imported them
