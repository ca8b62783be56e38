"""Small helpers the concept modules use to build cases (grader side)."""
from __future__ import annotations

import torch



def normal(generator: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale


def log_probs(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """Valid log-probabilities in (-3, -0.05)."""
    return -0.05 - 2.95 * torch.rand(*shape, generator=generator)
