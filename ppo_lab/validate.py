"""Input checks shared by the reference implementations.

Every reference function validates what it is given and raises ``ValueError`` naming the
argument, so a student who passes a wrong shape or a NaN sees what went wrong instead of a
silently wrong number.
"""
from __future__ import annotations

import torch


def tensor(name: str, value, *, ndim: tuple[int, ...] | None = None, floating: bool = True) -> torch.Tensor:
    """Check that ``value`` is a finite tensor (of one of the allowed ``ndim``) and return it."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.dim() not in ndim:
        allowed = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name} must be {allowed}, got shape {list(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {list(value.shape)}); need at least one element")
    if floating and not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if floating and not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).nonzero()[0].tolist()
        raise ValueError(f"{name} contains NaN or inf (first at index {bad})")
    return value


def same_shape(**named: torch.Tensor) -> None:
    """All tensors must have one shape; the message lists every argument's shape."""
    shapes = {name: list(t.shape) for name, t in named.items()}
    if len({tuple(s) for s in shapes.values()}) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"shape mismatch: {listed} must all have the same shape")


def in_open_interval(name: str, value, low: float, high: float) -> float:
    """``low < value < high`` for a finite real number."""
    value = number(name, value)
    if not low < value < high:
        raise ValueError(f"{name} must be in ({low}, {high}), got {value}")
    return value


def in_closed_interval(name: str, value, low: float, high: float) -> float:
    value = number(name, value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def non_negative(name: str, value) -> float:
    value = number(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def number(name: str, value) -> float:
    """A finite real number (Python or 0-dim tensor)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number, got a tensor of shape {list(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    return value
