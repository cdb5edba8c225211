"""The per-step cost of a quadratic penalty's gradient (SPP's Eq. 5, EWC's, MAS's), isolated.

    python benchmarks/penalty_step.py --width 256 --batch-size 256 --rounds 7

One process, one thread, the CPU clock: a clutils MLP 784-w-w-10 takes training steps (forward,
backward, Adam) on random inputs, interleaving rounds of ``--steps`` plain steps with rounds of
steps that also add each strategy's penalty gradient (``after_backward``, two fused multi-tensor
operations over the penalised parameters) with an importance set on every parameter. The median
time per step of each, divided by the plain step's, is the penalty's per-step overhead without the
rest of the training loop (``benchmarks/speed.py`` measures the whole loop; on a shared machine its
step ratios move by several percent between runs).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def measure(width: int, batch_size: int, steps: int, rounds: int, strategies: list[str]) -> dict[str, float]:
    """Median seconds per step: ``"naive"`` and each strategy of ``strategies``."""
    from clutils.data.benchmarks import Benchmark, Task
    from clutils.models import build_model
    from clutils.strategies import make

    bench = Benchmark("shape-only", "domain", [Task(0, None, None, tuple(range(10)), "t")], 10, (1, 28, 28), "none")
    model = build_model(bench, hidden=(width, width), seed=0)
    penalties = {}
    for name in strategies:
        strategy = make(name)
        strategy.setup(model, bench)
        strategy.consolidate(model, {n: torch.rand_like(p) for n, p in model.named_parameters()})
        penalties[name] = strategy
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 1, 28, 28, generator=generator)
    y = torch.randint(10, (batch_size,), generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(strategy) -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if strategy is not None:
            strategy.after_backward(model)
        optimizer.step()

    for _ in range(20):
        step(None)
    times: dict[str, list[float]] = {"naive": [], **{n: [] for n in strategies}}
    for _ in range(rounds):
        for name in times:
            start = time.process_time()
            for _ in range(steps):
                step(penalties.get(name))
            times[name].append((time.process_time() - start) / steps)
    return {name: statistics.median(v) for name, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50, help="steps per round (default 50)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--strategies", default="spp,ewc,mas")
    args = parser.parse_args(argv)
    if min(args.width, args.batch_size, args.steps, args.rounds) < 1:
        parser.error("every size must be a positive integer")
    torch.set_num_threads(1)
    result = measure(args.width, args.batch_size, args.steps, args.rounds, args.strategies.split(","))
    base = result["naive"]
    for name, seconds in result.items():
        print(f"{name:6s} {seconds * 1e3:7.3f} ms/step  {seconds / base:.3f} x naive")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
