"""What the three trainers share, so that the same knob has the same name, check and meaning in each.

* Configs are dataclasses that subclass ``TrainerConfig``: the same names for the same knobs
  (``learning_rate``, ``clip_epsilon``, ``num_epochs``, ``num_minibatches``, ``value_coef``,
  ``max_grad_norm``, ``gamma``, ``gae_lambda``, ``seed``), checked in ``__post_init__`` with
  ``TrainerConfig.check`` (a wrong value is a ``ValueError`` naming the field), copied with
  ``replace``.
* A trainer returns its history as a list with one dict per update (``update``, its own
  measurements, ``wall_time`` since the start) and calls ``callback(row)`` after each update;
  ``column(history, key)`` reads one measurement across updates.
* A trainer runs on one torch thread (``one_torch_thread``).
"""
from __future__ import annotations

import dataclasses
import functools

import torch

from .. import validate


class TrainerConfig:
    """Base of ``PPOConfig``, ``TRPOConfig`` and ``RLHFConfig`` (each a dataclass)."""

    def check(self, *, positive_ints=(), positive=(), non_negative=(), fractions=(), open_fractions=(), flags=()):
        """Validate fields by kind: integers >= 1; numbers > 0; numbers >= 0; numbers in (0, 1];
        numbers in (0, 1); booleans. The first bad field raises a ``ValueError`` that names it."""
        for name in positive_ints:
            validate.positive_int(name, getattr(self, name))
        for name in positive:
            if not validate.number(name, getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in non_negative:
            validate.non_negative(name, getattr(self, name))
        for name in fractions:
            if not 0 < validate.number(name, getattr(self, name)) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        for name in open_fractions:
            validate.in_open_interval(name, getattr(self, name), 0.0, 1.0)
        for name in flags:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def replace(self, **changes):
        """A copy with some fields changed (validated like a new config)."""
        return dataclasses.replace(self, **changes)


def column(history: list[dict], key: str) -> list:
    """``[row[key] for row in history]``: one measurement, one value per update."""
    if history and key not in history[0]:
        raise KeyError(f"history rows have no {key!r}; they have {sorted(history[0])}")
    return [row[key] for row in history]


def one_torch_thread(function):
    """Run ``function`` with one torch thread, then restore the previous setting.

    Networks this small gain nothing from a second thread, and on a busy machine the threads
    spin waiting for each other (Adam steps ran 100x slower with two threads on a loaded
    two-core machine). One thread also fixes the order of floating-point sums, so a seeded run
    gives the same numbers every time.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper
