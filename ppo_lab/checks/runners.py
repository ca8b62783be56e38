"""How a check calls an answer on one case: the only check code that runs the student's function.

Kernel side (see ``protocol.KERNEL_SIDE``): the grader pickles one of these (or a
``functools.partial`` of one) with the cases, and the kernel runs it. Nothing here knows a right
answer; the outputs are judged elsewhere.
"""
from __future__ import annotations

import torch

from .protocol import Case

__all__ = ["call", "scaled", "named", "value_and_grads", "output_and_grads", "diagnostics", "conjugate_gradient"]


def call(answer, case: Case):
    return answer(**case.fresh_kwargs())


def scaled(answer, case: Case, factor: float):
    """The answer's number times ``factor`` (learning rates ~1e-4 compare on a readable scale)."""
    return answer(**case.fresh_kwargs()) * factor


def named(answer, case: Case, names: tuple[str, ...]) -> dict:
    """A tuple result as a dict, so messages say ``result['advantages'][3]``."""
    result = answer(**case.fresh_kwargs())
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise TypeError(f"the answer must return a {'pair' if len(names) == 2 else 'tuple'} ({', '.join(names)}), "
                        f"got {type(result).__name__}")
    return dict(zip(names, result))


def _differentiable_inputs(case: Case, wrt: tuple[str, ...]) -> dict:
    kwargs = case.fresh_kwargs()
    for name in wrt:
        kwargs[name] = kwargs[name].detach().clone().requires_grad_(True)
    return kwargs


def _grads(scalar, kwargs: dict, wrt: tuple[str, ...]) -> dict:
    grads = torch.autograd.grad(scalar, [kwargs[name] for name in wrt], allow_unused=True)
    return {f"grad_{name}": torch.zeros_like(kwargs[name]) if grad is None else grad for name, grad in zip(wrt, grads)}


def value_and_grads(answer, case: Case, wrt: tuple[str, ...]) -> dict:
    """Run ``answer`` and differentiate its (scalar) output with respect to the inputs ``wrt``.

    A loss that is right in value but detached, or that lets gradient flow where it should
    not, is caught by the gradients.
    """
    kwargs = _differentiable_inputs(case, wrt)
    value = answer(**kwargs)
    if not (isinstance(value, torch.Tensor) and value.dim() == 0 and value.requires_grad):
        # No graph to differentiate: report "no gradient" so the judge says so.
        return {"value": value, **{f"grad_{name}": None for name in wrt}}
    return {"value": value, **_grads(value, kwargs, wrt)}


def output_and_grads(answer, case: Case, wrt: tuple[str, ...]) -> dict:
    """For answers returning a ``[B]`` tensor: the output and the gradients of its sum.

    The gradient into an input that should be a constant (the old policy) must be exactly zero.
    """
    kwargs = _differentiable_inputs(case, wrt)
    value = answer(**kwargs)
    if not (isinstance(value, torch.Tensor) and value.requires_grad):
        return {"value": value, **{f"grad_{name}": None for name in wrt}}
    return {"value": value, **_grads(value.sum(), kwargs, wrt)}


def diagnostics(answer, case: Case) -> dict:
    """The answer's dict, plus the loss's gradients with respect to BOTH log-prob inputs.

    The reference's gradient with respect to old_log_probs is zero: a nonzero one means the
    old policy was not treated as a constant.
    """
    wrt = ("new_log_probs", "old_log_probs")
    kwargs = _differentiable_inputs(case, wrt)
    result = answer(**kwargs)
    loss = result.get("loss") if isinstance(result, dict) else None
    grads = {f"grad_{name}": None for name in wrt}
    if isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.requires_grad:
        grads = _grads(loss, kwargs, wrt)
    return {"diagnostics": result, **grads}


def conjugate_gradient(answer, case: Case) -> dict:
    """Call ``answer(Avp, b, n_steps, tol)`` with an Avp that counts its calls (each costs a backward pass in TRPO)."""
    kwargs = case.fresh_kwargs()
    A = kwargs.pop("A")
    calls = 0

    def Avp(v):
        nonlocal calls
        calls += 1
        return A @ v

    x = answer(Avp, kwargs["b"], n_steps=kwargs["n_steps"], tol=kwargs["tol"])
    return {"x": x, "avp_calls": calls}
