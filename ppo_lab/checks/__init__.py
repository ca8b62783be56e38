"""Exercise checks: ``check(grade_id, answer, hidden=False)`` for notebooks, ``verify`` for the grader.

Each concept has a module here (``pg.py``, ``gae.py``, ...) that registers its checks; they are
all imported below, so ``get(grade_id)`` knows every exercise of the course.
"""
import importlib
import pkgutil

from .core import REGISTRY, Case, Check, Mistake, Verdict, answer_or_reference, check, get, register, verify

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("core", "inputs"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REGISTRY", "Case", "Check", "Mistake", "Verdict", "answer_or_reference", "check", "get", "register", "verify"]
