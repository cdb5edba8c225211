"""Training speed of ``clutils`` against a bare PyTorch loop (and Avalanche 0.6).

The same model (the clutils MLP 784-w-w-10, one shared head), the same data
(permuted Fashion-MNIST, or random tensors of its size when the dataset is not
on this machine) and the same optimiser (Adam, lr 1e-3, a fresh one per task)
are trained

* by a bare PyTorch loop: index batching of tensors already on the device;
* by ``clutils.train.fit`` with each requested strategy;
* by Avalanche 0.6 (``pip install -e '.[bench]'``) with its naive, EWC, SI,
  MAS (and LwF) strategies, fed the same tensors through
  ``create_generic_benchmark_from_tensor_lists``.

Only training is timed: clutils' time is ``fit`` less its ``evaluate`` calls
(``after_task``, e.g. EWC's Fisher, included); Avalanche runs with
``eval_every=-1``, no metrics and no loggers. ``--clock cpu`` times with the
process's CPU time instead of the wall clock (steadier on a shared machine).

Each configuration runs in its own subprocess (its own allocator and resident
high-water mark, reset after the data are loaded and a few warm-up steps), and
the configurations of a width are interleaved between two bare-loop runs whose
mean is the reference of every ratio (their spread shows how noisy the machine
was). See ``benchmarks/README.md``.

    python benchmarks/speed.py                       # the full comparison
    python benchmarks/speed.py --threads 1 --clock cpu --repeats 2   # on a busy machine
    python benchmarks/speed.py --widths 256 --samples 5000 --no-avalanche
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmark this checkout's clutils

# The strategies the issue sets targets for, in display order; the default
# ``--strategies`` is those of them that are registered.
DEFAULT_STRATEGIES = ("naive", "ewc", "si", "mas", "alasso", "cwr", "cwr+", "ar1", "hat")

# Targets on the 2-core CPU, for clutils rows only.
#   "bare": training time / bare-loop training time (including after_task);
#   "step": time inside the step loop / that of clutils naive (per-step overhead);
#   "after_task": after_task time per task / one epoch (EWC's Fisher).
TARGETS: dict[str, dict[str, float]] = {
    "naive": {"bare": 1.05},
    "si": {"bare": 1.25},
    "mas": {"bare": 1.25},
    "ewc": {"bare": 1.5, "after_task": 3.0},
    "alasso": {"step": 1.3},
    "cwr": {"step": 1.3},
    "cwr+": {"step": 1.3},
    "ar1": {"step": 1.3},
    "hat": {"step": 1.3},  # the HAT chapter: per-step overhead within 1.3x of naive on the MLP
}

# SPP (the SPP chapter; ``--strategies naive,ewc,spp``): its penalty is EWC's quadratic (per-step
# overhead within 1.1x of naive's) and its importance one backward pass per batch of 100 over the
# task (within one epoch).
TARGETS["spp"] = {"step": 1.1, "after_task": 1.0}

# clutils name -> Avalanche strategy class and the arguments it needs (the
# strengths do not change the cost of a step).
AVALANCHE = {
    "naive": ("Naive", {}),
    "ewc": ("EWC", {"ewc_lambda": 1.0}),  # mode="separate", Avalanche's default
    "si": ("SynapticIntelligence", {"si_lambda": 0.1}),
    "mas": ("MAS", {"lambda_reg": 1.0}),
    "lwf": ("LwF", {"alpha": 1.0, "temperature": 2.0}),
}

# --- the replay chapter: ER, DER, A-GEM and GEM (run them with --strategies er,der,a-gem,gem)
# beside Avalanche 0.6's Replay, DER, AGEM and GEM with the same memory (200 samples; A-GEM's
# reference batch as large as the training batch). ER and DER process twice the samples of a
# step, so their per-step target is 2.2x naive's; A-GEM's extra forward/backward, 2.5x.
# Each of them (GEM too) must also be at least 1.5x faster than its Avalanche counterpart: the
# "avalanche" target is Avalanche's training time / clutils' training time (at least, not at most).
TARGETS.update({"er": {"step": 2.2, "avalanche": 1.5}, "der": {"step": 2.2, "avalanche": 1.5},
                "a-gem": {"step": 2.5, "avalanche": 1.5}, "gem": {"avalanche": 1.5}})
#: Target kinds met from above (the others are upper bounds).
AT_LEAST = frozenset({"avalanche"})
AVALANCHE.update({
    "er": ("Replay", {"mem_size": 200}),
    "der": ("DER", {"mem_size": 200, "alpha": 0.2, "beta": 0.0}),
    "a-gem": ("AGEM", {"patterns_per_exp": 200 // 3, "sample_size": 256}),
    "gem": ("GEM", {"patterns_per_exp": 200 // 3, "memory_strength": 0.5}),
})

# Avalanche against a bare loop as the issue measured it earlier on this
# machine (3 permuted tasks, 1 epoch each); printed beside today's figures.
ISSUE_AVALANCHE = {
    256: {"naive": 1.56, "ewc": 2.86, "si": 1.74},
    1000: {"naive": 1.22, "ewc": 2.38, "si": 1.55},
}

# "O(number of parameters)": at most this many numbers of strategy state per parameter.
STATE_BOUND = 8.0
RESULT_TAG = "@@speed-result@@"
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter  # the worker's clock, set from --clock
LR = 1e-3
SEED = 0
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 60_000, 10_000


# ------------------------------------------------------------------------------ arguments


def _positive_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def registered_strategies() -> list[str]:
    from clutils.strategies import strategy_names

    return strategy_names()


def default_strategies() -> list[str]:
    """The strategies the issue sets targets for that are registered, in display order."""
    registered = set(registered_strategies())
    return [name for name in DEFAULT_STRATEGIES if name in registered]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speed.py",
        description="Time clutils.train (and Avalanche 0.6) against a bare PyTorch loop: "
                    "samples/s, ratio to the bare loop, peak memory, strategy state size.",
    )
    parser.add_argument("--widths", type=_positive_list, default=[256, 1000],
                        help="hidden widths w of the 784-w-w-10 MLP, comma-separated (default 256,1000)")
    parser.add_argument("--tasks", type=_positive, default=3, help="permuted tasks (default 3)")
    parser.add_argument("--epochs", type=_positive, default=1, help="epochs per task (default 1)")
    parser.add_argument("--batch-size", type=_positive, default=256, help="batch size (default 256)")
    parser.add_argument("--samples", type=_positive, default=None,
                        help="train on a seeded subset of N samples per task (default: all 60,000)")
    parser.add_argument("--strategies", default=None,
                        help="comma-separated registered clutils strategies (default: those registered "
                             f"among {','.join(DEFAULT_STRATEGIES)})")
    parser.add_argument("--avalanche", action=argparse.BooleanOptionalAction, default=True,
                        help="also time Avalanche 0.6 on the same configurations (default: on; "
                             "skipped with a note when it is not installed)")
    parser.add_argument("--data", choices=("auto", "fashion-mnist", "synthetic"), default="auto",
                        help="auto: Fashion-MNIST when it is on this machine (never downloaded), "
                             "else random tensors of its size")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--repeats", type=_positive, default=1,
                        help="rounds over all configurations; medians are reported (default 1)")
    parser.add_argument("--warmup-steps", type=_non_negative, default=10,
                        help="bare training steps each subprocess takes before timing (default 10)")
    parser.add_argument("--threads", type=_positive, default=None,
                        help="torch.set_num_threads in every run (default: torch's own choice)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall: elapsed time; cpu: the process's CPU time (all its threads), far "
                             "steadier on a shared machine, meaningful with --threads 1 (default wall)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write every measurement as JSON")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    # Stacked runs (clutils.stacked): K seeds in one pass against one seed's fit (see stacked_main).
    parser.add_argument("--stacked", action="store_true",
                        help="time K seeds trained as one stacked run (clutils.stacked) against one seed")
    parser.add_argument("--copies", type=_positive_list, default=[1, 2, 5, 10],
                        help="--stacked: numbers of stacked copies K (default 1,2,5,10)")
    parser.add_argument("--width-sweep", type=lambda t: [] if t.strip() in ("", "none") else _positive_list(t),
                        default=[64, 512, 1000, 2000],
                        help="--stacked: further widths at which naive with 5 copies is timed (where stacking "
                             "stops paying); none: --width-sweep none")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker is not None:
        return args
    registered = registered_strategies()
    if args.strategies is None:
        args.strategies = default_strategies()
    else:
        names = [n.strip() for n in args.strategies.split(",") if n.strip()]
        if not names:
            parser.error(f"--strategies is empty; registered strategies: {', '.join(registered)}")
        unknown = [n for n in names if n not in registered]
        if unknown:
            parser.error(f"unknown strategy {', '.join(map(repr, unknown))}; "
                         f"registered strategies: {', '.join(registered)}")
        args.strategies = list(dict.fromkeys(names))
    try:
        from clutils.train import resolve_device

        args.device = str(resolve_device(args.device))
    except (RuntimeError, ValueError) as error:
        parser.error(f"--device {args.device!r}: {error}")
    args.widths = list(dict.fromkeys(args.widths))
    return args


# ------------------------------------------------------------------------------ data


def load_data(choice: str):
    """(dataset, description, fallback reason or None) for ``--data``; never downloads."""
    import torch

    from clutils.data import Dataset, TensorData, load_dataset

    reason = None
    if choice in ("auto", "fashion-mnist"):
        try:
            dataset = load_dataset("fashion-mnist", download=False)
            return dataset, f"Fashion-MNIST ({dataset.source})", None
        except Exception as error:  # absent files, unreadable cache, ...
            if choice == "fashion-mnist":
                raise
            reason = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    generator = torch.Generator().manual_seed(SEED)

    def split(n: int) -> TensorData:
        return TensorData(torch.randn(n, 1, 28, 28, generator=generator),
                          torch.randint(0, 10, (n,), generator=generator))

    dataset = Dataset("synthetic", split(SYNTHETIC_TRAIN), split(SYNTHETIC_TEST), 10,
                      tuple(str(i) for i in range(10)), source="random tensors")
    return dataset, f"synthetic random tensors of Fashion-MNIST size ({SYNTHETIC_TRAIN} x 1 x 28 x 28)", reason


def make_benchmark(spec: dict):
    """The permuted benchmark of ``spec`` (subsampled with ``samples``)."""
    import torch

    from clutils.data import Dataset, permuted

    dataset, _, _ = load_data(spec["data"])
    samples = spec.get("samples")
    if samples is not None:
        generator = torch.Generator().manual_seed(SEED)
        train = dataset.train.take(torch.randperm(len(dataset.train), generator=generator)[:samples])
        test = dataset.test.take(torch.arange(min(samples, len(dataset.test))))
        dataset = Dataset(dataset.name, train, test, dataset.n_classes, dataset.class_names, dataset.source)
    return permuted(dataset, spec["tasks"], seed=SEED)


# ------------------------------------------------------------------------------ worker side


def as_class_incremental(benchmark):
    """The same permuted tasks under the class-incremental protocol: one head over all
    classes, labels the dataset's own (every task holds all of them: Maltoni and
    Lomonaco's NI scenario). The model is the same as for the domain protocol."""
    import dataclasses

    return dataclasses.replace(benchmark, scenario="class", name=f"{benchmark.name} (class-incremental)")


