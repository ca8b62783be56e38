"""Regenerate chapter 6's ablation table: ppo_lab/data/ablation_table.json.

    python scripts/ablation_table.py                 # every setting x seeds 1-10 (minutes), then the table
    python scripts/ablation_table.py --print         # only print the cached table
    python scripts/ablation_table.py --check baseline:1 "target_kl:3"   # re-run some runs, compare

Each run is deterministic (one torch thread, seeded env and agent): on this machine kind, the same
command writes the same file. tests/test_build_ppo.py re-runs a few runs and matches them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppo_lab.experiments import ablations  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--settings", nargs="+", default=None, help=f"default: all of {list(ablations.SETTINGS)}")
    parser.add_argument("--out", type=Path, default=ablations.TABLE_PATH)
    parser.add_argument("--print", action="store_true", help="print the cached table and exit")
    parser.add_argument("--check", nargs="+", metavar="SETTING:SEED", help="re-run these runs, compare to the cache")
    args = parser.parse_args(argv)

    if args.print:
        print(ablations.format_table(ablations.load_table(args.out)))
        return 0
    if args.check:
        cached = {(r["setting"], r["seed"]): r for r in ablations.load_table(args.out)["runs"]}
        failed = 0
        for item in args.check:
            setting, seed = item.rsplit(":", 1)
            fresh, old = ablations.run(setting, int(seed)), cached[setting, int(seed)]
            same = all(fresh[k] == old[k] for k in ("final_return", "steps_to_solve", "diagnostics"))
            failed += not same
            print(f"{setting}:{seed} {'matches' if same else 'DIFFERS'}: final {fresh['final_return']} "
                  f"(cached {old['final_return']}), steps to solve {fresh['steps_to_solve']} "
                  f"(cached {old['steps_to_solve']})")
        return 1 if failed else 0

    start = time.perf_counter()
    table = ablations.run_all(args.seeds, args.settings)
    args.out.write_text(json.dumps(table, indent=0, sort_keys=True) + "\n")
    print(ablations.format_table(table))
    print(f"\n{len(table['runs'])} runs in {time.perf_counter() - start:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
