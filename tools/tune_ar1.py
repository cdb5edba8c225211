"""Tune the AR1 chapter's quick recipe on a validation split (never the test set).

Runs the quick profile's strategies over a grid of the shared SGD recipe (learning rate,
shared-layer scale, epochs per batch) on held-out training images (the benchmark's
``validation`` option: the same training subset, the test set replaced by other training
images) and prints each strategy's mean final accuracy over the class orders::

    python tools/tune_ar1.py --dataset mnist --strategies cwr cwr+ ar1 --lr 0.01 0.02 0.05 \\
        --shared 0.02 0.1 --epochs 2 --runs 5 --json tuning.json

The chosen values and what was tried are recorded in ``clutils.presets.ar1.QUICK_TUNING``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--strategies", nargs="+", default=["cwr", "cwr+", "ar1"])
    parser.add_argument("--lr", nargs="+", type=float, default=[0.02])
    parser.add_argument("--shared", nargs="+", type=float, default=[0.02])
    parser.add_argument("--epochs", nargs="+", type=int, default=[2])
    parser.add_argument("--runs", type=int, default=5, help="class orders per setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write every setting's per-order accuracies here")
    args = parser.parse_args(argv)

    from clutils import presets
    from clutils.experiments import ar1 as ex

    torch.set_num_threads(1)
    setup = presets.get("ar1-accuracy", "quick")["setups"][0]
    setup["benchmark"]["validation"] = True
    unknown = set(args.strategies) - set(setup["strategies"])
    if unknown:
        parser.error(f"unknown strategies {sorted(unknown)}; the preset has {sorted(setup['strategies'])}")
    specs = {label: setup["strategies"][label] for label in args.strategies}
    rows = []
    for lr, shared, epochs in itertools.product(args.lr, args.shared, args.epochs):
        for spec in specs.values():
            spec["train"] = {**spec.get("train", {}), "lr": lr, "shared_lr_scale": shared, "epochs": epochs}
        try:
            results = ex.run_strategies(specs, setup, dataset=args.dataset, seed=args.seed, runs=args.runs,
                                        device="cpu", record_confusion=False, log=None)
        except ValueError as error:  # e.g. AR1's lambda beyond its stability bound at this rate
            print(f"lr {lr:g} shared x{shared:g} epochs {epochs}: refused: {error}", flush=True)
            rows.append({"lr": lr, "shared_lr_scale": shared, "epochs": epochs, "refused": str(error)})
            continue
        finals = {label: [float(ex.fixed_test_accuracy(r)[-1]) for r in runs] for label, runs in results.items()}
        rows.append({"lr": lr, "shared_lr_scale": shared, "epochs": epochs, "validation": finals})
        summary = ", ".join(f"{label} {100 * np.mean(v):.1f}" for label, v in finals.items())
        print(f"lr {lr:g} shared x{shared:g} epochs {epochs}: {summary}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": args.dataset, "runs": args.runs, "seed": args.seed, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