def _probe_scenario(benchmark, spec: dict, device):
    """``benchmark``, or its class-incremental twin when the strategy's ``setup`` refuses
    the domain protocol (CWR, CWR+ and AR1 do); the throwaway model and strategy go."""
    from clutils.strategies import make

    if _model_arch(spec["strategy"]) != "mlp":
        return as_task_incremental(benchmark), "task"
    try:
        make(spec["strategy"]).setup(_build_model(benchmark, spec["width"], device), benchmark)
        return benchmark, "domain"
    except ValueError as refused:
        twin = as_class_incremental(benchmark)
        try:
            make(spec["strategy"]).setup(_build_model(twin, spec["width"], device), twin)
        except Exception:  # noqa: BLE001 - the domain refusal is the error to report
            raise refused from None
        return twin, "class"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak_memory(device) -> tuple[float, str]:
    """Start a fresh peak-memory window: (memory in use now in MiB, how the peak is read).

    CPU: ``/proc/self/clear_refs`` resets the resident high-water mark (VmHWM) to the
    current resident size, so loading the data (whose temporaries may peak higher
    than training) does not hide training's own peak; where that is not possible,
    the peak is ``ru_maxrss``, which cannot be reset (the delta then may read low).
    """
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20, "cuda"
    try:
        Path("/proc/self/clear_refs").write_text("5")
        now = _proc_status_mib("VmRSS")
        if now is not None and _proc_status_mib("VmHWM") is not None:
            return now, "VmHWM"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss"  # KiB on Linux


