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


# --- chapter 6: a whole PPO update, and training with it ------------------------------------------

def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def value_and_parameter_grads(answer, case: Case) -> dict:
    """For a loss of an agent that returns a dict with ``loss`` (``ppo_loss``): the dict, and the
    gradient of ``loss`` with respect to the agent's parameters (``case.kwargs["agent"]``), flat."""
    kwargs = case.fresh_kwargs()
    result = answer(**kwargs)
    loss = result.get("loss") if isinstance(result, dict) else None
    grad = None
    if isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.requires_grad:
        params = list(kwargs["agent"].parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grad = _flat(torch.zeros_like(p) if g is None else g for p, g in zip(params, grads))
    return {"result": result, "grad_parameters": grad}


def update_trace(answer, case: Case) -> dict:
    """Run an update with ``ppo_update``'s signature on the case's agent and rollout, and record
    what it did, step by step, without judging any of it.

    ``case.kwargs``: ``agent`` (an ``ActorCritic`` without obs normalisation), ``rollout``, ``config``,
    ``optimizer`` (a callable building the optimizer from the agent's parameters) and, optionally,
    ``record``: which of the per-step fields below to keep (default all). Recorded:

    * ``result``: what the answer returned;
    * ``steps``: one entry per ``optimizer.step()``: ``rows``, the rollout indices of the
      observations the actor saw (with gradients on) since the previous step, in order;
      ``params``, the parameters just before the step; ``grad``, their ``.grad`` at the step;
      ``backward``, the sum of the gradients back-propagated into them since the previous step
      (before any clipping or accumulation in ``.grad``);
    * ``final``: the parameters at the end.

    The grader replays each step from these (the reference loss at ``params`` on ``rows``), so a
    judgement never depends on the random permutation an answer drew.
    """
    kwargs = case.fresh_kwargs()
    agent, rollout = kwargs["agent"], kwargs["rollout"]
    optimizer = kwargs.pop("optimizer")(agent.parameters())
    record = set(kwargs.pop("record", ("rows", "params", "grad", "backward")))
    params = list(agent.parameters())
    row_of = {row.numpy().tobytes(): i for i, row in enumerate(rollout.obs)}
    seen: list[int] = []
    incoming = [torch.zeros_like(p) for p in params]
    steps: list[dict] = []

    def actor_input(module, inputs):
        if torch.is_grad_enabled():
            seen.extend(row_of.get(row.numpy().tobytes(), -1) for row in inputs[0].detach())

    def before_step(opt, args, step_kwargs):
        step = {"rows": lambda: torch.tensor(list(dict.fromkeys(seen)), dtype=torch.int64),  # first-seen order
                "params": lambda: _flat(params),
                "grad": lambda: _flat(p.grad if p.grad is not None else torch.zeros_like(p) for p in params),
                "backward": lambda: _flat(incoming)}
        steps.append({name: value() for name, value in step.items() if name in record})
        seen.clear()
        for g in incoming:
            g.zero_()

    def on_gradient(index):
        def hook(grad):
            incoming[index].add_(grad.detach())
        return hook

    handles = [agent.actor.register_forward_pre_hook(actor_input), optimizer.register_step_pre_hook(before_step)]
    handles += [p.register_hook(on_gradient(i)) for i, p in enumerate(params)]
    try:
        result = answer(agent, optimizer, rollout, kwargs["config"])
    finally:
        for handle in handles:
            handle.remove()
    return {"result": result, "steps": steps, "final": _flat(params)}


def training_runs(answer, case: Case) -> dict:
    """Train CartPole with ``answer`` as the update, once per config, and evaluate.

    ``case.kwargs``: ``configs`` (``PPOConfig``s), ``train`` (``train_ppo``), ``evaluate``,
    ``make_agent`` (the agent class), ``episodes``, ``eval_seed``, ``target``, ``enough`` (runs that
    must reach ``target``: once that many have, the rest are skipped) and ``time_budget`` (seconds
    for all the runs: a grading cell has a time limit, and a run still going then is stopped).
    Each run starts from the agent ``train_ppo`` would build itself (seeded by the config) and stops
    as soon as a deterministic evaluation after an update reaches ``target``. Returns, per run, that
    last evaluation (None: skipped) and the updates taken, and whether time ran out.
    """
    import time

    kwargs = case.fresh_kwargs()
    start, budget = time.perf_counter(), kwargs["time_budget"]
    evaluations, updates, out_of_time = [], [], False
    for config in kwargs["configs"]:
        if sum(score is not None and score >= kwargs["target"] for score in evaluations) >= kwargs["enough"]:
            evaluations.append(None)
            updates.append(0)
            continue
        if time.perf_counter() - start > budget:
            out_of_time = True
            evaluations.append(None)
            updates.append(0)
            continue
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as train_ppo: the agent's initialisation then does not depend on the threads
        try:
            torch.manual_seed(config.seed)
            agent = kwargs["make_agent"]()
        finally:
            torch.set_num_threads(threads)
        scores = []

        def evaluate_and_stop(row, agent=agent, scores=scores):
            nonlocal out_of_time
            returns = kwargs["evaluate"](agent, episodes=kwargs["episodes"], seed=kwargs["eval_seed"])
            scores.append(sum(returns) / len(returns))
            if scores[-1] < kwargs["target"] and time.perf_counter() - start > budget:
                out_of_time = True
                return True
            return scores[-1] >= kwargs["target"]

        kwargs["train"](config, progress=False, agent=agent, update_fn=answer, callback=evaluate_and_stop)
        evaluations.append(scores[-1] if scores else float("nan"))
        updates.append(len(scores))
    return {"evaluations": evaluations, "updates": updates, "out_of_time": out_of_time}


__all__ += ["value_and_parameter_grads", "update_trace", "training_runs"]
