"""Exercise checks: ``check(grade_id, answer, hidden=False)`` and ``answer_or_reference`` for notebooks.

* ``protocol``, ``runners``, ``student``: the kernel side, all a grading box gets of this package;
* ``registry`` (every check, with its cases, reference and mistakes; one concept module each:
  ``pg.py``, ``gae.py``, ...) and ``judge`` (``verify``, ``compare``): the grader side, loaded on
  first use so that the box, which has neither, can still import this package.
"""
import importlib

from .student import answer_or_reference, check

_GRADER_SIDE = {"REGISTRY": "registry", "Check": "registry", "Mistake": "registry", "register": "registry",
                "get": "registry", "visible_seed": "registry", "Verdict": "judge", "verify": "judge",
                "compare": "judge"}


def __getattr__(name):
    if name in _GRADER_SIDE:
        return getattr(importlib.import_module(f"{__name__}.{_GRADER_SIDE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["answer_or_reference", "check", *_GRADER_SIDE]