def _peak_memory(device, method: str) -> float:
    """The peak (MiB) since ``_reset_peak_memory``, read the way it said."""
    import torch

    if method == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if method == "VmHWM":
        return _proc_status_mib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build_model(benchmark, width: int, device, strategy: str | None = None):
    from clutils.models import build_model

    return build_model(benchmark, _model_arch(strategy), hidden=(width, width), seed=SEED).to(device)


# --- strategies with their own network (HAT's gated MLP, ``model_arch``): task-incremental only, so
# they run on the task-incremental twin of the permuted benchmark (one head per task), with that network.
def _model_arch(strategy: str | None) -> str:
    from clutils.strategies import REGISTRY

    return getattr(REGISTRY.get(strategy or ""), "model_arch", None) or "mlp"


def as_task_incremental(benchmark):
    """The same permuted tasks with one head per task (the task id known), for gated networks."""
    import dataclasses

    return dataclasses.replace(benchmark, scenario="task", name=f"{benchmark.name} (task-incremental)")


def _n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _state_numel(value) -> int:
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, dict):
        return sum(_state_numel(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_state_numel(v) for v in value)
    return 0


def _bare_steps(model, x, y, order, batch_size: int, optimizer) -> None:
    import torch.nn.functional as F

    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def warm_up(benchmark, width: int, spec: dict, device) -> None:
    """A few bare steps on a throwaway model: kernels, allocator and caches are warm."""
    import torch

    steps = spec["warmup_steps"]
    if not steps:
        return
    model = _build_model(benchmark, width, device)
    task = benchmark.tasks[0]
    n = min(len(task.train), steps * spec["batch_size"])
    order = torch.arange(n, device=device)
    _bare_steps(model, task.train.x, task.train.y, order, spec["batch_size"],
                torch.optim.Adam(model.parameters(), lr=LR))
    _sync(device)


def run_bare(benchmark, model, spec: dict, device) -> dict:
    """The reference: index batching of on-device tensors, Adam, no evaluation."""
    import torch

    import clutils.train

    # The same shuffles as clutils (its private helper, if it is still there).
    shuffle_seed = getattr(clutils.train, "_shuffle_seed", lambda seed, task, epoch: seed * 1_000_003 + task * 1_009 + epoch)
    _sync(device)
    started = _clock()
    for task in benchmark.tasks:
        x, y = task.train.x, task.train.y
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        for epoch in range(spec["epochs"]):
            generator = torch.Generator().manual_seed(shuffle_seed(SEED, task.index, epoch))
            order = torch.randperm(len(y), generator=generator).to(device)
            _bare_steps(model, x, y, order, spec["batch_size"], optimizer)
    _sync(device)
    train = _clock() - started
    return {"train_s": train, "step_s": train, "after_task_s": 0.0, "state_numel": 0}


def _timed_method(obj, name: str, sink: list[float], device) -> None:
    """Replace ``obj.name`` by a wrapper that appends its duration to ``sink``."""
    original = getattr(obj, name)

    def timed(*args, **kwargs):
        _sync(device)
        started = _clock()
        out = original(*args, **kwargs)
        _sync(device)
        sink.append(_clock() - started)
        return out

    setattr(obj, name, timed)


def run_clutils(benchmark, model, spec: dict, device) -> dict:
    """``clutils.train.fit`` less the time of its ``evaluate`` calls.

    ``fit`` looks ``train_task`` and ``evaluate`` up in ``clutils.train`` at each
    call, so wrapping them there times the step loop and the evaluations (with
    ``--clock``; ``Result.timings``, wall time, is kept in the JSON as a cross-check).
    """
    import clutils.train as train_module
    from clutils.strategies import make
    from clutils.train import TrainConfig, fit

    strategy = make(spec["strategy"])
    step_times: list[float] = []
    after_task_times: list[float] = []
    eval_times: list[float] = []
    _timed_method(strategy, "after_task", after_task_times, device)
    _timed_method(train_module, "train_task", step_times, device)
    _timed_method(train_module, "evaluate", eval_times, device)
    config = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch_size"], lr=LR,
                         optimizer="adam", seed=SEED, progress=False)
    _sync(device)
    started = _clock()
    result = fit(model, benchmark, strategy, config, device=device)
    _sync(device)
    total = _clock() - started
    if len(step_times) != len(benchmark) or len(eval_times) < len(benchmark):
        raise RuntimeError("clutils.train.fit no longer calls clutils.train.train_task and evaluate for "
                           "each task; update benchmarks/speed.py to time its step loop and evaluation")
    return {
        "train_s": total - sum(eval_times),
        "eval_s": sum(eval_times),
        "timings_train_seconds": sum(result.timings["train_seconds"]),
        "step_s": sum(step_times),
        "after_task_s": sum(after_task_times),
        "state_numel": _state_numel(strategy.state_dict()),
    }


def _import_avalanche():
    """The Avalanche pieces the benchmark uses (raises when Avalanche is not importable)."""
    import avalanche
    from avalanche import training
    from avalanche.core import SupervisedPlugin

    try:
        from avalanche.benchmarks.scenarios.deprecated.generators import (
            create_generic_benchmark_from_tensor_lists,
        )
    except ImportError:  # older layouts
        from avalanche.benchmarks.generators import (
            create_generic_benchmark_from_tensor_lists,
        )
    return avalanche, training, SupervisedPlugin, create_generic_benchmark_from_tensor_lists


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc), so that the
    resident size after the reset counts only what is still in use."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run_avalanche(benchmark, model, spec: dict, device) -> dict:
    """Avalanche 0.6 on the same tensors: no evaluation, no metrics, no loggers."""
    import torch

    avalanche, training, SupervisedPlugin, create_generic_benchmark_from_tensor_lists = _import_avalanche()

    class Clock(SupervisedPlugin):
        """Splits each experience into the step loop and what follows the last epoch."""

        def __init__(self):
            super().__init__()
            self.epoch_end = 0.0
            self.after_task: list[float] = []

        def after_training_epoch(self, strategy, **kwargs):
            _sync(device)
            self.epoch_end = _clock()

        def after_training_exp(self, strategy, **kwargs):
            _sync(device)
            self.after_task.append(_clock() - self.epoch_end)

    scenario = create_generic_benchmark_from_tensor_lists(
        train_tensors=[(t.train.x.cpu(), t.train.y.cpu()) for t in benchmark.tasks],
        test_tensors=[(t.test.x.cpu(), t.test.y.cpu()) for t in benchmark.tasks],
        task_labels=[0] * len(benchmark),
    )
    class_name, hyperparameters = AVALANCHE[spec["strategy"]]
    strategy = getattr(training, class_name)(
        model=model, optimizer=torch.optim.Adam(model.parameters(), lr=LR),
        criterion=torch.nn.CrossEntropyLoss(), train_mb_size=spec["batch_size"],
        train_epochs=spec["epochs"], eval_mb_size=2048, device=device, evaluator=None,
        eval_every=-1, **hyperparameters,
    )
    clock = Clock()
    strategy.plugins.append(clock)  # last, so it sees the end of EWC's and MAS's after_training_exp
    train = 0.0
    for experience in scenario.train_stream:
        _sync(device)
        started = _clock()
        strategy.train(experience, eval_streams=[])
        _sync(device)
        train += _clock() - started
    after_task = sum(clock.after_task)
    return {"train_s": train, "step_s": train - after_task, "after_task_s": after_task,
            "state_numel": None, "avalanche_version": avalanche.__version__}


def worker(spec: dict) -> dict:
    """One configuration in this (fresh) process; returns its measurements."""
    import torch

    global _clock
    _clock = CLOCKS[spec.get("clock", "wall")]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    if spec["framework"] == "avalanche":
        try:
            _import_avalanche()
        except Exception as error:  # noqa: BLE001 - any import failure means: skip Avalanche
            return {"skipped": f"Avalanche is not importable ({type(error).__name__}: {error})"}
    elif spec["framework"] == "clutils":
        import clutils.strategies
        import clutils.train  # noqa: F401 - imported before the memory window opens
    benchmark = plain = make_benchmark(spec).to(device)
    scenario = benchmark.scenario
    if spec["framework"] == "clutils":
        benchmark, scenario = _probe_scenario(benchmark, spec, device)
    # Warm up first (kernels, and the code pages of torch's libraries, which count as
    # resident memory), then measure the peak from the memory still in use. The bare steps of
    # the warm-up take no task id: they run on the benchmark before any twin.
    warm_up(plain, spec["width"], spec, device)
    _sync(device)
    _release_freed_memory()
    memory_before, memory_method = _reset_peak_memory(device)
    model = _build_model(benchmark, spec["width"], device, spec.get("strategy") if spec["framework"] == "clutils" else None)
    run = {"bare": run_bare, "clutils": run_clutils, "avalanche": run_avalanche}[spec["framework"]]
    out = run(benchmark, model, spec, device)
    out["peak_mib"] = _peak_memory(device, memory_method) - memory_before
    out["memory_method"] = memory_method
    out["parameters"] = _n_parameters(model)
    out["samples"] = sum(len(t.train) for t in benchmark.tasks) * spec["epochs"]
    out["steps"] = sum(math.ceil(len(t.train) / spec["batch_size"]) for t in benchmark.tasks) * spec["epochs"]
    out["threads"] = torch.get_num_threads()
    out["scenario"] = scenario
    return out


# ------------------------------------------------------------------------------ parent side


def run_in_subprocess(spec: dict) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=str(REPO), check=False)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = [line for line in (done.stderr.strip().splitlines() or done.stdout.strip().splitlines())][-12:]
    last = tail[-1] if tail else f"exit status {done.returncode}"
    return {"error": last, "traceback": "\n".join(tail), "returncode": done.returncode}


def block(width: int, strategies: list[str], avalanche: bool) -> list[tuple[str, str]]:
    """The configurations of one width in run order: each clutils strategy next to Avalanche's,
    between two bare-loop runs."""
    configs = [("bare", "bare")]
    for name in strategies:
        configs.append(("clutils", name))
        if avalanche and name in AVALANCHE:
            configs.append(("avalanche", name))
    if avalanche and "naive" not in strategies:
        configs.append(("avalanche", "naive"))  # the reference of Avalanche's per-step column
    configs.append(("bare", "bare#2"))
    return configs


def _fmt(value, pattern: str, missing: str = "-") -> str:
    return missing if value is None else format(value, pattern)


def _fmt_state(value: float | None) -> str:
    if value is None:
        return "-"
    return format(value, ".3f" if 0 < value < 0.1 else ".2f")


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _merge_bare(runs: list[dict]) -> dict | None:
    """The bare runs of one round as one: mean time, highest peak."""
    if not runs:
        return None
    merged = dict(runs[0])
    merged["train_s"] = merged["step_s"] = statistics.mean(m["train_s"] for m in runs)
    merged["peak_mib"] = max(m["peak_mib"] for m in runs)
    return merged


def summarise(runs: dict, widths: list[int], repeats: int) -> list[dict]:
    """One row per (width, framework, strategy): medians over repeats of the per-round ratios."""
    rows = []
    for width in widths:
        rounds = [runs[(width, r)] for r in range(repeats)]
        bare_times = [[m["train_s"] for (fw, _), m in rnd.items() if fw == "bare" and "train_s" in m]
                      for rnd in rounds]
        bare_ref = [statistics.mean(t) if t else None for t in bare_times]
        spreads = [(max(t) / min(t) - 1) if len(t) > 1 else None for t in bare_times]
        keys = [k for k in rounds[0] if k[1] != "bare#2"]
        for framework, strategy in keys:
            measured = [rnd.get((framework, strategy), {}) for rnd in rounds]
            if framework == "bare":  # the row of the reference: both bare runs of each round
                measured = [_merge_bare([m for (fw, _), m in rnd.items() if fw == "bare" and "train_s" in m])
                            or rnd.get((framework, strategy), {}) for rnd in rounds]
            row = {"width": width, "framework": framework, "strategy": strategy}
            errors = [m.get("error") or m.get("skipped") for m in measured if "train_s" not in m]
            if errors:
                row["error"] = errors[0]
                row["skipped"] = any("skipped" in m for m in measured)
                rows.append(row)
                continue
            first = measured[0]
            naive = [rnd.get((framework if framework != "bare" else "clutils", "naive"), {})
                     for rnd in rounds]
            per_round_ratio = [m["train_s"] / b for m, b in zip(measured, bare_ref) if b]
            per_round_step = [m["step_s"] / n["step_s"] for m, n in zip(measured, naive)
                              if n.get("step_s") and framework != "bare"]
            row.update({
                "samples_per_s": _median([first["samples"] / m["train_s"] for m in measured]),
                "train_s": _median([m["train_s"] for m in measured]),
                "x_bare": _median(per_round_ratio),
                "step_x_naive": _median(per_round_step),
                "after_task_per_epoch": _median([m.get("after_task_per_epoch") for m in measured]),
                "peak_mib": _median([m["peak_mib"] for m in measured]),
                "state_per_param": (None if first.get("state_numel") is None
                                    else first["state_numel"] / first["parameters"]),
                "parameters": first["parameters"],
                "bare_spread": _median(spreads) if framework == "bare" else None,
                "scenario": first.get("scenario"),
                "runs": measured,
            })
            rows.append(row)
    return rows


def avalanche_speedup(row: dict, rows: list[dict]) -> float | None:
    """Avalanche's training time / clutils' for ``row``'s strategy and width (None: not measured)."""
    twin = [r for r in rows if r["framework"] == "avalanche" and r["strategy"] == row["strategy"]
            and r["width"] == row["width"] and "error" not in r]
    if not twin or not row.get("train_s") or not twin[0].get("train_s"):
        return None
    return twin[0]["train_s"] / row["train_s"]


def _target_value(row: dict, kind: str, rows: list[dict]) -> float | None:
    if kind == "avalanche":
        return avalanche_speedup(row, rows)
    return {"bare": row["x_bare"], "step": row["step_x_naive"], "after_task": row["after_task_per_epoch"]}[kind]


def check_targets(rows: list[dict]) -> list[tuple[bool, str]]:
    """(met, line) for every target that applies to a measured clutils row."""
    checks = []
    for row in rows:
        if row["framework"] != "clutils" or "error" in row:
            continue
        targets = TARGETS.get(row["strategy"], {})
        label = f"w{row['width']} clutils {row['strategy']}"
        for kind, limit in targets.items():
            value = _target_value(row, kind, rows)
            what = {"bare": "x bare loop (training incl. after_task)",
                    "step": "x clutils naive per step",
                    "after_task": "epochs (after_task time per task / one epoch)",
                    "avalanche": "x faster than Avalanche (its training time / clutils')"}[kind]
            sign = ">=" if kind in AT_LEAST else "<="
            if value is None:
                checks.append((False, f"{label}: not measured ({what} {sign} {limit})"))
            else:
                met = value >= limit if kind in AT_LEAST else value <= limit
                checks.append((met, f"{label}: {value:.2f} {what}, target {sign} {limit:g}"))
    # O(#params): at most STATE_BOUND numbers per parameter, and no more per parameter at a
    # larger width (a state of parameters squared would grow; one of the data would exceed
    # the bound at a small width; a head-only state, as CWR's, shrinks and passes).
    by_strategy: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if row["framework"] == "clutils" and row.get("state_per_param") is not None:
            by_strategy.setdefault(row["strategy"], []).append((row["width"], row["state_per_param"]))
    for name, values in by_strategy.items():
        values.sort()
        factors = [f for _, f in values]
        if max(factors) == 0:
            continue
        bounded = max(factors) <= STATE_BOUND
        not_growing = all(b <= 1.1 * a for a, b in itertools.pairwise(factors))
        listing = ", ".join(f"w{w}: {_fmt_state(f)}" for w, f in values)
        line = (f"clutils {name}: state O(#params): state/params <= {STATE_BOUND:g} and not growing "
                f"with the width ({listing})")
        checks.append((bounded and not_growing, line))
    return checks


