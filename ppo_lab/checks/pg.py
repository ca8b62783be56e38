"""Checks for chapter 1: ``pg_loss`` and ``reward_to_go``."""
import warnings
from functools import partial

import torch

from ..exercises import pg
from . import runners
from .inputs import log_probs, normal
from .protocol import Case
from .registry import Check, Mistake, register


def _loss_with_normalised_advantages(log_probs, advantages):
    with warnings.catch_warnings():  # std of a single advantage is NaN; the warning would only be noise
        warnings.simplefilter("ignore", UserWarning)
        normalised = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return -(log_probs * normalised).mean()


def _cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    sizes = [1, 7, 256] if hidden else [5]
    cases = [Case(f"B = {b}", {"log_probs": log_probs(generator, b), "advantages": normal(generator, b)})
             for b in sizes]
    # A rollout kept time-major [T, N] (T steps of N envs): the mean runs over every element.
    rollout = (16, 8) if hidden else (4, 3)
    cases.append(Case("[T, N] rollout", {"log_probs": log_probs(generator, *rollout),
                                         "advantages": normal(generator, *rollout)}))
    if hidden:
        cases.append(Case("all advantages positive", {"log_probs": log_probs(generator, 9),
                                                      "advantages": normal(generator, 9).abs() + 0.1}))
        cases.append(Case("all advantages negative", {"log_probs": log_probs(generator, 9),
                                                      "advantages": -normal(generator, 9).abs() - 0.1}))
    return cases


register(Check(
    grade_id="test_pg_loss",
    make_cases=_cases,
    reference=pg.pg_loss,
    run=partial(runners.value_and_grads, wrt=("log_probs",)),
    mistakes=(
        Mistake("missing_minus", "looks like the minus sign is missing: the loss must be MINIMISED",
                lambda log_probs, advantages: (log_probs * advantages).mean()),
        Mistake("sum_not_mean", "looks like a sum instead of a mean over the batch",
                lambda log_probs, advantages: -(log_probs * advantages).sum()),
        Mistake("probabilities_not_log", "looks like probabilities were used instead of log-probabilities",
                lambda log_probs, advantages: -(log_probs.exp() * advantages).mean()),
        Mistake("normalised_advantages",
                "looks like the advantages were normalised inside the loss: pg_loss uses them as given",
                _loss_with_normalised_advantages),
        Mistake("mean_over_time_only", "looks like a mean over the first dimension only: average every element",
                lambda log_probs, advantages: -(log_probs * advantages).mean(0).sum()),
    ),
))


# --- reward_to_go -------------------------------------------------------------------------------


def _episodes(generator: torch.Generator, shape: tuple[int, ...], *, end_rate: float = 0.0, gamma=None,
              ones: bool = False, last_end=None) -> dict:
    """kwargs for one reward_to_go call; gamma defaults to a random value in [0.8, 1)."""
    dones = (torch.rand(*shape, generator=generator) < end_rate).float()
    if last_end is not None:
        dones[-1] = float(last_end)
    if gamma is None:
        gamma = round(0.8 + 0.2 * torch.rand((), generator=generator).item(), 3)
    return {"rewards": torch.ones(*shape) if ones else normal(generator, *shape), "dones": dones, "gamma": gamma}


