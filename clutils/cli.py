"""The command line: ``python -m clutils run ...`` and ``python -m clutils list``.

``run`` trains one strategy on one benchmark with the settings of a profile
(:mod:`clutils.presets`), overridden by flags, shows progress bars and ends
with the accuracy matrix and the metrics; ``--json`` saves the whole
:class:`~clutils.result.Result`. ``list`` shows every benchmark, dataset,
strategy (with its hyperparameters) and profile.

Every bad argument ends in a usage message that names the valid values and
exit status 2, before any data is loaded or any step is trained; every fault
found later (a damaged data file or checkpoint, a diverged run, a run
directory in use) in a one-paragraph message and exit status 1. No input
ends in a Python traceback.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any, Sequence

EXIT_OK = 0
EXIT_FAILED = 1  # data unavailable or damaged, training diverged, checkpoint unusable, run dir in use
EXIT_USAGE = 2  # bad arguments (argparse's own status)
EXIT_INTERRUPTED = 130

PROFILE_HELP = {
    "smoke": "seconds: a few samples per class, tiny network (used by the tests)",
    "quick": "minutes on a laptop CPU, still showing the paper's effect",
    "paper": "the paper's own scale (all samples, paper's network and epochs): meant for a GPU",
}

# Number of classes of the datasets, known without loading them, so that an impossible
# ``--tasks`` is refused before a large download. A dataset missing here is checked after loading.
DATASET_CLASSES = {
    "digits": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 100,
    "core50": 10, "core50-objects": 50, "tiny-imagenet": 200,
}

# Used when a benchmark has no preset of its own.
GENERIC_PRESET = {
    "smoke": {"tasks": None, "epochs": 1, "batch_size": 256, "lr": 1e-3, "optimizer": "adam", "arch": "mlp",
              "hidden": [64], "train_per_class": 50, "test_per_class": 20},
    "quick": {"tasks": None, "epochs": 2, "batch_size": 256, "lr": 1e-3, "optimizer": "adam", "arch": "mlp",
              "hidden": [256, 256], "train_per_class": 1000, "test_per_class": 300},
    "paper": {"tasks": None, "epochs": 10, "batch_size": 256, "lr": 1e-3, "optimizer": "adam", "arch": "mlp",
              "hidden": [2000, 2000], "train_per_class": None, "test_per_class": None},
}

EPILOG = """\
exit status: 0 done; 1 the run failed (a dataset is not on this machine and cannot be
downloaded, a data file or checkpoint is damaged, the --run-dir is in use by another run,
or training diverged); 2 bad arguments (the message names the valid values);
130 interrupted (rerun with the same --run-dir to resume).
"""
MAX_SEED = 2 ** 32 - 1  # numpy's and every generator's common range


# ------------------------------------------------------------------ argument types


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def learning_rate(text: str) -> float:
    from .train import MAX_LR

    value = positive_float(text)
    if value > MAX_LR:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_LR:g} (larger values overflow the optimiser's "
                                         f"float32 steps), got {text}")
    return value


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {MAX_SEED}, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must lie in 0..{MAX_SEED} (the generators' range), got {value}")
    return value


def seed_list(text: str) -> list[int]:
    """``--seeds 0,1,2``: distinct seeds, each as ``--seed`` accepts it."""
    values = [seed(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds, e.g. 0,1,2, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"the seeds must differ, got {text!r}")
    return values


def layer_sizes(text: str) -> list[int]:
    """``256,256`` -> [256, 256]."""
    try:
        sizes = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths such as 256,256, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive layer widths such as 256,256, got {text!r}")
    return sizes


def parse_value(text: str) -> Any:
    """A ``--set`` value: int, float, bool, None, a Python literal (list, tuple), else the string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_assignments(items: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            parser.error(f"--set expects name=value (e.g. --set c=0.1), got {item!r}")
        out[name] = parse_value(value)
    return out


# ------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clutils",
        description="Continual-learning experiments of the book from the command line.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="{run,list}")
    commands.required = True

    commands.add_parser("list", help="list benchmarks, datasets, strategies and profiles",
                        description="List benchmarks, datasets, strategies (with hyperparameters) and profiles.")

    run = commands.add_parser(
        "run", help="train a strategy on a benchmark and print the accuracy matrix and metrics",
        description="Train a strategy on a benchmark with a profile's settings (overridden by the "
                    "flags), then print the accuracy matrix R (rows: after training task i, columns: "
                    "test accuracy on task j, in %) and ACC, BWT, FWT and forgetting. "
                    "See `python -m clutils list` for the valid names.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--benchmark", required=True, metavar="NAME", help="benchmark name, e.g. permuted-mnist or split-mnist")
    run.add_argument("--strategy", default="naive", metavar="NAME", help="strategy name (default: naive)")
    run.add_argument("--profile", default="quick", metavar="NAME", help="smoke, quick or paper (default: quick)")
    run.add_argument("--dataset", metavar="NAME", help="replace the benchmark's dataset (e.g. fashion-mnist, digits)")
    run.add_argument("--scenario", metavar="NAME", help="task, domain or class (default: the benchmark's)")
    run.add_argument("--tasks", type=positive_int, metavar="N", help="number of tasks (default: the profile's)")
    run.add_argument("--epochs", type=positive_int, metavar="N", help="epochs per task")
    run.add_argument("--batch-size", type=positive_int, metavar="N", help="training batch size")
    run.add_argument("--lr", type=learning_rate, metavar="X", help="learning rate")
    run.add_argument("--optimizer", metavar="NAME", help="adam or sgd")
    run.add_argument("--momentum", type=float, metavar="X", help="SGD momentum")
    run.add_argument("--shared-lr-scale", type=float, metavar="X",
                     help="learning rate of the layers below the output, as a fraction of --lr")
    run.add_argument("--head", choices=("maximal", "expanding"),
                     help="class-incremental single head: maximal (all classes) or expanding (classes seen)")
    run.add_argument("--arch", metavar="NAME", help="a network of clutils.models.ARCHITECTURES, e.g. mlp, cifarnet, hat-mlp (default: the strategy's own network, else the preset's)")
    run.add_argument("--hidden", type=layer_sizes, metavar="W,W", help="MLP hidden widths, e.g. 256,256")
    run.add_argument("--train-per-class", type=positive_int, metavar="N", help="training samples per class")
    run.add_argument("--test-per-class", type=positive_int, metavar="N", help="test samples per class")
    run.add_argument("--all-samples", action="store_true", help="use every sample (ignore the profile's subsets)")
    run.add_argument("--seed", type=seed, default=0, metavar="N",
                     help=f"seed of the data order, subsets and weights, 0..{MAX_SEED} (default: 0)")
    run.add_argument("--device", default="auto", metavar="NAME", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument("--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE",
                     help="a strategy hyperparameter, e.g. --set c=0.1 (repeatable)")
    run.add_argument("--confusion", action="store_true", help="record a confusion matrix after each task")
    run.add_argument("--json", metavar="PATH", help="save the result (config, accuracy_matrix, metrics) as JSON")
    run.add_argument("--run-dir", metavar="DIR", help="checkpoint after each task; rerun to resume")
    run.add_argument("--root", metavar="DIR", help="data root (default: $CLUTILS_DATA or ~/.cache/clutils)")
    run.add_argument("--offline", action="store_true", help="never download; fail if the data is absent")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--seeds", type=seed_list, metavar="S,S,...",
                     help="train one run per seed (stacked in one pass when the strategy stacks, else one after "
                          "another) and print each seed's metrics and their mean and standard deviation")
    run.set_defaults(subparser=run)  # so that errors print the usage of `run`
    return parser


# ------------------------------------------------------------------------- list


def _first_line(text: str | None) -> str:
    text = (text or "").strip()
    return text.splitlines()[0].strip().replace("``", "") if text else ""


def _preset_summary(preset: dict[str, Any]) -> str:
    arch = preset.get("arch", "mlp")
    if arch == "mlp" and preset.get("hidden"):
        arch += " " + "x".join(str(h) for h in preset["hidden"])
    per_class = preset.get("train_per_class")
    samples = "all samples" if per_class is None else f"{per_class}/{preset.get('test_per_class')} per class"
    tasks = preset.get("tasks")
    epochs = preset.get("epochs")
    return (f"{tasks if tasks is not None else 'default'} tasks x {epochs} epoch{'' if epochs == 1 else 's'}, {arch}, "
            f"{preset.get('optimizer')} lr={preset.get('lr')}, batch {preset.get('batch_size')}, {samples}")


def list_everything(out=None) -> None:
    from . import presets
    from .data.datasets import LOADERS, dataset_names
    from .data.named import BENCHMARKS, benchmark_names
    from .strategies import REGISTRY, strategy_names

    out = out or sys.stdout
    width = max(len(n) for n in [*benchmark_names(), *dataset_names(), *strategy_names(), *presets.PROFILES])

    def line(name: str, text: str) -> None:
        print(f"  {name:<{width}}  {text}", file=out)

    print("Benchmarks (--benchmark):", file=out)
    for name in benchmark_names():
        spec = BENCHMARKS[name]
        line(name, f"{spec.description}  [{spec.n_tasks} tasks, {spec.scenario}-incremental, dataset {spec.dataset}]")
    print("\nDatasets (--dataset; replace a benchmark's own):", file=out)
    for name in dataset_names():
        line(name, _first_line(LOADERS[name].__doc__))
    print("\nStrategies (--strategy; hyperparameters with --set name=value):", file=out)
    from .strategies.recipes import recipe_of

    for name in strategy_names():
        cls = REGISTRY[name]
        hps = ", ".join(f"{k}={v!r}" for k, v in cls.defaults.items()) or "no hyperparameters"
        line(name, f"{_first_line(cls.__doc__)}  [{hps}]")
        recipe = recipe_of(name)
        line("", "recipe: " + (recipe.describe() if recipe else "none (trains as the benchmark's profile says)"))
    print("\nProfiles (--profile):", file=out)
    for profile in presets.PROFILES:
        line(profile, PROFILE_HELP.get(profile, ""))
    print("\nProfile settings per benchmark (override with --tasks, --epochs, --batch-size, --lr, ...):", file=out)
    for name in benchmark_names():
        print(f"  {name}", file=out)
        for profile in presets.PROFILES:
            print(f"    {profile:<6} {_preset_summary(_preset(name, profile))}", file=out)


# ------------------------------------------------------------------------- run


def _preset(benchmark: str, profile: str) -> dict[str, Any]:
    from . import presets

    try:
        return presets.get(benchmark, profile)
    except presets.UnknownExperimentError:
        return dict(GENERIC_PRESET[profile])


def _valid_task_counts(benchmark: str, dataset: str | None, n_classes: int | None) -> list[int] | None:
    """The task counts ``benchmark`` can make from ``n_classes`` classes (None: any, or unknown)."""
    from .data.benchmarks import class_groups
    from .data.named import BENCHMARKS

    spec = BENCHMARKS[benchmark]
    if spec.kind in ("permuted", "rotated"):  # any number of tasks
        return None
    if spec.kind == "split-cifar10-100":
        return list(range(1, 12))
    if n_classes is None:  # a dataset not in DATASET_CLASSES: make_benchmark checks after loading
        return None
    if spec.classes_per_task and dataset is None:
        return list(range(1, n_classes // spec.classes_per_task + 1))
    first = spec.first if dataset is None else None
    valid = []
    for n in range(1, n_classes + 1):
        try:
            class_groups(n_classes, n, None, first=first)
        except ValueError:
            continue
        valid.append(n)
    return valid


def _check_tasks(parser, benchmark: str, dataset: str | None, n_tasks: int, n_classes: int | None) -> None:
    valid = _valid_task_counts(benchmark, dataset, n_classes)
    if valid is not None and n_tasks not in valid:
        from .data.named import BENCHMARKS

        spec = BENCHMARKS[benchmark]
        choices = ", ".join(map(str, valid[:-1])) + (" or " if len(valid) > 1 else "") + str(valid[-1])
        if spec.kind == "split-cifar10-100":
            parser.error(f"--tasks {n_tasks}: {benchmark} can make {choices} tasks "
                         "(CIFAR-10, then up to 10 groups of 10 CIFAR-100 classes)")
        how = (f"{spec.first} classes in the first task, the rest split equally"
               if spec.first and dataset is None else "the classes split into tasks of equal size")
        if spec.classes_per_task and dataset is None:
            how = f"{spec.classes_per_task} classes per task"
        parser.error(f"--tasks {n_tasks}: {benchmark} on {dataset or spec.dataset} ({n_classes} classes) "
                     f"can make {choices} tasks ({how})")


def _settings(args, parser) -> dict[str, Any]:
    """Validate every name and number; the profile's settings overridden by the flags."""
    from . import presets
    from .data.benchmarks import SCENARIOS
    from .data.datasets import dataset_names
    from .data.named import BENCHMARKS, benchmark_names
    from .models import ARCHITECTURES
    from .strategies import REGISTRY, UnknownHyperparameterError, make, strategy_names
    from .train import OPTIMIZERS, resolve_device

    if args.benchmark not in BENCHMARKS:
        parser.error(f"unknown benchmark {args.benchmark!r}; choose one of: {', '.join(benchmark_names())}")
    if args.profile not in presets.PROFILES:
        parser.error(f"unknown profile {args.profile!r}; choose one of: {', '.join(presets.PROFILES)}")
    if args.dataset is not None and args.dataset not in dataset_names():
        parser.error(f"unknown dataset {args.dataset!r}; choose one of: {', '.join(dataset_names())}")
    if args.strategy not in strategy_names():
        parser.error(f"unknown strategy {args.strategy!r}; choose one of: {', '.join(strategy_names())}")
    if args.scenario is not None and args.scenario not in SCENARIOS:
        parser.error(f"unknown scenario {args.scenario!r}; choose one of: {', '.join(SCENARIOS)}")
    spec = BENCHMARKS[args.benchmark]
    if args.scenario not in (None, "domain") and spec.kind == "permuted":
        parser.error(f"{args.benchmark} is domain-incremental only; --scenario must be domain (or left out)")
    if args.dataset is not None and spec.kind == "split-cifar10-100":
        parser.error(f"{args.benchmark} is built from cifar10 and cifar100; it takes no --dataset")

    from .strategies.recipes import recipe_of

    hyperparameters = parse_assignments(args.assignments, parser)
    recipe = recipe_of(args.strategy, args.profile)
    try:
        strategy = make(args.strategy, **{**(recipe.hp if recipe else {}), **hyperparameters})
    except UnknownHyperparameterError:
        defaults = REGISTRY[args.strategy].defaults
        unknown = ", ".join(repr(k) for k in hyperparameters if k not in defaults)
        if not defaults:
            parser.error(f"--set: strategy {args.strategy} has no hyperparameters (got {unknown})")
        valid = ", ".join(f"{k} (default {v!r})" for k, v in defaults.items())
        parser.error(f"--set: strategy {args.strategy} has no hyperparameter {unknown}; valid: {valid}")
    except (TypeError, ValueError) as error:  # a strategy refusing a value
        parser.error(f"--set: {error}")
    retuned = [f"{k}={v!r} (recipe: {recipe.hp[k]!r})" for k, v in hyperparameters.items()
               if recipe is not None and k in recipe.hp and v != recipe.hp[k]]
    if retuned:
        print(f"note: --set {', '.join(retuned)} replaces a value of {args.strategy}'s {recipe.chapter} "
              "chapter recipe, tuned together with its training", file=sys.stderr)

    try:
        device = resolve_device(args.device)
    except (RuntimeError, ValueError) as error:
        import torch

        valid = "auto, cpu" + (", cuda, cuda:N" if torch.cuda.is_available() else "")
        if "cuda" in str(args.device):
            reason = (f"PyTorch sees {torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available()
                      else "PyTorch sees no CUDA GPU on this machine")
        else:
            reason = "not supported" if "not supported" in str(error) else "not a device PyTorch knows"
        parser.error(f"--device {args.device}: {reason}; choose one of: {valid}")
    _check_paths(args, parser)

    preset = _preset(args.benchmark, args.profile)
    training = _training(args, preset, recipe)
    for flag, value in (("--momentum", training["momentum"]), ("--shared-lr-scale", training["shared_lr_scale"])):
        if not 0 <= value < float("inf"):
            parser.error(f"{flag} must be zero or positive, got {value}")
    settings = {
        "tasks": args.tasks or preset.get("tasks") or spec.n_tasks,
        "epochs": args.epochs or preset["epochs"],
        **training,
        "arch": args.arch or REGISTRY[args.strategy].model_arch or preset.get("arch", "mlp"),
        "hidden": args.hidden or preset.get("hidden"),
        "train_per_class": args.train_per_class or (None if args.all_samples else preset.get("train_per_class")),
        "test_per_class": args.test_per_class or (None if args.all_samples else preset.get("test_per_class")),
    }
    if settings["optimizer"] not in OPTIMIZERS:
        parser.error(f"unknown optimizer {settings['optimizer']!r}; choose one of: {', '.join(OPTIMIZERS)}")
    if settings["arch"] not in ARCHITECTURES:
        parser.error(f"unknown architecture {settings['arch']!r}; choose one of: {', '.join(ARCHITECTURES)}")
    dataset = args.dataset if args.dataset is not None else spec.dataset
    _check_tasks(parser, args.benchmark, args.dataset, settings["tasks"], DATASET_CLASSES.get(dataset))
    return {**settings, "strategy": strategy, "hyperparameters": hyperparameters, "device": device,
            "dataset_name": dataset, "recipe": recipe}


#: Training flags that override a strategy's recipe: attribute of ``args`` -> setting name.
RECIPE_FLAGS = {"optimizer": "optimizer", "lr": "lr", "batch_size": "batch_size", "momentum": "momentum",
                "shared_lr_scale": "shared_lr_scale", "head": "head"}


def _training(args, preset: dict[str, Any], recipe) -> dict[str, Any]:
    """The training settings: the strategy's recipe (else the profile's), overridden by the flags.

    A flag that changes a recipe's value leaves the training the strategy's hyperparameters
    were tuned for: a warning says so (the run goes on with the flag's value).
    """
    base = {"optimizer": preset.get("optimizer", "adam"), "lr": preset["lr"], "batch_size": preset["batch_size"],
            "momentum": 0.0, "shared_lr_scale": 1.0, "head": "maximal", "first_task_epochs": None,
            "first_task_lr": None, "reset_optimizer": True}
    if recipe is not None:
        base.update(recipe.training(), head=recipe.head)
    out = dict(base)
    changed = []
    for attribute, key in RECIPE_FLAGS.items():
        value = getattr(args, attribute, None)
        if value is None:
            continue
        out[key] = value
        if recipe is not None and value != base[key]:
            changed.append(f"--{attribute.replace('_', '-')} {value} (recipe: {base[key]})")
    if changed:
        print(f"warning: {', '.join(changed)} leave{'s' if len(changed) == 1 else ''} the training "
              f"{args.strategy}'s hyperparameters were tuned for: {recipe.describe()}", file=sys.stderr)
    return out


def _check_paths(args, parser) -> None:
    """The data root is a folder; the outputs can be written (found now, not after training)."""
    from .data.root import DataRootError, data_root
    from .files import OutputPathError, check_output_dir, check_output_file

    try:
        data_root(args.root)
        if args.json:
            check_output_file(args.json, "--json")
        if args.run_dir:
            check_output_dir(args.run_dir, "--run-dir")
            check_output_file(Path(args.run_dir) / "result.json", "--run-dir")
    except DataRootError as error:
        parser.error(f"--root: {error}")
    except OutputPathError as error:
        parser.error(str(error))


def _format_report(result, title: str) -> str:
    from .metrics import FWT_NOT_APPLICABLE, forward_transfer_applies

    R = result.accuracy_matrix
    T = len(R)
    n_cols = len(R[0]) if R else 0
    label_width = len(f"after T{T}")
    lines = [title, "", "Accuracy matrix R (%): row i = after training task i, column j = test accuracy on task j"]
    lines.append(" " * label_width + "".join(f"{'T' + str(j + 1):>8}" for j in range(n_cols)))
    for i, row in enumerate(R):
        lines.append(f"{'after T' + str(i + 1):<{label_width}}" + "".join(f"{100 * a:>8.2f}" for a in row))
    metrics = result.metrics()
    names = [
        ("acc", "ACC", "average accuracy over all tasks after the last one"),
        ("bwt", "BWT", "backward transfer (negative: forgetting)"),
        ("fwt", "FWT", "forward transfer (vs. the untrained model)"),
        ("forgetting", "Forgetting", "average drop from each task's best accuracy"),
    ]
    lines.append("")
    for key, name, text in names:
        value = metrics.get(key)
        shown = "   n/a" if value is None else f"{100 * value:+7.2f} %" if key in ("bwt", "fwt") else f"{100 * value:7.2f} %"
        if key == "fwt" and not forward_transfer_applies(result.benchmark.get("scenario")):
            text = FWT_NOT_APPLICABLE
        lines.append(f"{name:<11}{shown}   {text}")
    if result.epoch_penalties and any(any(p) for p in result.epoch_penalties):
        lines.append(f"{'Last epoch':<11}task loss {result.epoch_losses[-1][-1]:.4f}, "
                     f"penalty {result.epoch_penalties[-1][-1]:.4g} (reported apart; the step minimises their sum)")
    return "\n".join(lines)


def _preflight(parser, strategy, model, benchmark, config) -> None:
    """Refuse a strategy that cannot run on this benchmark or with these settings, before training.

    ``setup`` is tried on a throwaway copy of the strategy and the model (e.g. CWR and AR1
    refuse a benchmark that is not class-incremental), then the overshoot bound of the
    clipped-importance strategies is checked for SGD.
    """
    import copy

    try:
        type(strategy)(**strategy.hp).setup(copy.deepcopy(model), benchmark)
    except (ValueError, TypeError) as error:
        hint = " (try --scenario class)" if "class-incremental" in str(error) and benchmark.scenario != "class" else ""
        parser.error(f"--strategy {strategy.name}: {error}{hint}")
    try:
        from .strategies.sit import check_lambda, decay_lr
    except ImportError:  # pragma: no cover - strategies without the SIT module
        return
    try:
        check_lambda(strategy, decay_lr(strategy, config.lr, config.shared_lr_scale), config.optimizer)
    except ValueError as error:
        parser.error(f"--set/--lr: {error}")


def run(args, parser) -> int:
    settings = _settings(args, parser)
    if args.seeds:
        return run_seeds(args, parser, settings)

    from .checkpoint import CheckpointError, RunDirError
    from .data.errors import DataFileError
    from .data.named import make_benchmark
    from .models import build_model
    from .train import CheckpointMismatchError, TrainConfig, TrainingDivergedError, fit

    try:
        from .data.datasets import DatasetUnavailableError as DataError
    except ImportError:  # pragma: no cover - older dataset layer
        DataError = RuntimeError

    progress = not args.no_progress
    if progress:
        print(f"loading {settings['dataset_name']} for {args.benchmark} ...", file=sys.stderr, flush=True)
    try:
        benchmark = make_benchmark(
            args.benchmark, n_tasks=settings["tasks"], dataset=args.dataset, scenario=args.scenario,
            seed=args.seed, train_per_class=settings["train_per_class"],
            test_per_class=settings["test_per_class"], root=args.root,
            download=False if args.offline else None,
        )
    except DataError as error:
        print(f"error: {error}\nFrom the command line: run it once online without --offline, point --root "
              "(or $CLUTILS_DATA) at a folder that holds the data, or add --dataset digits.", file=sys.stderr)
        return EXIT_FAILED
    except DataFileError as error:  # a ValueError, but the file is at fault, not the arguments
        print(f"error: bad data file: {error}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as error:  # impossible task counts or sizes for a dataset not in DATASET_CLASSES
        parser.error(str(error))
    except (RuntimeError, OSError) as error:  # any other data-loading failure (a file unreadable...)
        print(f"error: could not load the data: {error}", file=sys.stderr)
        return EXIT_FAILED

    try:
        model = build_model(benchmark, arch=settings["arch"],
                            **({"hidden": tuple(settings["hidden"])} if settings["hidden"] else {}),
                            expanding_head=settings["head"] == "expanding", seed=args.seed)
    except (ValueError, RuntimeError) as error:
        # A strategy that names its own network (HAT, PNN, DEN) cannot run on the MLP instead.
        from .strategies import REGISTRY
        own = REGISTRY[args.strategy].model_arch is not None  # e.g. pnn-mlp or pnn-conv: the error says why
        hint = "" if own else " (try --arch mlp)"
        parser.error(f"cannot build a {settings['arch']} for inputs of shape {benchmark.input_shape}: {error}{hint}")

    config = TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
                         optimizer=settings["optimizer"], momentum=settings["momentum"],
                         shared_lr_scale=settings["shared_lr_scale"],
                         first_task_epochs=settings["first_task_epochs"], first_task_lr=settings["first_task_lr"],
                         reset_optimizer=settings["reset_optimizer"], seed=args.seed,
                         record_confusion=args.confusion, progress=progress)
    _preflight(parser, settings["strategy"], model, benchmark, config)
    meta = {
        "benchmark_name": args.benchmark, "dataset": settings["dataset_name"], "profile": args.profile,
        "tasks": settings["tasks"], "arch": settings["arch"], "hidden": settings["hidden"], "head": settings["head"],
        "recipe": settings["recipe"].chapter if settings["recipe"] else None,
        "train_per_class": settings["train_per_class"], "test_per_class": settings["test_per_class"],
    }
    try:
        result = fit(model, benchmark, settings["strategy"], config, device=settings["device"],
                     run_dir=args.run_dir, meta=meta)
    except CheckpointMismatchError as error:
        parser.error(f"--run-dir {args.run_dir}: {error}")
    except (TrainingDivergedError, CheckpointError, RunDirError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        hint = (f"; run the same command again to resume from the last finished task in {args.run_dir}"
                if args.run_dir else "; pass --run-dir DIR to be able to resume")
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED

    hps = ", ".join(f"{k}={v!r}" for k, v in settings["strategy"].hp.items())
    arch = settings["arch"] + (f" {settings['hidden']}" if settings["arch"] == "mlp" and settings["hidden"] else "")
    title = (f"{args.strategy}{f' ({hps})' if hps else ''} on {benchmark.name}, {benchmark.scenario}-incremental, "
             f"profile {args.profile}: {len(benchmark)} tasks x {config.epochs} epoch{'' if config.epochs == 1 else 's'}, {arch}, "
             f"{config.optimizer} lr={config.lr}"
             f"{f' (shared layers x{config.shared_lr_scale:g})' if config.shared_lr_scale != 1 else ''}, "
             f"batch {config.batch_size}, {settings['head']} head, seed {config.seed}, "
             f"device {settings['device']}")
    print(_format_report(result, title))
    if args.json:
        try:
            path = result.save(args.json)
        except OSError as error:  # checked before training, but the disk may fill up or vanish since
            print(f"error: could not save the result to {args.json}: {error}", file=sys.stderr)
            return EXIT_FAILED
        print(f"\nresult saved to {path}")
    return EXIT_OK


# ------------------------------------------------------------------------- run --seeds


def _seed_summary(results, seeds: Sequence[int], how: str) -> str:
    """Each seed's metrics, then their mean and sample standard deviation (n - 1) across seeds."""
    import statistics

    per_seed = [r.metrics() for r in results]
    names = [k for k in ("acc", "bwt", "fwt", "forgetting") if all(k in m for m in per_seed)]
    lines = [f"{len(seeds)} seeds, trained {how}", "",
             "seed  " + "".join(f"{n.upper():>12}" for n in names)]
    for s, m in zip(seeds, per_seed):
        lines.append(f"{s:<6}" + "".join(f"{100 * m[n]:>11.2f}%" for n in names))
    lines.append("")
    for n in names:
        values = [100 * m[n] for m in per_seed]
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        lines.append(f"{n.upper():<11}{statistics.fmean(values):7.2f} % +- {std:.2f} (mean +- std over seeds "
                     f"{', '.join(map(str, seeds))})")
    return "\n".join(lines)


def run_seeds(args, parser, settings) -> int:
    """``run --seeds``: one run per seed (data subsets, permutations, weights and order from that seed),
    stacked in one pass (:mod:`clutils.stacked`) when the strategy and network stack, else one after another."""
    import json

    from .data.named import make_benchmark
    from .models import build_model
    from .stacked import Copy, fit_copies
    from .train import TrainConfig, TrainingDivergedError

    if args.run_dir:
        parser.error("--seeds does not checkpoint: drop --run-dir (or run one --seed at a time with it)")
    seeds = args.seeds
    strategy = settings["strategy"]
    progress = not args.no_progress
    copies = []
    try:
        for s in seeds:
            benchmark = make_benchmark(
                args.benchmark, n_tasks=settings["tasks"], dataset=args.dataset, scenario=args.scenario, seed=s,
                train_per_class=settings["train_per_class"], test_per_class=settings["test_per_class"],
                root=args.root, download=False if args.offline else None)
            model = build_model(benchmark, arch=settings["arch"],
                                **({"hidden": tuple(settings["hidden"])} if settings["hidden"] else {}),
                                expanding_head=settings["head"] == "expanding", seed=s)
            copies.append(Copy(model, benchmark, type(strategy)(**strategy.hp), s,
                               {"benchmark_name": args.benchmark, "dataset": settings["dataset_name"],
                                "profile": args.profile, "arch": settings["arch"], "hidden": settings["hidden"]}))
    except (RuntimeError, OSError, ValueError) as error:
        print(f"error: could not load the data or build the model: {error}", file=sys.stderr)
        return EXIT_FAILED
    config = TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
                         optimizer=settings["optimizer"], momentum=settings["momentum"],
                         shared_lr_scale=settings["shared_lr_scale"],
                         first_task_epochs=settings["first_task_epochs"], first_task_lr=settings["first_task_lr"],
                         reset_optimizer=settings["reset_optimizer"], seed=seeds[0],
                         record_confusion=args.confusion, progress=progress)
    _preflight(parser, strategy, copies[0].model, copies[0].benchmark, config)
    try:
        results, how = fit_copies(copies, config, device=settings["device"],
                                  stack=None if config.shared_lr_scale == 1 else False)
    except TrainingDivergedError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    hps = ", ".join(f"{k}={v!r}" for k, v in strategy.hp.items())
    print(f"{args.strategy}{f' ({hps})' if hps else ''} on {copies[0].benchmark.name}, "
          f"{copies[0].benchmark.scenario}-incremental, profile {args.profile}: {len(copies[0].benchmark)} tasks x "
          f"{config.epochs} epoch(s), {settings['arch']}, device {settings['device']}")
    print(_seed_summary(results, seeds, how))
    if args.json:
        try:
            from .files import atomic_write

            payload = {"seeds": seeds, "how": how, "results": [r.to_dict() for r in results]}
            path = atomic_write(args.json, json.dumps(payload, indent=1).encode())
        except OSError as error:
            print(f"error: could not save the results to {args.json}: {error}", file=sys.stderr)
            return EXIT_FAILED
        print(f"\nresults saved to {path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        list_everything()
        return EXIT_OK
    try:
        return run(args, args.subparser)
    except KeyboardInterrupt:  # while loading data or building the model (training has its own hint)
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
