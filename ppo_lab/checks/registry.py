"""Every exercise check of the course, by grade id: cases, reference, judge and mistake catalogue.

Grader side only: the grading box never gets this module or the concept modules it loads
(``pg.py``, ``gae.py``, ...), since they hold the references and near-right wrong versions.
"""
from __future__ import annotations

import hashlib
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

import torch

from . import runners
from .protocol import KERNEL_SIDE, Case

REGISTRY: dict[str, "Check"] = {}
LOCAL_HIDDEN_SEED = 12345  # hidden cases outside grading (a student or instructor running a notebook)


@dataclass(frozen=True)
class Mistake:
    """A classic wrong implementation and how to name it in feedback."""

    name: str  # short id for grade sheets, e.g. "max_instead_of_min"
    message: str  # shown to the student, e.g. "looks like max instead of min"
    implementation: Callable


@dataclass
class Check:
    """One autograded item (its ``grade_id`` is the nbgrader grade id of the test cell).

    Args:
        grade_id: ``test_<function>`` or ``test_<function>_<aspect>``.
        make_cases: ``(generator, hidden) -> list[Case]``. Hidden cases are stronger
            (more shapes, edge cases), never different in kind.
        reference: the right answer, or None when the answer is data judged by ``judge``.
        run: ``(answer, case) -> outputs``: a function of ``runners`` (or a partial of one),
            since the grader sends it into the grading box with the cases.
        judge: ``(got, want, case) -> problem or None``; ``want`` is ``run(reference, case)``
            (None without a reference). Default: numerical comparison, ``judge.compare``.
        mistakes: wrong implementations to recognise when the answer fails.
    """

    grade_id: str
    make_cases: Callable[[torch.Generator, bool], list[Case]]
    reference: Callable | None = None
    run: Callable[[Any, Case], Any] = runners.call
    judge: Callable[[Any, Any, Case], str | None] | None = None
    mistakes: tuple[Mistake, ...] = ()

    @property
    def reference_name(self) -> str | None:
        return None if self.reference is None else self.reference.__name__

    def cases(self, seed: int, hidden: bool) -> list[Case]:
        generator = torch.Generator().manual_seed(seed)
        return self.make_cases(generator, hidden)


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


# Each concept module registers its checks when imported.
for _module in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
    if _module.name not in (*KERNEL_SIDE, "registry", "judge", "inputs"):
        importlib.import_module(f"{__package__}.{_module.name}")