def print_table(rows: list[dict]) -> None:
    header = ("width", "framework", "strategy", "samples/s", "x bare", "step x naive",
              "after_task/epoch", "peak MiB", "state/params", "target / reference")
    lines = [header]
    for row in rows:
        if "error" in row:
            status = "skipped: " if row.get("skipped") else "FAILED: "
            lines.append((str(row["width"]), row["framework"], row["strategy"], status + row["error"]))
            continue
        note = ""
        if row["framework"] == "clutils":
            parts = []
            for kind, limit in TARGETS.get(row["strategy"], {}).items():
                value = _target_value(row, kind, rows)
                short = {"bare": "bare", "step": "naive step", "after_task": "epoch",
                         "avalanche": "faster than Avalanche"}[kind]
                if kind in AT_LEAST:
                    ok = value is not None and value >= limit
                    parts.append(f">={limit:g}x {short} {'ok' if ok else 'MISSED'}")
                else:
                    ok = value is not None and value <= limit
                    parts.append(f"<={limit:g}x {short} {'ok' if ok else 'MISSED'}")
            note = "; ".join(parts)
        elif row["framework"] == "avalanche":
            reference = ISSUE_AVALANCHE.get(row["width"], {}).get(row["strategy"])
            note = f"issue measured {reference:.2f}x" if reference else ""
        elif row["framework"] == "bare" and row.get("bare_spread") is not None:
            note = f"2 bare runs differ by {100 * row['bare_spread']:.1f}%"
        name = row["strategy"] + (" (class-inc.)" if row.get("scenario") == "class" else "")
        lines.append((
            str(row["width"]), row["framework"], name,
            _fmt(row["samples_per_s"], ",.0f"), _fmt(row["x_bare"], ".2f"),
            _fmt(row["step_x_naive"], ".2f"), _fmt(row["after_task_per_epoch"], ".2f"),
            _fmt(row["peak_mib"], ".0f"), _fmt_state(row["state_per_param"]), note,
        ))
    widths = [max(len(line[i]) for line in lines if len(line) > i and len(line) == len(header))
              for i in range(len(header))]
    for line in lines:
        if len(line) < len(header):  # an error row: the message runs on
            print("  ".join(cell.ljust(w) for cell, w in zip(line[:3], widths)) + "  " + line[3])
        else:
            print("  ".join(cell.rjust(w) if 3 <= i <= 8 else cell.ljust(w)
                            for i, (cell, w) in enumerate(zip(line, widths))).rstrip())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        spec = json.loads(args.worker)
        print(RESULT_TAG + json.dumps(stacked_worker(spec) if spec.get("stacked") else worker(spec)), flush=True)
        return 0
    if args.stacked:
        return stacked_main(args)

    import torch

    dataset, described, fallback = load_data(args.data)
    if args.samples is not None and args.samples > len(dataset.train):
        build_parser().error(f"--samples {args.samples} exceeds the {len(dataset.train):,} training samples")
    per_task = args.samples or len(dataset.train)
    data_kind = "fashion-mnist" if dataset.name == "fashion-mnist" else "synthetic"
    del dataset

    avalanche_note = None
    if args.avalanche:
        if importlib.util.find_spec("avalanche") is None:
            avalanche_note = "skipped: avalanche-lib is not installed (pip install -e '.[bench]')"
        else:
            missing = [n for n in args.strategies if n not in AVALANCHE]
            if missing:
                avalanche_note = f"no Avalanche counterpart timed for: {', '.join(missing)}"
    else:
        avalanche_note = "skipped (--no-avalanche)"
    use_avalanche = args.avalanche and importlib.util.find_spec("avalanche") is not None

    print(f"clutils speed: permuted {data_kind}, {args.tasks} tasks x {args.epochs} epoch(s), "
          f"{per_task:,} samples per task, batch {args.batch_size}, Adam lr {LR:g}, "
          f"MLP 784-w-w-10 (w = {', '.join(map(str, args.widths))})")
    print(f"data: {described}" + (f" [Fashion-MNIST not used: {fallback}]" if fallback else ""))
    print(f"device: {args.device}; torch {torch.__version__}, {args.threads or torch.get_num_threads()} "
          f"thread(s) on {os.cpu_count()} CPU(s); python {platform.python_version()}; "
          f"repeats {args.repeats} (medians); load average {os.getloadavg()[0]:.1f} at start")
    threads = args.threads or torch.get_num_threads()
    if args.device == "cpu" and threads > 1 and os.getloadavg()[0] > (os.cpu_count() or 1):
        print(f"warning: the machine is busy (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs); "
              f"with {threads} intra-op threads a step waits for descheduled threads and timings "
              "swing several-fold: consider --threads 1 --clock cpu", flush=True)
    if args.clock == "cpu" and threads > 1:
        print(f"note: --clock cpu with {threads} threads adds up every thread's CPU time, spin-waiting "
              "included; it is meant for --threads 1", flush=True)
    print(f"strategies: {', '.join(args.strategies)}; avalanche: "
          + ("on" if use_avalanche else "off") + (f" ({avalanche_note})" if avalanche_note else ""))
    clock = ("wall-clock time" if args.clock == "wall"
             else "CPU time of the process (time.process_time), not wall time")
    print(f"timed: training only, {clock} (clutils: fit less its evaluate calls, after_task included; "
          "Avalanche: strategy.train per experience, eval_every=-1, no metrics/loggers)", flush=True)

    base = {"data": data_kind, "samples": args.samples, "tasks": args.tasks, "epochs": args.epochs,
            "batch_size": args.batch_size, "device": args.device, "warmup_steps": args.warmup_steps,
            "threads": args.threads, "clock": args.clock}
    runs: dict = {}
    avalanche_dead = None
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for width in args.widths:
            measured = runs.setdefault((width, repeat), {})
            for framework, strategy in block(width, args.strategies, use_avalanche):
                if framework == "avalanche" and avalanche_dead:
                    measured[(framework, strategy)] = {"skipped": avalanche_dead}
                    continue
                spec = {**base, "width": width, "framework": framework,
                        "strategy": strategy.split("#")[0]}
                label = f"[{repeat + 1}/{args.repeats}] w{width} {framework} {strategy.split('#')[0]}"
                print(f"  {label} ...", end="", flush=True)
                out = run_in_subprocess(spec)
                if "train_s" in out:
                    epochs = args.tasks * args.epochs
                    out["after_task_per_epoch"] = (
                        (out["after_task_s"] / args.tasks) / ((out["step_s"]) / epochs)
                        if framework != "bare" and out["step_s"] > 0 else None)
                    print(f" {out['samples'] / out['train_s']:,.0f} samples/s", flush=True)
                elif "skipped" in out:
                    avalanche_dead = out["skipped"]
                    print(f" skipped: {out['skipped']}", flush=True)
                else:
                    print(f" FAILED: {out['error']}", flush=True)
                measured[(framework, strategy)] = out
    elapsed = time.perf_counter() - started

    rows = summarise(runs, args.widths, args.repeats)
    print()
    print_table(rows)
    print()
    checks = check_targets(rows)
    if checks:
        print("targets:")
        for met, line in checks:
            print(f"  {'ok    ' if met else 'MISSED'} {line}")
    failed = [r for r in rows if "error" in r and not r.get("skipped")]
    for row in failed:
        print(f"\nFAILED w{row['width']} {row['framework']} {row['strategy']}:")
        traces = [m.get("traceback") for rnd in runs.values() for k, m in rnd.items()
                  if k == (row["framework"], row["strategy"]) and m.get("traceback")]
        print("  " + (traces[0] if traces else row["error"]).replace("\n", "\n  "))
    memory = "CUDA allocation" if args.device.startswith("cuda") else "resident memory (VmHWM)"
    print("\n".join([
        "",
        f"x bare            training time ({args.clock} clock) / the mean of the two bare runs of its round",
        "step x naive      time in the step loop / that of the same framework's naive (per-step overhead)",
        "after_task/epoch  time after a task's last step (EWC's Fisher, MAS's importance) / one epoch",
        f"peak MiB          peak {memory} while training, above what was in use before (data, warm-up);",
        "                  clutils' figure includes fit's evaluations (eval batches of 2048)",
        "state/params      numbers in strategy.state_dict() after the last task / the model's parameters",
        "(class-inc.)      the strategy refuses domain-incremental tasks: the same permuted tasks under the",
        "                  class-incremental protocol (one head over all classes, the same model)",
    ]))
    print(f"total {elapsed / 60:.1f} min; load average {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} CPUs): timings on a shared machine are noisy, compare ratios.")
    if args.json:
        payload = {"args": {k: v for k, v in vars(args).items() if k != "worker"}, "data": described,
                   "data_fallback_reason": fallback, "avalanche_note": avalanche_note,
                   "rows": rows, "targets": [{"met": m, "check": c} for m, c in checks]}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 1 if failed else 0