def _rtg_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    if not hidden:
        one_episode_end = _episodes(generator, (6,), gamma=0.9)
        one_episode_end["dones"] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
        batched = _episodes(generator, (5, 3), gamma=0.9)
        batched["dones"] = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0],
                                         [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
        return [Case("[T] rollout, T = 6, gamma = 0.9, the first episode ends with step 2", one_episode_end),
                Case("[T, N] rollout (T = 5, N = 3), gamma = 0.9, episodes ending inside", batched)]
    return [
        Case("T = 1", _episodes(generator, (1,))),
        Case("[T] rollout with several episode ends", _episodes(generator, (40,), end_rate=0.15, last_end=0)),
        Case("[T] rollout, episodes ending on consecutive steps",
             {**_episodes(generator, (8,)), "dones": torch.tensor([0.0, 1, 1, 0, 0, 1, 1, 0])}),
        Case("[T] rollout whose last step ends an episode", _episodes(generator, (10,), end_rate=0.2, last_end=1)),
        Case("[T] rollout, every step ends an episode", _episodes(generator, (5,), end_rate=1.0)),
        Case("[T, N] rollout, N = 1", _episodes(generator, (16, 1), end_rate=0.15)),
        Case("[T, N] rollout, many envs, every reward 1 (as in CartPole)",
             _episodes(generator, (32, 24), end_rate=0.08, ones=True)),
        Case("[T, N] rollout, gamma = 0: each reward-to-go is the reward itself",
             _episodes(generator, (7, 4), end_rate=0.2, gamma=0.0)),
        Case("[T, N] rollout, gamma = 1: undiscounted sums to the end of each episode",
             _episodes(generator, (12, 5), end_rate=0.2, gamma=1.0)),
    ]


def _wrong_rtg(*, cut="right", discount="right"):
    """A reward-to-go with one classic mistake switched on (the defaults are right).

    cut: "right" (after step t when dones[t] = 1), "never", "late" (after step t + 1), "early" (after step t - 1).
    discount: "right" (gamma^(k - t)), "none" (plain sums), "from_start" (gamma^k, counted from the rollout's start).
    """

    def wrong(rewards, dones, gamma=0.99):
        dones = dones.to(rewards.dtype)
        if cut == "late":  # the flag of step t - 1 cuts after step t
            dones = torch.cat((torch.zeros_like(dones[:1]), dones[:-1]))
        elif cut == "early":  # the flag of step t + 1 cuts after step t (another convention's dones)
            dones = torch.cat((dones[1:], torch.zeros_like(dones[:1])))
        elif cut == "never":
            dones = torch.zeros_like(dones)
        g = 1.0 if discount == "none" else gamma
        returns, following = torch.zeros_like(rewards), torch.zeros_like(rewards[0])
        for t in reversed(range(len(rewards))):
            following = rewards[t] + g * (1.0 - dones[t]) * following
            returns[t] = following
        if discount == "from_start":
            steps = torch.arange(len(rewards), dtype=rewards.dtype).reshape(-1, *([1] * (rewards.dim() - 1)))
            returns = returns * gamma ** steps
        return returns

    return wrong


def _whole_episode_return(rewards, dones, gamma=0.99):
    """Every step weighted by its episode's return from the episode's first step (the REINFORCE of the textbook)."""
    dones = dones.to(rewards.dtype)
    to_go = _wrong_rtg()(rewards, dones, gamma)
    returns = to_go.clone()
    for t in range(1, len(rewards)):
        returns[t] = torch.where(dones[t - 1] == 1, to_go[t], returns[t - 1])
    return returns


register(Check(
    grade_id="test_reward_to_go",
    make_cases=_rtg_cases,
    reference=pg.reward_to_go,
    run=runners.call,
    mistakes=(
        Mistake("ignores_dones",
                "looks like the sum runs on past the end of an episode: when dones[t] = 1 nothing after step t "
                "belongs to G_t (multiply the carried sum by 1 - dones[t])", _wrong_rtg(cut="never")),
        Mistake("reset_one_step_late",
                "looks like the sum is cut one step late: dones[t] = 1 means the episode ended WITH step t, so "
                "there G_t = r_t and step t + 1 starts a new sum (use dones[t] at step t, not dones[t - 1])",
                _wrong_rtg(cut="late")),
        Mistake("reset_one_step_early",
                "looks like the sum is cut one step early (dones[t + 1] used at step t, as in code whose dones "
                "mark the first step of the NEXT episode): here dones[t] = 1 ends the episode with step t",
                _wrong_rtg(cut="early")),
        Mistake("no_discount", "looks like the discount is missing: G_t = r_t + gamma * G_{t+1}, not r_t + G_{t+1}",
                _wrong_rtg(discount="none")),
        Mistake("discount_from_rollout_start",
                "looks like the rewards are discounted from the start of the rollout (gamma^k): from step t the "
                "reward k steps later counts gamma^(k - t)", _wrong_rtg(discount="from_start")),
        Mistake("whole_episode_return",
                "looks like every step gets its whole episode's return: the reward-to-go of step t sums only "
                "the rewards from step t on", _whole_episode_return),
    ),
))
