"""Run the probe environments (``ppo_lab.envs.probes``) with an update: one pass/fail line each.

``run_probes(update_fn)`` trains a fresh small agent on every probe with ``train_ppo(...,
update_fn=update_fn)`` and compares what it learned with the probe's right answers: the critic's
V(obs) within ``VALUE_TOLERANCE`` of the true values, and the probability of the best action at
least ``ACTION_PROBABILITY``. A working PPO passes all five, in well under a second each; a bug in one
part fails the probes of that part and passes the others, which says where to look.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..algos.ppo import PPOConfig, train_ppo
from ..envs.probes import PROBES, ProbeEnv

VALUE_TOLERANCE = 0.1
ACTION_PROBABILITY = 0.9


def probe_config(**changes) -> PPOConfig:
    """The probes' training setting: 64 envs x 4 steps per rollout, 10 updates of 4 epochs x 2
    minibatches, small networks, a high learning rate and no annealing (the answers are simple and
    must be learned fast), gamma 0.5 (so that the discounting probe's V(0) = 0.5 is far from 1),
    no entropy bonus. The reference update passes every probe on seeds 0-5 this way (6 updates
    failed one probe once)."""
    tuned = dict(num_envs=64, num_steps=4, num_minibatches=2, num_epochs=4, learning_rate=1e-2, anneal_lr=False,
                 hidden=16, gamma=0.5, gae_lambda=0.95, entropy_coef=0.0, total_timesteps=64 * 4 * 10, seed=0)
    return PPOConfig(**{**tuned, **changes})


@dataclass
class ProbeResult:
    probe: str
    passed: bool
    line: str  # the one-line verdict, e.g. "PASS ConstantRewardProbe: V(0) = 0.998 (want 1.000)"
    history: list  # train_ppo's history rows (the diagnostics of the run)

    def __str__(self) -> str:
        return self.line


def judge_probe(env: ProbeEnv, agent, gamma: float) -> tuple[bool, str]:
    """Compare the agent's values and policy with the probe's right answers; ``(passed, details)``."""
    checks = []
    with torch.no_grad():
        for obs, want in env.true_values(gamma).items():
            got = agent.value(torch.tensor([[obs]])).item()
            checks.append((abs(got - want) <= VALUE_TOLERANCE, f"V({obs:g}) = {got:.3f} (want {want:.3f})"))
        for obs, action in env.best_actions.items():
            p = agent.policy(torch.tensor([[obs]])).probs[0, action].item()
            checks.append((p >= ACTION_PROBABILITY, f"pi({action} | {obs:g}) = {p:.3f} (want >= {ACTION_PROBABILITY})"))
    return all(ok for ok, _ in checks), ", ".join(text for _, text in checks)


def run_probe(name: str, update_fn=None, *, config: PPOConfig | None = None, agent=None) -> ProbeResult:
    """Train on one probe (a name of ``PROBES``) with ``update_fn`` (default: ppo_lab's ppo_update)
    and judge the result. ``agent``: an ``ActorCritic(1, num_actions)`` to train (default: a new
    one, ``config.hidden`` wide, seeded by config.seed)."""
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; the probes are {', '.join(PROBES)}")
    config = probe_config() if config is None else config
    env = PROBES[name](config.num_envs, seed=config.seed)
    agent, history = train_ppo(config, env, progress=False, agent=agent, update_fn=update_fn)
    passed, details = judge_probe(env, agent, config.gamma)
    return ProbeResult(name, passed, f"{'PASS' if passed else 'FAIL'} {name} ({env.isolates}): {details}", history)


def run_probes(update_fn=None, *, config: PPOConfig | None = None, verbose: bool = True) -> list[ProbeResult]:
    """Every probe with ``update_fn``; prints one line each when ``verbose``."""
    results = []
    for name in PROBES:
        results.append(run_probe(name, update_fn, config=config))
        if verbose:
            print(results[-1].line)
    return results