# ------------------------------------------------------------------------------ stacked runs
# The issue "seeds and sweeps for the price of one run": K seeds of a strategy trained as one
# stacked run (clutils.stacked.fit_stacked) against one seed trained by clutils.train.fit, on
# the same MLP, data and Adam. Targets: 5 stacked seeds of naive, EWC, SI and ALASSO at width 256
# in at most 2x one seed's training time (5 separate runs cost 5x), and the stacked run's peak
# memory within K x (parameters + gradients + Adam's two moments + the strategy's state) plus
# one training batch and one evaluation batch of activations per copy.

STACKED_STRATEGIES = ("naive", "ewc", "si", "alasso")
STACKED_TARGET = {"copies": 5, "width": 256, "ratio": 2.0}
# Where stacking "pays": 5 stacked seeds cost less than this share of 5 single runs.
STACKED_PAYS = 0.9


def _stacked_copies(benchmark, spec: dict, device):
    from clutils.models import build_model
    from clutils.stacked import Copy
    from clutils.strategies import make

    width = spec["width"]
    return [Copy(build_model(benchmark, hidden=(width, width), seed=SEED + k).to(device), benchmark,
                 make(spec["strategy"]), SEED + k) for k in range(spec["copies"])]


def stacked_worker(spec: dict) -> dict:
    """One stacked (``copies`` >= 1) or single (``copies`` 0: ``clutils.train.fit``) run in a fresh process."""
    import torch

    import clutils.stacked as stacked_module
    import clutils.train as train_module
    from clutils.strategies import make
    from clutils.train import TrainConfig

    global _clock
    _clock = CLOCKS[spec.get("clock", "wall")]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    benchmark = make_benchmark(spec).to(device)
    warm_up(benchmark, spec["width"], spec, device)
    _sync(device)
    _release_freed_memory()
    memory_before, memory_method = _reset_peak_memory(device)
    config = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch_size"], lr=LR, optimizer="adam",
                         seed=SEED, progress=False)
    eval_times: list[float] = []
    if spec["copies"] == 0:
        model = _build_model(benchmark, spec["width"], device)
        strategy = make(spec["strategy"])
        _timed_method(train_module, "evaluate", eval_times, device)
        started = _clock()
        train_module.fit(model, benchmark, strategy, config, device=device)
        states = [strategy]
    else:
        copies = _stacked_copies(benchmark, spec, device)
        _timed_method(stacked_module, "evaluate_stacked", eval_times, device)
        started = _clock()
        stacked_module.fit_stacked(copies, config, device=device)
        model, states = copies[0].model, [c.strategy for c in copies]
    _sync(device)
    total = _clock() - started
    peak = _peak_memory(device, memory_method) - memory_before
    params = _n_parameters(model)
    state = sum(_state_numel(s.state_dict()) for s in states)
    k = max(spec["copies"], 1)
    # K x (weights, gradients, Adam's two moments) + the strategies' state, and per copy one training
    # and one evaluation batch of activations (inputs, two hidden layers, logits; values and gradients).
    activations = k * (spec["batch_size"] * 2 + 2048) * (784 + 2 * spec["width"] + 10)
    bound_mib = (4 * k * params + state + activations) * 4 / 2**20
    return {"train_s": total - sum(eval_times), "eval_s": sum(eval_times), "peak_mib": peak,
            "memory_method": memory_method, "bound_mib": bound_mib, "parameters": params,
            "threads": torch.get_num_threads()}


#: The paper profile's permuted-MNIST run (ALASSO's presets): 2x2000 MLP, 60,000 images per task,
#: 20 epochs, 30 tasks, batch 256, every task's 10,000 test images evaluated after each task.
PAPER_RUN = {"hidden": 2000, "train": 60_000, "test": 10_000, "epochs": 20, "tasks": 30, "batch": 256}
#: Assumed sustained float32 throughput of batched matrix products on one data-centre GPU (an
#: H100/H200 runs plain float32 at about 60 TFLOP/s peak; half of it is sustained by bmm at these
#: sizes) and the per-step cost of the loop's Python and kernel launches, per copy's strategy hooks.
ASSUMED_GPU_TFLOPS = 30.0
ASSUMED_STEP_OVERHEAD_S = 1e-3
ASSUMED_HOOK_OVERHEAD_S = 1e-4


def paper_gpu_estimate(copies: int = 10) -> str:
    """An ESTIMATE (not a measurement) of ``copies`` stacked seeds of the paper profile's MLP on a GPU."""
    r = PAPER_RUN
    params = 784 * r["hidden"] + r["hidden"] ** 2 + 10 * r["hidden"]
    train_flop = 6 * params * r["train"] * r["epochs"] * r["tasks"]  # forward + backward, 2 FLOP per MAC
    eval_flop = 2 * params * r["test"] * r["tasks"] * r["tasks"]
    steps = math.ceil(r["train"] / r["batch"]) * r["epochs"] * r["tasks"]

    def seconds(k: int) -> float:
        arithmetic = k * (train_flop + eval_flop) / (ASSUMED_GPU_TFLOPS * 1e12)
        return arithmetic + steps * (ASSUMED_STEP_OVERHEAD_S + k * ASSUMED_HOOK_OVERHEAD_S)

    return (f"ESTIMATE, not measured (no GPU here): the paper profile's 2x2000 MLP, {r['tasks']} tasks x "
            f"{r['epochs']} epochs of {r['train']:,} images ({steps:,} steps), at an assumed "
            f"{ASSUMED_GPU_TFLOPS:g} TFLOP/s float32 and {1e3 * ASSUMED_STEP_OVERHEAD_S:g} ms per step: one seed "
            f"{seconds(1) / 60:.0f} min, {copies} seeds one after another {copies * seconds(1) / 60:.0f} min, "
            f"{copies} seeds stacked in one run {seconds(copies) / 60:.0f} min")


