"""Small helpers the concept modules use to build cases and run answers."""
from __future__ import annotations

import torch

from .core import Case


def normal(generator: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale


def log_probs(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """Valid log-probabilities in (-3, -0.05)."""
    return -0.05 - 2.95 * torch.rand(*shape, generator=generator)


def value_and_grads(answer, case: Case, wrt: tuple[str, ...]) -> dict:
    """Run ``answer`` and differentiate its (scalar) output with respect to the inputs ``wrt``.

    A loss that is right in value but detached, or that lets gradient flow where it should
    not, is caught by the gradients.
    """
    kwargs = case.fresh_kwargs()
    for name in wrt:
        kwargs[name] = kwargs[name].detach().clone().requires_grad_(True)
    value = answer(**kwargs)
    result = {"value": value}
    if not (isinstance(value, torch.Tensor) and value.dim() == 0 and value.requires_grad):
        # No graph to differentiate: report "no gradient" so the judge says so.
        return {**result, **{f"grad_{name}": None for name in wrt}}
    grads = torch.autograd.grad(value, [kwargs[name] for name in wrt], allow_unused=True)
    for name, grad in zip(wrt, grads):
        result[f"grad_{name}"] = torch.zeros_like(kwargs[name]) if grad is None else grad
    return result
