"""Checks for chapter 6: ``ppo_loss``, ``ppo_update`` (one graded item per aspect) and ``fixed_ppo_update``.

test_ppo_loss                   the combined loss, its floats and its gradient w.r.t. the agent's parameters
test_ppo_update_full_batch      one minibatch per pass: the parameters after E epochs match the reference's
test_ppo_update_minibatches     every transition exactly once per pass, in num_minibatches minibatches, reshuffled
test_ppo_update_steps           one optimizer step per minibatch, and num_steps reports them
test_ppo_update_norm_adv        each minibatch's loss gradient: advantages normalised over that minibatch
test_ppo_update_grad_clip       the gradient at each step: this minibatch's only, clipped to max_grad_norm before it
test_ppo_update_target_kl       the update stops right after the first step whose approx_kl exceeds target_kl
test_ppo_update_solves_cartpole the student's update trains CartPole: evaluation >= 475 on 2 of 3 seeds
test_fixed_ppo_update           the silent-bugs exercise, full batch (as test_ppo_update_full_batch)
test_fixed_ppo_update_minibatches  the silent-bugs exercise, each minibatch's loss gradient (as norm_adv)

None of the update checks depends on the random permutation an update draws. The kernel records
every optimizer step (``runners.update_trace``: the rollout rows the actor saw, the parameters
before the step, the gradients back-propagated and the gradient at the step); the judges here
replay each step with the reference loss at those parameters on those rows, and describe what the
update did in words ("advantages normalised over the whole rollout"). An answer passes when its
description is the reference's; a wrong one is named by the catalogued mistake with the same
description.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch.nn.utils import vector_to_parameters

from ..exercises import build_ppo
from . import runners
from .judge import compare
from .protocol import Case
from .registry import Check, Mistake, register

UNKNOWN = "none of the known variants"  # a description that never matches another one
# Seconds for one solve check's three runs: its cell runs two of them (visible, hidden) under the
# grader's 60 s per-cell limit. ppo_lab's update needs 5-10 s for three seeds on a busy 2-core machine.
SOLVE_TIME_BUDGET = 25.0


# --- cases ----------------------------------------------------------------------------------------


def _agent_and_rollout(generator: torch.Generator, batch: int, obs_dim: int = 3, num_actions: int = 3,
                       hidden: int = 8):
    """A small actor-critic with a non-uniform policy, and a rollout it collected: log-probs,
    logits and values are its own (ratio = 1 at the first step), advantages have mean ~0.3 and
    std ~1.5 (so normalising them changes the loss), returns = advantages + values."""
    from ..algos.rollout import Rollout
    from ..models.actor_critic import ActorCritic

    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        agent = ActorCritic(obs_dim, num_actions, hidden)
        with torch.no_grad():
            agent.actor[-1].weight.normal_(0.0, 0.5)
    obs = torch.randn(batch, obs_dim, generator=generator)
    actions = torch.randint(0, num_actions, (batch,), generator=generator)
    with torch.no_grad():
        policy = agent.policy(obs)
        log_probs, values = policy.log_prob(actions), agent.value(obs)
    advantages = torch.randn(batch, generator=generator) * 1.5 + 0.3
    rollout = Rollout(obs=obs, actions=actions, log_probs=log_probs, logits=policy.logits, values=values,
                      advantages=advantages, returns=advantages + values, episode_returns=[])
    return agent, rollout


def _update_case(generator, description, *, batch=64, minibatches=4, epochs=3, norm_adv=True, target_kl=None,
                 max_grad_norm=0.2, lr=1e-2, optimizer="adam", entropy_coef=0.01, value_coef=0.5, clip_epsilon=0.2,
                 obs_dim=3, num_actions=3):
    from ..algos.ppo import PPOConfig

    agent, rollout = _agent_and_rollout(generator, batch, obs_dim, num_actions)
    config = PPOConfig(num_envs=batch, num_steps=1, total_timesteps=batch, num_minibatches=minibatches,
                       num_epochs=epochs, norm_adv=norm_adv, target_kl=target_kl, max_grad_norm=max_grad_norm,
                       entropy_coef=entropy_coef, value_coef=value_coef, clip_epsilon=clip_epsilon, anneal_lr=False)
    make_optimizer = (functools.partial(torch.optim.Adam, lr=lr, eps=1e-5) if optimizer == "adam"
                      else functools.partial(torch.optim.SGD, lr=lr))
    return Case(description, {"agent": agent, "rollout": rollout, "config": config, "optimizer": make_optimizer})


def _full_batch_cases(generator, hidden):
    cases = [_update_case(generator, "64 transitions, 1 minibatch, 4 epochs, Adam", minibatches=1, epochs=4)]
    if hidden:
        cases += [
            _update_case(generator, "1 minibatch, 6 epochs, SGD, 2 actions, other coefficients", batch=40,
                         minibatches=1, epochs=6, optimizer="sgd", lr=0.3, num_actions=2, entropy_coef=0.05,
                         value_coef=1.0, clip_epsilon=0.1),
            _update_case(generator, "1 minibatch, 1 epoch", batch=24, minibatches=1, epochs=1),
            _update_case(generator, "1 minibatch, 3 epochs, norm_adv off, a looser gradient clip", minibatches=1,
                         epochs=3, norm_adv=False, max_grad_norm=0.5),
        ]
    return cases


def _minibatch_cases(generator, hidden):
    cases = [_update_case(generator, "64 transitions, 4 minibatches, 3 epochs")]
    if hidden:
        cases += [
            _update_case(generator, "96 transitions, 8 minibatches, 2 epochs", batch=96, minibatches=8, epochs=2),
            _update_case(generator, "60 transitions, 3 minibatches, 4 epochs, SGD", batch=60, minibatches=3,
                         epochs=4, optimizer="sgd", lr=0.1),
            _update_case(generator, "2 minibatches, 5 epochs, norm_adv off", batch=32, minibatches=2, epochs=5,
                         norm_adv=False),
        ]
    return cases


def _grad_clip_cases(generator, hidden):
    cases = [_update_case(generator, "4 minibatches, 2 epochs, max_grad_norm = 0.1", epochs=2, max_grad_norm=0.1)]
    if hidden:
        cases += [
            _update_case(generator, "max_grad_norm = 0.3 (some steps are not clipped)", minibatches=2, epochs=3,
                         max_grad_norm=0.3),
            _update_case(generator, "SGD, 8 minibatches, max_grad_norm = 0.05", batch=96, minibatches=8, epochs=1,
                         optimizer="sgd", lr=0.1, max_grad_norm=0.05),
        ]
    return cases


def _target_kl_cases(generator, hidden):
    cases = [_update_case(generator, "4 minibatches x 4 epochs, target_kl = 0.004, a high learning rate",
                          epochs=4, target_kl=0.004, lr=0.02)]
    if hidden:
        cases += [
            _update_case(generator, "8 minibatches x 3 epochs, target_kl = 0.008", batch=96, minibatches=8, epochs=3,
                         target_kl=0.008, lr=0.03),
            _update_case(generator, "2 minibatches x 6 epochs, target_kl = 0.004", batch=48, minibatches=2, epochs=6,
                         target_kl=0.004, lr=0.02),
            _update_case(generator, "a target_kl the update never reaches", minibatches=2, epochs=2, target_kl=5.0),
        ]
    return cases


def _solve_cases(generator, hidden):
    from ..algos.ppo import PPOConfig, evaluate, train_ppo
    from ..models.actor_critic import ActorCritic

    seeds = (1, 2, 3) if not hidden else tuple(int(s) for s in torch.randperm(900, generator=generator)[:3] + 100)
    return [Case(f"fast_cartpole, 3 {'other ' if hidden else ''}seeds, stopped once an evaluation reaches 475",
                 {"configs": [PPOConfig.fast_cartpole(seed=seed) for seed in seeds], "train": train_ppo,
                  "evaluate": evaluate, "make_agent": ActorCritic, "episodes": 20, "eval_seed": 1000,
                  "target": 475.0, "enough": 2, "time_budget": SOLVE_TIME_BUDGET})]


def _loss_cases(generator, hidden):
    def case(description, batch, **changes):
        agent, rollout = _agent_and_rollout(generator, batch, changes.pop("obs_dim", 3),
                                            changes.pop("num_actions", 3))
        with torch.no_grad():  # an agent that has moved since the rollout: ratios away from 1, some clipped
            for p in agent.actor.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * 0.3)
        kwargs = {"agent": agent, "obs": rollout.obs, "actions": rollout.actions, "old_log_probs": rollout.log_probs,
                  "advantages": rollout.advantages,
                  "returns": rollout.returns + torch.randn(batch, generator=generator),
                  "clip_epsilon": 0.2, "value_coef": 0.5, "entropy_coef": 0.01}
        return Case(description, {**kwargs, **changes})

    cases = [case("B = 16, 3 actions, the default coefficients", 16)]
    if hidden:
        cases += [
            case("B = 1", 1),
            case("B = 200, 5 actions, clip_epsilon = 0.1, value_coef = 1.0, entropy_coef = 0.1", 200, num_actions=5,
                 clip_epsilon=0.1, value_coef=1.0, entropy_coef=0.1),
            case("2 actions, entropy_coef = 0 and value_coef = 0", 30, num_actions=2, entropy_coef=0.0,
                 value_coef=0.0),
        ]
    return cases


def _recording(make_cases, *fields):
    """``make_cases`` whose update cases ask the kernel to record only ``fields`` of each step (a
    judge needs some of them; the rest would only lengthen the record)."""

    def cases(generator, hidden):
        made = make_cases(generator, hidden)
        for case in made:
            case.kwargs["record"] = fields
        return made

    return cases


# --- the replay: the reference loss (or a named variant of it) at a recorded step -------------------

_REFERENCE_VARIANT = {"norm": "config", "value_target": "returns", "entropy_sign": -1.0, "adv_index": "rows",
                      "ratio_one": False}


def _variant_loss(agent, rollout, rows, config, position, variant) -> dict:
    """ppo_loss on the rollout rows ``rows`` (``position``: the step's place in its pass), with the
    switches of ``variant`` (``_REFERENCE_VARIANT``: the contract)."""
    rows = rows.long()
    obs, actions = rollout.obs[rows], rollout.actions[rows]
    if variant["adv_index"] == "rows":
        advantages = rollout.advantages[rows]
    else:  # in rollout order: the minibatch's position, not its (shuffled) rows
        size = len(rows)
        advantages = rollout.advantages[position * size:position * size + size]
        if len(advantages) != size:
            return None
    norm = ("minibatch" if config.norm_adv else "none") if variant["norm"] == "config" else variant["norm"]
    if norm == "minibatch":
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    elif norm == "rollout":
        everything = rollout.advantages
        advantages = (advantages - everything.mean()) / (everything.std() + 1e-8)
    policy = agent.policy(obs)
    new_log_probs = policy.log_prob(actions)
    old_log_probs = new_log_probs.detach() if variant["ratio_one"] else rollout.log_probs[rows]
    log_ratio = new_log_probs - old_log_probs
    ratio = log_ratio.exp()
    eps = config.clip_epsilon
    policy_loss = -torch.min(ratio * advantages, ratio.clamp(1 - eps, 1 + eps) * advantages).mean()
    targets = {"returns": rollout.returns[rows], "advantages": rollout.advantages[rows],
               "normalised advantages": advantages}[variant["value_target"]]
    value_loss = (agent.value(obs) - targets).pow(2).mean()
    entropy = policy.entropy().mean()
    loss = policy_loss + config.value_coef * value_loss + variant["entropy_sign"] * config.entropy_coef * entropy
    with torch.no_grad():  # the contract's approx_kl, always against the rollout's log-probs
        true_log_ratio = new_log_probs - rollout.log_probs[rows]
        approx_kl = (torch.expm1(true_log_ratio) - true_log_ratio).mean().item()
    return {"loss": loss, "approx_kl": approx_kl}


def _replay(case: Case, trace: dict, variant: dict | None = None, *, need_grad: bool = True) -> list[dict] | None:
    """Per recorded step: the variant's loss gradient (flat) and approx_kl at the recorded parameters
    on the recorded rows. None when the trace cannot be replayed (rows outside the rollout...)."""
    variant = _REFERENCE_VARIANT if variant is None else variant
    agent, rollout, config = case.kwargs["agent"], case.kwargs["rollout"], case.kwargs["config"]
    agent = _copy(agent)
    params = list(agent.parameters())
    out = []
    for k, step in enumerate(trace["steps"]):
        rows = step["rows"]
        if len(rows) == 0 or (rows < 0).any() or (rows >= len(rollout.advantages)).any():
            return None
        with torch.no_grad():
            vector_to_parameters(step["params"].float(), params)
        result = _variant_loss(agent, rollout, rows, config, k % config.num_minibatches, variant)
        if result is None:
            return None
        grad = None
        if need_grad:
            grads = torch.autograd.grad(result["loss"], params, allow_unused=True)
            grad = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])
        out.append({"grad": grad, "approx_kl": result["approx_kl"]})
    return out


def _copy(agent):
    import copy

    return copy.deepcopy(agent)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-3, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol))


def _malformed(trace) -> str | None:
    if not isinstance(trace, dict) or not {"result", "steps", "final"} <= set(trace):
        return "the update could not be recorded"
    if not trace["steps"]:
        return "no optimizer step was taken with the optimizer passed in (call optimizer.step())"
    return None


# --- descriptions: what an update did, in words, independent of its permutation --------------------


def _minibatch_description(trace, case) -> dict:
    config, size = case.kwargs["config"], len(case.kwargs["rollout"].advantages)
    steps, per_pass = trace["steps"], config.num_minibatches
    rows = [step["rows"].tolist() for step in steps]
    if any(r < 0 for step in rows for r in step):
        return {"minibatches": "observations that are not the rollout's reach the policy"}
    if all(len(step) == 0 for step in rows):
        return {"minibatches": "the policy sees no observation with gradients on (agent.policy(minibatch obs))"}
    if len(rows) != config.num_epochs * per_pass:
        return {"minibatches": "not num_epochs x num_minibatches minibatches in all",
                "_detail": f"{len(rows)} minibatches (optimizer steps) in all; {config.num_epochs} passes x "
                           f"{per_pass} minibatches = {config.num_epochs * per_pass} expected"}
    if all(sorted(step) == list(range(size)) for step in rows) and per_pass > 1:
        return {"minibatches": "every minibatch is the whole rollout"}
    passes = [rows[i:i + per_pass] for i in range(0, len(rows), per_pass)]
    for number, one_pass in enumerate(passes, 1):
        flat = [r for step in one_pass for r in step]
        if sorted(flat) != list(range(size)):
            return {"minibatches": "a pass does not use every transition exactly once",
                    "_detail": f"pass {number} used {len(set(flat))} of the {size} transitions, "
                               f"{len(flat) - len(set(flat))} of them in more than one minibatch"}
    offsets = np.cumsum([0] + [len(step) for step in passes[0]])
    contiguous = [list(range(start, end)) for start, end in zip(offsets[:-1], offsets[1:])]
    if per_pass > 1 and [sorted(step) for step in passes[0]] == contiguous:
        return {"minibatches": "each pass splits the rollout in its stored order (no shuffling)"}
    partitions = [sorted(tuple(sorted(step)) for step in one_pass) for one_pass in passes]
    if per_pass > 1 and len(passes) > 1 and all(p == partitions[0] for p in partitions[1:]):
        return {"minibatches": "every pass has the same minibatches (one permutation for all epochs)"}
    return {"minibatches": "each pass is a fresh shuffle of the rollout, split into num_minibatches minibatches"}


def _steps_description(trace, case) -> dict:
    config = case.kwargs["config"]
    result = trace["result"]
    reported = result.get("num_steps") if isinstance(result, dict) else None
    taken, expected = len(trace["steps"]), config.num_epochs * config.num_minibatches
    return {"optimizer_steps": "one per minibatch" if taken == expected else "not one per minibatch",
            "num_steps": ("the optimizer steps taken" if reported == taken and not isinstance(reported, bool)
                          else "not the optimizer steps taken"),
            "_detail": f"{taken} optimizer steps taken ({config.num_epochs} epochs x {config.num_minibatches} "
                       f"minibatches = {expected} expected), num_steps = {reported!r}"}


LOSS_VARIANTS = (  # tried in this order; the first that reproduces every step's gradient describes the update
    ("the loss of ppo_loss on the minibatch, advantages normalised as config.norm_adv says", {}),
    ("advantages normalised over the whole rollout instead of each minibatch", {"norm": "rollout"}),
    ("advantages not normalised", {"norm": "none"}),
    ("advantages normalised per minibatch although config.norm_adv is False", {"norm": "minibatch"}),
    ("the value loss regressed on the advantages instead of the returns", {"value_target": "advantages"}),
    ("the value loss regressed on the normalised advantages instead of the returns",
     {"value_target": "normalised advantages"}),
    ("the entropy bonus with the wrong sign (added to the loss: it rewards a deterministic policy)",
     {"entropy_sign": 1.0}),
    ("advantages taken in rollout order while the observations are shuffled (each sample gets another "
     "transition's advantage)", {"adv_index": "position"}),
    ("old log-probs recomputed from the current policy (the ratio is always 1: no clipping, approx_kl 0)",
     {"ratio_one": True}),
)


def _loss_description(trace, case, variants=None) -> dict:
    config = case.kwargs["config"]
    for name, switches in LOSS_VARIANTS if variants is None else variants:
        if switches.get("norm") == "minibatch" and config.norm_adv:
            continue  # that is the reference itself here
        if switches.get("norm") in ("none",) and not config.norm_adv:
            continue
        replayed = _replay(case, trace, {**_REFERENCE_VARIANT, **switches})
        if replayed is not None and all(_close(step["backward"], want["grad"])
                                        for step, want in zip(trace["steps"], replayed)):
            return {"loss": name}
    return {"loss": UNKNOWN}


# The silent-bugs exercise's three bugs, as switches of the replay; any subset of them may be left in.
SILENT_BUG_SWITCHES = {
    "the value loss regressed on the advantages": {"value_target": "advantages"},
    "advantages taken in rollout order while the observations are shuffled": {"adv_index": "position"},
    "old log-probs recomputed from the current policy (ratio always 1)": {"ratio_one": True},
}


def _silent_bug_variants() -> tuple:
    """(description, switches) for every subset of the silent bugs, the empty one (the fix) first."""
    import itertools

    variants = [(LOSS_VARIANTS[0][0], {})]
    names = list(SILENT_BUG_SWITCHES)
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            switches = {key: value for name in subset for key, value in SILENT_BUG_SWITCHES[name].items()}
            label = ("still the buggy update: all three bugs are left" if size == len(names) else
                     f"{'one bug is' if size == 1 else 'two bugs are'} left: {'; '.join(subset)}")
            variants.append((label, switches))
    return tuple(variants)


def _fixed_description(trace, case) -> dict:
    return _loss_description(trace, case, _silent_bug_variants())


def _clip(gradient: torch.Tensor, max_norm) -> torch.Tensor:
    if max_norm is None:
        return gradient
    norm = gradient.double().norm()
    return gradient * min(1.0, max_norm / (norm.item() + 1e-6))


def _per_tensor_clip(gradient: torch.Tensor, case: Case, max_norm: float) -> torch.Tensor:
    pieces, start = [], 0
    for p in case.kwargs["agent"].parameters():
        piece = gradient[start:start + p.numel()]
        pieces.append(_clip(piece, max_norm))
        start += p.numel()
    return torch.cat(pieces)


def _step_description(trace, case) -> dict:
    """How the gradient at each step relates to the gradients back-propagated since the previous one."""
    max_norm = case.kwargs["config"].max_grad_norm
    steps = trace["steps"]
    rules = {
        "the gradient of this minibatch's loss alone, clipped to max_grad_norm before the step":
            lambda k: _clip(steps[k]["backward"], max_norm),
        "the gradient is clipped after the step (or not at all): the step uses the unclipped gradient":
            lambda k: steps[k]["backward"],
        "gradients are never zeroed: each step uses the sum of every minibatch's gradient so far (clipped)":
            lambda k: _clip(steps[k]["backward"] + (steps[k - 1]["grad"] if k else 0), max_norm),
        "gradients are never zeroed and not clipped before the step":
            lambda k: steps[k]["backward"] + (steps[k - 1]["grad"] if k else 0),
        "each parameter tensor is clipped on its own: clip the global norm of all of them together":
            lambda k: _per_tensor_clip(steps[k]["backward"], case, max_norm),
    }
    for name, rule in rules.items():
        if all(_close(step["grad"], rule(k), rtol=1e-4, atol=1e-6) for k, step in enumerate(steps)):
            return {"step_gradient": name}
    return {"step_gradient": UNKNOWN}


def _target_kl_description(trace, case) -> dict:
    config = case.kwargs["config"]
    replayed = _replay(case, trace, need_grad=False)
    if replayed is None:
        return {"target_kl": "the steps cannot be replayed (see test_ppo_update_minibatches)"}
    kls, target = [step["approx_kl"] for step in replayed], config.target_kl
    taken, per_pass, total = len(kls), config.num_minibatches, config.num_epochs * config.num_minibatches
    over = [k for k, kl in enumerate(kls) if kl > target]
    first = over[0] if over else None
    if (first is None and taken == total) or (first is not None and taken == first + 1):
        return {"target_kl": "stops right after the first step whose approx_kl exceeds target_kl (or runs every "
                             "step when none does)"}
    detail = (f"{taken} of {total} steps taken; " + (f"step {first + 1}'s approx_kl ({kls[first]:.4g}) was the "
              f"first above target_kl = {target:g}" if first is not None else "no step's approx_kl exceeded "
              f"target_kl = {target:g}"))
    if first is None:
        return {"target_kl": "stops early although no step's approx_kl exceeded target_kl (take the step, "
                             "then check)", "_detail": detail}
    if taken == total:
        return {"target_kl": "ignores target_kl", "_detail": detail}
    if taken == min(total, (first // per_pass + 1) * per_pass):
        return {"target_kl": "finishes the pass before stopping", "_detail": detail}
    if _inner_break_only(kls, target, config.num_epochs, per_pass) == taken:
        return {"target_kl": "stops only the current pass: the next epoch starts anyway", "_detail": detail}
    return {"target_kl": "stops at another step than right after the first one whose approx_kl exceeds "
                         "target_kl", "_detail": detail}


def _inner_break_only(kls, target, epochs, per_pass) -> int | None:
    """Steps taken by an update whose break leaves only the minibatch loop, given its kls."""
    k = 0
    for _ in range(epochs):
        for _ in range(per_pass):
            if k >= len(kls):
                return None
            k += 1
            if kls[k - 1] > target:
                break
    return k


def _describing(describe, *, then=None):
    """A judge: the answer passes when ``describe(trace, case)`` (a dict of labels; keys starting
    with ``_`` hold details for the message) matches the reference's. ``then(got, want, case)``:
    a further judge, applied once the descriptions match the reference's (``REFERENCE_LABELS``)."""

    def judge(got, want, case):
        problem = _malformed(got)
        if problem:
            return problem
        mine, theirs = describe(got, case), describe(want, case)
        for key, value in theirs.items():
            if key.startswith("_"):
                continue
            if mine.get(key) != value or value == UNKNOWN:
                detail = f" ({mine['_detail']})" if mine.get("_detail") else ""
                return _say(key, mine.get(key), value) + detail
        if then is not None and all(value in REFERENCE_LABELS for key, value in theirs.items()
                                    if not key.startswith("_")):
            return then(got, want, case)
        return None

    return judge


def _say(key, got, want) -> str:
    if got == UNKNOWN and key == "loss":
        return ("a minibatch's loss gradient is not that of ppo_loss on the minibatch's transitions (advantages "
                "normalised as config.norm_adv says), nor that of a catalogued mistake")
    if got == UNKNOWN:
        return f"the gradient at a step is not {want}, nor that of a catalogued mistake"
    return f"{key}: expected {want}; this update: {got}"


REFERENCE_LABELS = {  # what each description says of the reference
    LOSS_VARIANTS[0][0], "each pass is a fresh shuffle of the rollout, split into num_minibatches minibatches",
    "one per minibatch", "the optimizer steps taken",
    "the gradient of this minibatch's loss alone, clipped to max_grad_norm before the step",
    "stops right after the first step whose approx_kl exceeds target_kl (or runs every step when none does)",
}


def _judge_full_batch(got, want, case):
    problem = _malformed(got)
    if problem:
        return problem
    problem = compare(got["final"], want["final"], case, rtol=1e-4, atol=2e-5, where="the parameters after the update")
    if problem:
        return problem + " (one minibatch per pass: every correct update lands on the same parameters)"
    return compare(got["result"], want["result"], case, rtol=1e-4, atol=1e-6, where="the returned dict")


def _judge_solves(got, want, case):
    if not isinstance(got, dict) or not isinstance(got.get("evaluations"), list):
        return "the training runs did not report their evaluations"
    target, configs = case.kwargs["target"], case.kwargs["configs"]
    scores = got["evaluations"]
    if len(scores) != len(configs) or not all(s is None or isinstance(s, (int, float)) for s in scores):
        return "the training runs did not report one evaluation each"
    solved = sum(1 for s in scores if s is not None and s >= target)
    if solved >= case.kwargs["enough"]:
        return None
    listed = ", ".join("not run" if s is None else f"{s:.1f}" for s in scores)
    problem = (f"{solved} of {len(scores)} runs reached an evaluation of {target:g} within fast_cartpole's "
               f"{configs[0].num_updates} updates (last evaluations: {listed}); {case.kwargs['enough']} are needed.")
    if got.get("out_of_time"):
        return problem + (f" The runs also used up the {case.kwargs['time_budget']:g} s the check allows: is your "
                          "update much slower than it needs to be (a Python loop over transitions, say)?")
    return problem + " Run the probes to see which part does not learn."


# --- the mistake catalogue: one update with switches, each switch one classic mistake ---------------


def _wrong_update(*, zero_grad=True, clip="before", minibatch="shuffled", norm="minibatch", target_kl="stop",
                  value_target="returns", entropy_sign=-1.0, steps="per_minibatch", num_steps="steps",
                  adv_index="rows", ratio_one=False):
    """A ppo_update with classic mistakes switched on (every switch at its default is correct).
    Written out, not calling the reference (which is what it is compared with)."""

    def update(agent, optimizer, rollout, config):
        size = len(rollout.advantages)
        parameters = list(agent.parameters())
        stats = {key: [] for key in build_ppo.STAT_KEYS}
        taken, permutation = 0, torch.randperm(size)
        for _epoch in range(config.num_epochs):
            if minibatch == "shuffled":
                permutation = torch.randperm(size)
            elif minibatch == "ordered":
                permutation = torch.arange(size)
            if minibatch == "with_replacement":
                batches = torch.randint(0, size, (size,)).tensor_split(config.num_minibatches)
            elif minibatch == "whole":
                batches = [torch.randperm(size)] * config.num_minibatches
            else:
                batches = permutation.tensor_split(config.num_minibatches)
            stop = False
            if steps == "per_epoch" and zero_grad:
                optimizer.zero_grad()
            for position, batch in enumerate(batches):
                if adv_index == "rows":
                    advantages = rollout.advantages[batch]
                else:
                    advantages = rollout.advantages[position * len(batch):(position + 1) * len(batch)]
                if norm == "minibatch" and config.norm_adv or norm == "always":
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                elif norm == "rollout" and config.norm_adv:
                    everything = rollout.advantages
                    advantages = (advantages - everything.mean()) / (everything.std() + 1e-8)
                policy = agent.policy(rollout.obs[batch])
                new_log_probs = policy.log_prob(rollout.actions[batch])
                old_log_probs = new_log_probs.detach() if ratio_one else rollout.log_probs[batch]
                ratio = (new_log_probs - old_log_probs).exp()
                eps = config.clip_epsilon
                policy_loss = -torch.min(ratio * advantages, ratio.clamp(1 - eps, 1 + eps) * advantages).mean()
                target = {"returns": rollout.returns[batch], "advantages": rollout.advantages[batch]}[value_target]
                value_loss = (agent.value(rollout.obs[batch]) - target).pow(2).mean()
                entropy = policy.entropy().mean()
                loss = policy_loss + config.value_coef * value_loss + entropy_sign * config.entropy_coef * entropy
                with torch.no_grad():
                    log_ratio = new_log_probs - rollout.log_probs[batch]
                    approx_kl = (torch.expm1(log_ratio) - log_ratio).mean().item()
                if target_kl == "before" and config.target_kl is not None and approx_kl > config.target_kl:
                    stop = True
                    break
                if steps == "per_minibatch" and zero_grad:
                    optimizer.zero_grad()
                loss.backward()
                if steps == "per_minibatch":
                    if clip == "before" and config.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
                    elif clip == "per_tensor":
                        for p in parameters:
                            torch.nn.utils.clip_grad_norm_([p], config.max_grad_norm)
                    optimizer.step()
                    taken += 1
                    if clip == "after":
                        torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
                for key, value in (("policy_loss", policy_loss.item()), ("value_loss", value_loss.item()),
                                   ("entropy", entropy.item()), ("approx_kl", approx_kl),
                                   ("clip_fraction", ((ratio.detach() - 1).abs() > eps).float().mean().item())):
                    stats[key].append(value)
                if config.target_kl is not None and approx_kl > config.target_kl and target_kl in ("stop", "inner",
                                                                                                    "epoch"):
                    stop = True
                    if target_kl in ("stop", "inner"):
                        break
            if steps == "per_epoch":
                torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
                optimizer.step()
                taken += 1
            if stop and target_kl in ("stop", "epoch", "before"):
                break
        means = {key: float(np.mean(values)) for key, values in stats.items()}
        return {**means, "num_steps": taken if num_steps == "steps" else config.num_epochs}

    return update


UPDATE_MISTAKES = {  # name -> (message, switches)
    "no_zero_grad": ("looks like the gradients are never zeroed: .grad accumulates across backward calls, so "
                     "every step also pushes along all earlier minibatches' gradients (optimizer.zero_grad() "
                     "before loss.backward())", {"zero_grad": False}),
    "clip_after_step": ("looks like the step uses the unclipped gradient: clipping after optimizer.step() (or "
                        "not at all) changes nothing the step used; clip between backward and step",
                        {"clip": "after"}),
    "per_tensor_clip": ("looks like each parameter tensor is clipped on its own: clip the global norm of all "
                        "the agent's parameters in one call", {"clip": "per_tensor"}),
    "whole_rollout_minibatches": ("looks like the whole rollout is used as every minibatch: index the "
                                  "rollout with each minibatch's indices", {"minibatch": "whole"}),
    "no_shuffle": ("looks like the minibatches are taken in the rollout's order: draw torch.randperm each pass",
                   {"minibatch": "ordered"}),
    "one_permutation": ("looks like one permutation is drawn for all epochs: draw a fresh one every pass",
                        {"minibatch": "once"}),
    "with_replacement": ("looks like minibatch indices are sampled with replacement: some transitions are used "
                         "twice in a pass and others never; split a permutation instead",
                         {"minibatch": "with_replacement"}),
    "norm_over_rollout": ("looks like the advantages are normalised over the whole rollout: normalise each "
                          "minibatch's advantages with that minibatch's mean and std", {"norm": "rollout"}),
    "no_norm": ("looks like the advantages are not normalised although config.norm_adv is True",
                {"norm": "none"}),
    "norm_ignores_flag": ("looks like the advantages are normalised although config.norm_adv is False",
                          {"norm": "always"}),
    "value_on_advantages": ("looks like the value loss regresses V(s) on the advantages: its targets are the "
                            "returns (advantages + values)", {"value_target": "advantages"}),
    "entropy_wrong_sign": ("looks like the entropy bonus has the wrong sign: L = L_clip + c1 * L_VF - c2 * H "
                           "(subtracting the entropy rewards exploration)", {"entropy_sign": 1.0}),
    "target_kl_ignored": ("looks like target_kl is ignored: stop the update right after the step whose "
                          "approx_kl exceeds it", {"target_kl": "ignore"}),
    "target_kl_inner_break": ("looks like the target_kl break leaves only the minibatch loop: the next epoch "
                              "starts anyway; stop the whole update", {"target_kl": "inner"}),
    "target_kl_end_of_pass": ("looks like the update finishes its pass before stopping for target_kl: stop "
                              "right after the step whose approx_kl exceeded it", {"target_kl": "epoch"}),
    "target_kl_before_step": ("looks like the update stops BEFORE the step whose approx_kl exceeded "
                              "target_kl: the contract takes that step, then stops", {"target_kl": "before"}),
    "one_step_per_epoch": ("looks like one optimizer step per epoch (gradients summed over its minibatches): "
                           "take one step per minibatch", {"steps": "per_epoch"}),
    "num_steps_counts_epochs": ("looks like num_steps counts epochs: report the optimizer steps taken",
                                {"num_steps": "epochs"}),
    "advantages_misaligned": ("looks like the advantages are taken in rollout order while the observations "
                              "are shuffled: index every field with the same minibatch indices",
                              {"adv_index": "position"}),
    "ratio_always_one": ("looks like the old log-probs are recomputed from the current policy: the ratio is "
                         "then always 1, nothing is ever clipped and approx_kl stays 0; use rollout.log_probs",
                         {"ratio_one": True}),
}


def _mistakes(*names) -> tuple[Mistake, ...]:
    return tuple(Mistake(name, UPDATE_MISTAKES[name][0], _wrong_update(**UPDATE_MISTAKES[name][1])) for name in names)


# The silent-bugs exercise: its buggy update has these three; each left in is a mistake of its own.
SILENT_BUGS = ("value_on_advantages", "advantages_misaligned", "ratio_always_one")
ALL_SILENT_BUGS = Mistake(
    "all_three_silent_bugs", "this is still the buggy update: none of its three bugs is fixed",
    _wrong_update(**{key: value for name in SILENT_BUGS for key, value in UPDATE_MISTAKES[name][1].items()}))


def _fixed_mistakes() -> tuple[Mistake, ...]:
    left = []
    for name in SILENT_BUGS:
        message, switches = UPDATE_MISTAKES[name]
        left.append(Mistake(f"{name}_left", f"one silent bug is still there: {message.removeprefix('looks like ')}",
                            _wrong_update(**switches)))
    return (ALL_SILENT_BUGS, *left)


_trace = runners.update_trace
_update = build_ppo.ppo_update
_LOSS_FIELDS = ("rows", "params", "backward")  # what a loss replay needs of each step
register(Check("test_ppo_update_full_batch", _recording(_full_batch_cases), reference=_update, run=_trace,
               judge=_judge_full_batch,
               mistakes=_mistakes("no_zero_grad", "clip_after_step", "per_tensor_clip", "value_on_advantages",
                                  "entropy_wrong_sign", "no_norm", "ratio_always_one")))
register(Check("test_ppo_update_minibatches", _recording(_minibatch_cases, "rows"), reference=_update, run=_trace,
               judge=_describing(_minibatch_description),
               mistakes=_mistakes("whole_rollout_minibatches", "no_shuffle", "one_permutation", "with_replacement",
                                  "one_step_per_epoch")))
register(Check("test_ppo_update_steps", _recording(_minibatch_cases), reference=_update, run=_trace,
               judge=_describing(_steps_description),
               mistakes=_mistakes("one_step_per_epoch", "num_steps_counts_epochs")))
register(Check("test_ppo_update_norm_adv", _recording(_minibatch_cases, *_LOSS_FIELDS), reference=_update,
               run=_trace, judge=_describing(_loss_description),
               mistakes=_mistakes("norm_over_rollout", "no_norm", "norm_ignores_flag", "value_on_advantages",
                                  "entropy_wrong_sign", "advantages_misaligned", "ratio_always_one")))
register(Check("test_ppo_update_grad_clip", _recording(_grad_clip_cases, "grad", "backward"), reference=_update,
               run=_trace, judge=_describing(_step_description),
               mistakes=_mistakes("no_zero_grad", "clip_after_step", "per_tensor_clip")))
register(Check("test_ppo_update_target_kl", _recording(_target_kl_cases, "rows", "params"), reference=_update,
               run=_trace, judge=_describing(_target_kl_description),
               mistakes=_mistakes("target_kl_ignored", "target_kl_inner_break", "target_kl_end_of_pass",
                                  "target_kl_before_step")))
register(Check("test_ppo_update_solves_cartpole", _solve_cases, reference=None, run=runners.training_runs,
               judge=_judge_solves))
# The silent-bugs exercise: described by which of its bugs are left, then (full batch) the parameters.
_fixed = build_ppo.fixed_ppo_update
register(Check("test_fixed_ppo_update", _recording(_full_batch_cases, *_LOSS_FIELDS), reference=_fixed, run=_trace,
               judge=_describing(_fixed_description, then=_judge_full_batch), mistakes=_fixed_mistakes()))
register(Check("test_fixed_ppo_update_minibatches", _recording(_minibatch_cases, *_LOSS_FIELDS), reference=_fixed,
               run=_trace, judge=_describing(_fixed_description), mistakes=_fixed_mistakes()))


# --- ppo_loss -------------------------------------------------------------------------------------


def _wrong_loss(*, value_target="returns", entropy_sign=-1.0, normalise=False, value_scale=1.0, clip=True,
                value_coef_used=True):
    """A ppo_loss with one classic mistake switched on (every switch at its default is correct)."""

    def loss_fn(agent, obs, actions, old_log_probs, advantages, returns, clip_epsilon=0.2, value_coef=0.5,
                entropy_coef=0.01):
        if normalise and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy = agent.policy(obs)
        new_log_probs = policy.log_prob(actions)
        log_ratio = new_log_probs - old_log_probs
        ratio = log_ratio.exp()
        unclipped = ratio * advantages
        policy_loss = -(torch.min(unclipped, ratio.clamp(1 - clip_epsilon, 1 + clip_epsilon) * advantages)
                        if clip else unclipped).mean()
        target = returns if value_target == "returns" else advantages
        value_loss = value_scale * (agent.value(obs) - target).pow(2).mean()
        entropy = policy.entropy().mean()
        loss = policy_loss + (value_coef if value_coef_used else 1.0) * value_loss \
            + entropy_sign * entropy_coef * entropy
        with torch.no_grad():
            approx_kl = (torch.expm1(log_ratio) - log_ratio).mean().item()
            clip_fraction = ((ratio - 1).abs() > clip_epsilon).float().mean().item()
        return {"loss": loss, "policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
                "entropy": entropy.item(), "approx_kl": approx_kl, "clip_fraction": clip_fraction}

    return loss_fn


register(Check(
    grade_id="test_ppo_loss",
    make_cases=_loss_cases,
    reference=build_ppo.ppo_loss,
    run=runners.value_and_parameter_grads,
    mistakes=(
        Mistake("value_on_advantages", "looks like the value loss regresses V(s) on the advantages: its targets "
                                       "are the returns", _wrong_loss(value_target="advantages")),
        Mistake("entropy_wrong_sign", "looks like the entropy bonus has the wrong sign: L = L_clip + c1 * L_VF - "
                                      "c2 * H", _wrong_loss(entropy_sign=1.0)),
        Mistake("normalises_inside", "looks like ppo_loss normalises the advantages: it uses them as given "
                                     "(ppo_update normalises per minibatch)", _wrong_loss(normalise=True)),
        Mistake("half_mse", "looks like the value loss is 0.5 * mean squared error: the contract's is the mean "
                            "squared error itself", _wrong_loss(value_scale=0.5)),
        Mistake("value_coef_unused", "looks like value_coef is not applied to the value loss",
                _wrong_loss(value_coef_used=False)),
        Mistake("no_clip", "looks like the policy term is not clipped: use PPO-Clip's min(r A, clip(r) A)",
                _wrong_loss(clip=False)),
    ),
))