def stacked_main(args) -> int:
    """Time K stacked seeds against one seed (``--stacked``); print the targets as met or missed."""
    import torch

    strategies = [s for s in args.strategies if s in STACKED_STRATEGIES] or list(STACKED_STRATEGIES)
    dataset, described, fallback = load_data(args.data)
    data_kind = "fashion-mnist" if dataset.name == "fashion-mnist" else "synthetic"
    per_task = args.samples or len(dataset.train)
    del dataset
    width = args.widths[0]
    print(f"clutils stacked runs: permuted {data_kind}, {args.tasks} tasks x {args.epochs} epoch(s), "
          f"{per_task:,} samples per task, batch {args.batch_size}, Adam lr {LR:g}, MLP 784-{width}-{width}-10; "
          f"strategies {', '.join(strategies)}; K = {', '.join(map(str, args.copies))}")
    print(f"data: {described}" + (f" [Fashion-MNIST not used: {fallback}]" if fallback else ""))
    print(f"device: {args.device}; torch {torch.__version__}, {args.threads or torch.get_num_threads()} thread(s) "
          f"on {os.cpu_count()} CPU(s); repeats {args.repeats} (medians); load average "
          f"{os.getloadavg()[0]:.1f} at start; timed: training only ({args.clock} clock), evaluation left out",
          flush=True)
    base = {"stacked": True, "data": data_kind, "samples": args.samples, "tasks": args.tasks,
            "epochs": args.epochs, "batch_size": args.batch_size, "device": args.device,
            "warmup_steps": args.warmup_steps, "threads": args.threads, "clock": args.clock}
    configs = [(width, s, k) for s in strategies for k in [0, *args.copies]]
    configs += [(w, "naive", k) for w in args.width_sweep if w != width for k in (0, 5)]
    measured: dict = {}
    for repeat in range(args.repeats):
        for w, strategy, k in configs:
            label = f"[{repeat + 1}/{args.repeats}] w{w} {strategy} " + (f"K={k}" if k else "single fit")
            print(f"  {label} ...", end="", flush=True)
            out = run_in_subprocess({**base, "width": w, "strategy": strategy, "copies": k})
            if "train_s" in out:
                print(f" {out['train_s']:.2f} s", flush=True)
            else:
                print(f" FAILED: {out['error']}", flush=True)
            measured.setdefault((w, strategy, k), []).append(out)

    def median(key, field):
        values = [m[field] for m in measured.get(key, []) if field in m]
        return statistics.median(values) if values else None

    print(f"\n{'width':>5} {'strategy':<8} {'K':>3} {'train s':>8} {'x one seed':>10} {'x K singles':>11} "
          f"{'peak MiB':>9} {'bound MiB':>9}")
    rows = []
    for (w, strategy, k) in dict.fromkeys(configs):
        one = median((w, strategy, 0), "train_s")
        t = median((w, strategy, k), "train_s")
        if t is None:
            continue
        ratio = t / one if one else None
        share = t / (max(k, 1) * one) if one else None
        rows.append({"width": w, "strategy": strategy, "copies": k, "train_s": t, "x_one_seed": ratio,
                     "x_k_singles": share, "peak_mib": median((w, strategy, k), "peak_mib"),
                     "bound_mib": median((w, strategy, k), "bound_mib")})
        print(f"{w:>5} {strategy:<8} {k if k else '1*':>3} {t:>8.2f} {_fmt(ratio, '.2f'):>10} "
              f"{_fmt(share, '.2f'):>11} {_fmt(rows[-1]['peak_mib'], '.0f'):>9} "
              f"{_fmt(rows[-1]['bound_mib'], '.0f'):>9}")
    print("\n1* = one seed trained by clutils.train.fit (the reference); x one seed = train s / its; "
          "x K singles = train s / (K x its)")
    print("targets:")
    target_k = STACKED_TARGET["copies"]
    failed = False
    for row in rows:
        if row["copies"] == target_k and row["width"] == width and row["x_one_seed"] is not None:
            met = row["x_one_seed"] <= STACKED_TARGET["ratio"]
            print(f"  {'ok    ' if met else 'MISSED'} w{width} {row['strategy']}: {target_k} stacked seeds in "
                  f"{row['x_one_seed']:.2f}x one seed's time (target <= {STACKED_TARGET['ratio']:g}x)")
        if row["copies"] and row["peak_mib"] is not None:
            met = row["peak_mib"] <= row["bound_mib"]
            if not met or row["copies"] == target_k:
                print(f"  {'ok    ' if met else 'MISSED'} w{row['width']} {row['strategy']} K={row['copies']}: peak "
                      f"{row['peak_mib']:.0f} MiB <= bound {row['bound_mib']:.0f} MiB")
            single = median((row["width"], row["strategy"], 0), "peak_mib")
            if single is not None:  # the same against the measured peak of one seed's fit
                met = row["peak_mib"] <= row["copies"] * single
                print(f"  {'ok    ' if met else 'MISSED'} w{row['width']} {row['strategy']} K={row['copies']}: peak "
                      f"{row['peak_mib']:.0f} MiB <= K x one seed's measured peak {row['copies'] * single:.0f} MiB")
    sweep = [r for r in rows if r["strategy"] == "naive" and r["copies"] == 5 and r["x_k_singles"] is not None]
    stops = [r["width"] for r in sorted(sweep, key=lambda r: r["width"]) if r["x_k_singles"] > STACKED_PAYS]
    print("  width sweep (naive, 5 seeds, stacked / 5 singles): "
          + ", ".join(f"w{r['width']} {r['x_k_singles']:.2f}" for r in sorted(sweep, key=lambda r: r["width"]))
          + (f"; stacking stops paying (> {STACKED_PAYS:g}) from width {stops[0]}" if stops
             else f"; stacking pays (<= {STACKED_PAYS:g}) at every width measured"))
    failed = any("error" in m for runs in measured.values() for m in runs)
    print(f"  {paper_gpu_estimate(10)}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end: timings on a shared machine are noisy.")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "worker"},
                                               "data": described, "rows": rows}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
