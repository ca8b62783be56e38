"""Chapter 9: reward-model over-optimisation, measured the way Gao, Schulman and Hilton (2022) did.

Optimising a proxy (the reward model) raises the gold score (here: the hidden "human" rule)
only up to a point. Both are plotted against the distance from the starting policy,
d = sqrt(KL(pi || pi_ref)) in nats^(1/2), for two ways of optimising:

* **best-of-n**: sample n responses from the SFT policy, keep the one the reward model scores
  highest. Its KL to the SFT policy is (at most) ``best_of_n_kl(n) = log n - (n - 1) / n``, so
  d is known without any model of the new policy. ``best_of_n`` estimates the proxy and gold
  scores of best-of-n for every n <= N from one set of N samples per prompt, without bias.
* **RL**: the checkpoints along a run (one per update, each measured on that update's fresh
  rollout: ``rl_points``).

and fitted with the paper's forms (rewards relative to the starting policy, so R(0) = 0):

    best-of-n:  R_bon(d) = d (alpha - beta d)      peak at d* = alpha / (2 beta)
    RL:         R_RL(d)  = d (alpha - beta ln d)   peak at d* = exp(alpha / beta - 1)

Both are linear in (alpha, beta), so the least-squares fit is one ``lstsq`` (``fit``). A positive
beta bends the curve over; the gold score's fit peaks where the proxy's is still rising.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import validate
from ..algos.rlhf import MAX_NEW_TOKENS, PROMPT_SEED_EVAL, RewardModel, human_scores
from ..models.tiny_lm import TinyLM, Vocab, generate, sample_prompts

FORMS = ("bon", "rl")


def best_of_n_kl(n) -> float:
    """KL(best-of-n || base policy) as Gao et al. use it: ``log n - (n - 1) / n`` nats (an upper
    bound on the exact KL; exact when the base policy's responses are all distinct)."""
    validate.positive_int("n", n)
    return math.log(n) - (n - 1) / n


def best_of_n_weights(n_samples: int, n: int) -> torch.Tensor:
    """``[N]`` probability that the k-th smallest of N scores (k = 1..N) is the largest of a random
    n-subset: ``C(k - 1, n - 1) / C(N, n)``. Weighting sorted samples by these gives the exact
    average of best-of-n over all n-subsets of the N samples: an unbiased estimate with far
    less noise than drawing subsets."""
    validate.positive_int("n_samples", n_samples)
    validate.positive_int("n", n)
    if n > n_samples:
        raise ValueError(f"n = {n} is more than the {n_samples} samples per prompt")
    k = torch.arange(1, n_samples + 1, dtype=torch.float64)
    log_comb = lambda a, b: torch.lgamma(a + 1) - torch.lgamma(b + 1) - torch.lgamma(a - b + 1)  # noqa: E731
    weights = torch.zeros(n_samples, dtype=torch.float64)
    possible = k >= n
    weights[possible] = torch.exp(log_comb(k[possible] - 1, torch.tensor(n - 1.0))
                                  - log_comb(torch.tensor(float(n_samples)), torch.tensor(float(n))))
    return weights


@torch.no_grad()
def best_of_n(policy: TinyLM, reward_model: RewardModel, vocab: Vocab, n_prompts: int = 32, n_samples: int = 32,
              ns: tuple[int, ...] | None = None, seed: int = PROMPT_SEED_EVAL) -> list[dict]:
    """Best-of-n sampling from ``policy`` for each n in ``ns`` (default 1, 2, 4, ..., ``n_samples``).

    Draws ``n_samples`` responses for each of ``n_prompts`` prompts once, scores them with the
    reward model (proxy) and the hidden rule (gold), and returns one row per n: ``n``, ``kl``
    (``best_of_n_kl``), ``d`` (its square root), ``proxy`` and ``gold`` (mean over prompts of the
    expected scores of the response best-of-n picks).
    """
    validate.positive_int("n_prompts", n_prompts)
    validate.positive_int("n_samples", n_samples)
    ns = tuple(2 ** i for i in range(int(math.log2(n_samples)) + 1)) if ns is None else tuple(ns)
    prompts = sample_prompts(n_prompts, vocab, seed=seed).repeat_interleave(n_samples, dim=0)
    samples = generate(policy, prompts, MAX_NEW_TOKENS, vocab, generator=torch.Generator().manual_seed(seed))
    proxy = reward_model.score(samples).double().view(n_prompts, n_samples)
    gold = human_scores(samples.sequences, vocab).double().view(n_prompts, n_samples)
    order = proxy.argsort(dim=1)  # ascending proxy score: rank k is column k - 1
    proxy_sorted, gold_sorted = proxy.gather(1, order), gold.gather(1, order)
    rows = []
    for n in ns:
        w = best_of_n_weights(n_samples, n)
        kl = best_of_n_kl(n)
        rows.append(dict(n=n, kl=kl, d=math.sqrt(kl), proxy=(proxy_sorted @ w).mean().item(),
                         gold=(gold_sorted @ w).mean().item()))
    return rows


def rl_points(history: list[dict], baseline: dict | None = None) -> dict[str, list[float]]:
    """The checkpoints of an RL run as over-optimisation points: ``d`` = sqrt(KL) of each
    update's rollout (a slightly negative sampled KL counts as 0), and the reward-model (``proxy``)
    and hidden-rule (``gold``) scores minus the starting policy's (``baseline``'s ``rm_score``
    and ``human_score``; by default the first rollout's, which the unchanged SFT policy wrote)."""
    if not history:
        raise ValueError("history is empty: no checkpoints to read")
    start = history[0] if baseline is None else baseline
    return dict(d=[math.sqrt(max(row["kl"], 0.0)) for row in history],
                proxy=[row["rm_score"] - start["rm_score"] for row in history],
                gold=[row["human_score"] - start["human_score"] for row in history])


@dataclass(frozen=True)
class Fit:
    """A fitted over-optimisation curve: ``form`` "bon" (d (alpha - beta d)) or "rl" (d (alpha - beta ln d))."""

    form: str
    alpha: float
    beta: float

    def __call__(self, d):
        d = torch.as_tensor(d, dtype=torch.float64)
        return d * (self.alpha - self.beta * _shape(self.form, d))

    @property
    def peak(self) -> float:
        """d where the fitted curve is highest (inf when it never turns over: beta <= 0)."""
        if self.beta <= 0:
            return math.inf
        if self.form == "bon":
            return self.alpha / (2 * self.beta)
        return math.exp(self.alpha / self.beta - 1)

    @property
    def peak_value(self) -> float:
        return math.inf if self.beta <= 0 else float(self(self.peak))


def _shape(form: str, d: torch.Tensor) -> torch.Tensor:
    if form == "bon":
        return d
    return torch.where(d > 0, torch.log(d.clamp_min(1e-300)), torch.zeros_like(d))  # d ln d -> 0 as d -> 0


def fit(form: str, d, r) -> Fit:
    """Least-squares ``alpha, beta`` of ``r ≈ d (alpha - beta * shape(d))`` (shape d or ln d).

    ``d``, ``r``: equally long sequences (rewards relative to the starting policy). Linear in
    (alpha, beta): the columns of the design matrix are d and -d * shape(d).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    d = torch.as_tensor(d, dtype=torch.float64).flatten()
    r = torch.as_tensor(r, dtype=torch.float64).flatten()
    if d.shape != r.shape:
        raise ValueError(f"d and r must be equally long, got {len(d)} and {len(r)}")
    if len(d) < 2:
        raise ValueError(f"need at least 2 points to fit alpha and beta, got {len(d)}")
    if not (torch.isfinite(d).all() and torch.isfinite(r).all()) or (d < 0).any():
        raise ValueError("d must be finite and >= 0, r finite")
    design = torch.stack([d, -d * _shape(form, d)], dim=1)
    alpha, beta = torch.linalg.lstsq(design, r[:, None]).solution.flatten().tolist()
    return Fit(form, alpha, beta)
