"""Run chapter 9's sweep and cache it as ppo_lab/data/beyond_ppo_sweep.pt.

    python scripts/beyond_ppo_sweep.py                  # rebuild the cached file (~3-5 min on 1 core)
    python scripts/beyond_ppo_sweep.py --out /tmp/x.pt  # somewhere else, e.g. to compare

What runs is ``ppo_lab.experiments.beyond_ppo.run_sweep``: chapter 8's preference pairs and
reward model (seed 0) from the shipped SFT model, then PPO, GRPO, Dr. GRPO, RLOO and DPO with
seeds 0-2, and PPO and GRPO without the KL penalty (the over-optimisation checkpoints). One torch
thread and seeded generators: the same machine writes the same numbers every time (only the wall
and CPU times differ). ``tests/test_beyond_ppo.py`` re-runs a subset and checks it against the file.
"""
from __future__ import annotations

import argparse
import sys

import torch

from ppo_lab.experiments import beyond_ppo


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(beyond_ppo.SWEEP_PATH), help="where to write the sweep")
    parser.add_argument("--methods", nargs="+", default=list(beyond_ppo.METHODS), choices=list(beyond_ppo.METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(beyond_ppo.SEEDS))
    args = parser.parse_args(argv)
    sweep = beyond_ppo.run_sweep(tuple(args.methods), tuple(args.seeds), progress=True)
    torch.save(sweep, args.out)
    for row in beyond_ppo.summary(sweep, [m for m in ("ppo", "grpo", "dr_grpo", "rloo", "dpo") if m in args.methods]):
        print(f"{row['label']:16s} human {row['human_score']:.3f} ± {row['human_score_std']:.3f}  "
              f"KL {row['kl']:.2f} ± {row['kl_std']:.2f}  wall {row['wall_time']:.1f} s")
    return sweep


if __name__ == "__main__":
    main(sys.argv[1:])
