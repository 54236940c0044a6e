#!/usr/bin/env python
"""The tuned MC-dropout UCI protocol (PROTOCOL.md, 2018 version) in one command: one `dropbench
tune` per data set (each has its own tau grid; the grids are read from the experiment's own
`protocol.datasets` table in conf/experiment/uci_mc_dropout_2018.yaml, never written twice), then
the literature's table over all of them, in markdown, with each data set's wall time.

Usage:  python scripts/uci_2018.py [--datasets yacht,energy] [--splits 20] [--epochs 4000] [--out results/uci2018]

Every data set's tuning is resumable: run the same command again and only what is missing trains.
Extra arguments after `--` go to every `dropbench tune` (e.g. `-- eval.mc_samples=1000`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "uci_mc_dropout_2018"


def grids() -> dict[str, dict[str, list[float]]]:
    """Each data set's dropout_rates and tau_values, from the experiment's YAML."""
    doc = yaml.safe_load((ROOT / "conf" / "experiment" / f"{EXPERIMENT}.yaml").read_text())
    return doc["protocol"]["datasets"]


def tune_command(ds: str, grid: dict[str, list[float]], splits: int, epochs: int | None, out: Path,
                 extra: list[str]) -> list[str]:
    cmd = ["dropbench", "tune", "-m", f"+experiment={EXPERIMENT}", f"data.dataset={ds}", f"data.split=range({splits})",
           "--over", "p=" + ",".join(f"{v:g}" for v in grid["dropout_rates"]),
           "--over", "eval.tau=" + ",".join(f"{v:g}" for v in grid["tau_values"]),
           "--metric", "test_ll", f"out={out / ds}", "-q"]
    if epochs is not None:
        cmd += [f"epochs={epochs}", f"eval_every={epochs}"]
    return cmd + extra


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    table = grids()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(table), help="comma-separated (default: all eight)")
    ap.add_argument("--splits", type=int, default=20, help="splits 0..N-1 (default 20, the protocol's)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the experiment's 4,000")
    ap.add_argument("--out", type=Path, default=Path("results/uci2018"))
    ap.add_argument("--print-only", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    names = [d for d in args.datasets.split(",") if d]
    unknown = [d for d in names if d not in table]
    if unknown:
        print(f"uci_2018: unknown data set(s) {', '.join(unknown)}; choose from {', '.join(table)}", file=sys.stderr)
        return 2
    if not 1 <= args.splits <= 20:
        print(f"uci_2018: --splits {args.splits} must be in 1..20", file=sys.stderr)
        return 2
    walls: dict[str, float] = {}
    for ds in names:
        cmd = tune_command(ds, table[ds], args.splits, args.epochs, args.out, extra)
        print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
        if args.print_only:
            continue
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        walls[ds] = time.perf_counter() - t0
        print(f"{ds}: {walls[ds]:.0f} s", file=sys.stderr, flush=True)
        if rc != 0:
            return rc
    if args.print_only:
        return 0
    finals = [str(args.out / ds / "final") for ds in names]
    for metric in ("test_mc_rmse", "test_ll"):
        subprocess.call(["dropbench", "report", *finals, "--by", "data.dataset,reg", "--layout", "wide", "--interval", "se",
                         "--metric", metric, "--format", "markdown"])
    total = sum(walls.values())
    print("\nwall time: " + ", ".join(f"{d} {s:.0f} s" for d, s in walls.items()) + f"; total {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
