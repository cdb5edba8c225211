"""The one training loop behind every experiment of the book.

For each task: the strategy's hooks around training; every step minimises
``strategy.loss + strategy.penalty`` (the loss is the cross-entropy unless the strategy
changes it, as iCaRL does); after the task, every task's test set is evaluated with
``strategy.predict`` (the largest logit unless the strategy changes it), tasks not trained
yet too (for forward transfer). Data stays on the device and batches are taken by index. With ``run_dir`` the state is
checkpointed after each task (:mod:`clutils.checkpoint`) and an interrupted run
resumes where it stopped. The loss is read every ``DIVERGENCE_CHECK_EVERY``
steps (one device sync) and a NaN, infinite or exploding loss stops the run.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, differences, locked, read_checkpoint, write_checkpoint
from .data.benchmarks import Benchmark, Task
from .result import Result
from .schedules import PlateauSchedule, split_validation, validation_loss
from .strategies.base import Batch, Step, Strategy, TrainingData

OPTIMIZERS = ("adam", "sgd")
DEVICE_TYPES = ("cpu", "cuda")
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = ("fingerprint", "settings", "model", "optimizer", "strategy", "result", "rng")
DIVERGENCE_CHECK_EVERY = 50  # steps between two reads of the loss (each one device sync)
# A penalty whose gradient the strategy adds itself depends on the weights only: its value, for
# the report, is measured every this many steps (and at an epoch's last step), not at every step.
PENALTY_SAMPLE_EVERY = 10
# A mean cross-entropy this large means logits wrong by thousands: the weights have blown up
# (Adam at lr 1e6 reaches 1e7-1e15 at chance accuracy), not a hard task.
EXPLODING_LOSS = 1e4
# Adam's first step is lr / (1 - beta1) = 10 lr; far below float32's 3.4e38 so that no step overflows.
MAX_LR = 1e30


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite, or exploded past ``EXPLODING_LOSS``."""


class CheckpointMismatchError(ValueError):
    """``run_dir`` holds the checkpoint of a run with other settings."""


@dataclass
class TrainConfig:
    """How each task is trained (the same for every strategy of a comparison).

    ``first_task_epochs`` and ``first_task_lr`` give the first task its own
    schedule (the AR1 paper's Tables 4-5 list the first batch separately);
    ``shared_lr_scale`` trains every parameter outside the model's output
    layers at ``lr * shared_lr_scale`` (a slower body, as in fine-tuning).
    """

    epochs: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    first_task_epochs: int | None = None
    first_task_lr: float | None = None
    shared_lr_scale: float = 1.0
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    # A fresh optimiser state for every task. The SI (pathint) and ALASSO code keep Adam's state
    # across permuted-MNIST tasks (the ALASSO presets: False); a strategy that restarts the model
    # (separate, joint from scratch) always gets a fresh one.
    reset_optimizer: bool = True
    eval_batch_size: int = 2048
    seed: int = 0
    record_confusion: bool = False
    progress: bool = True
    # The validation schedule of the HAT authors' code (clutils.schedules), off when lr_patience is None:
    # validation_fraction of each task's training data held out; lr / lr_factor after lr_patience epochs
    # without a lower validation loss; the task stops when the lr falls below lr_min (``epochs`` is then
    # the most epochs); the best epoch's weights are put back at the end of the task.
    lr_patience: int | None = None
    lr_factor: float = 3.0
    lr_min: float = 1e-4
    validation_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "first_task_epochs"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        for name in ("lr", "first_task_lr"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= MAX_LR:
                raise ValueError(f"{name} must be positive and at most {MAX_LR:g}, got {value}")
        if not self.shared_lr_scale >= 0:
            raise ValueError(f"shared_lr_scale must be zero or positive, got {self.shared_lr_scale}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.lr_patience is not None:
            PlateauSchedule(self.lr, self.lr_patience, self.lr_factor, self.lr_min)  # checks the values
            if not 0 < self.validation_fraction < 1:
                raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")

    def epochs_of(self, task_index: int) -> int:
        return self.first_task_epochs if task_index == 0 and self.first_task_epochs else self.epochs

    def lr_of(self, task_index: int) -> float:
        return self.first_task_lr if task_index == 0 and self.first_task_lr else self.lr


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is CUDA when available, else the CPU; only ``cpu`` and ``cuda[:N]`` are supported.

    A device PyTorch knows but the loop does not support (``mps``, ``meta``, ...) is a
    ``ValueError``; CUDA without a GPU, or a GPU index past the last, a ``RuntimeError``.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type not in DEVICE_TYPES:
        raise ValueError(f"device {str(device)!r} is not supported; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but PyTorch sees no CUDA GPU; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {str(device)!r} was requested but PyTorch sees {torch.cuda.device_count()} GPU(s)")
    return device


def make_optimizer(model: torch.nn.Module, config: TrainConfig, task_index: int = 0) -> torch.optim.Optimizer:
    """The optimiser for ``task_index``: one parameter group, or the shared layers and the output layers."""
    params = [p for p in model.parameters() if p.requires_grad]
    lr = config.lr_of(task_index)
    groups: list[dict[str, Any]] = [{"params": params, "lr_scale": 1.0}]
    if config.shared_lr_scale != 1.0:
        if not hasattr(model, "output_layers"):
            raise ValueError("shared_lr_scale needs a model with output_layers() (clutils.models.ContinualModel)")
        head = {id(p) for layer in model.output_layers() for p in layer.parameters()}
        groups = [{"params": [p for p in params if id(p) not in head], "lr_scale": config.shared_lr_scale},
                  {"params": [p for p in params if id(p) in head], "lr_scale": 1.0}]
    groups = [g for g in groups if g["params"]] or groups[:1]  # CWR freezes the body after batch 1
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


def set_task_lr(optimizer: torch.optim.Optimizer, config: TrainConfig, task_index: int) -> None:
    """Learning rates of ``task_index`` on an optimiser kept across tasks (``reset_optimizer=False``)."""
    for group in optimizer.param_groups:
        group["lr"] = config.lr_of(task_index) * group.get("lr_scale", 1.0)


def _task_argument(benchmark: Benchmark, task: Task) -> int | None:
    return task.index if benchmark.scenario == "task" else None


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, task: int | None, batch_size: int,
            strategy: Strategy | None = None) -> torch.Tensor:
    """Predicted labels for ``x`` in batches (the strategy's ``predict``; default: the largest logit)."""
    if strategy is None:
        return torch.cat([model(x[i:i + batch_size], task).argmax(1) for i in range(0, len(x), batch_size)])
    return torch.cat([strategy.predict(model, x[i:i + batch_size], task) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def evaluate(model: torch.nn.Module, benchmark: Benchmark, strategy: Strategy, batch_size: int = 2048,
             confusion: bool = False) -> tuple[list[float], list[list[int]] | None]:
    """Accuracy on every task's test set, and optionally the pooled confusion matrix."""
    was_training = model.training
    model.eval()
    strategy.before_eval(model)
    accuracies = []
    C = benchmark.n_classes
    matrix = None
    for task in benchmark.tasks:
        strategy.before_eval_task(model, task)
        pred = predict(model, task.test.x, _task_argument(benchmark, task), batch_size, strategy)
        accuracies.append((pred == task.test.y).float().mean().item())
        if confusion:
            true = benchmark.to_dataset_labels(task, task.test.y)
            guess = benchmark.to_dataset_labels(task, pred)
            counts = torch.bincount(true * C + guess, minlength=C * C)
            matrix = counts if matrix is None else matrix + counts
    strategy.after_eval(model)
    model.train(was_training)
    return accuracies, (matrix.reshape(C, C).tolist() if confusion else None)


def _shuffle_seed(seed: int, task: int, epoch: int) -> int:
    return (seed * 1_000_003 + task * 1_009 + epoch) % (2 ** 63)


def _check_loss(task_loss: float, mean_loss: float, strategy: Strategy, config: TrainConfig, task: Task,
                epoch: int, step: int, steps: int) -> None:
    """Raise :class:`TrainingDivergedError` if a loss is NaN or infinite, or the task loss exploded.

    ``task_loss``: the mean cross-entropy since the last check; ``mean_loss``: the epoch's mean
    loss so far, penalty included.
    """
    finite = math.isfinite(task_loss) and math.isfinite(mean_loss)
    if finite and task_loss <= EXPLODING_LOSS:
        return
    what = (f"exploded to {task_loss:.3g} (a mean cross-entropy above {EXPLODING_LOSS:g})" if finite
            else f"became {task_loss if not math.isfinite(task_loss) else mean_loss}")
    raise TrainingDivergedError(
        f"the loss {what} in task {task.index + 1}, epoch {epoch + 1}, step {step} of {steps} "
        f"({strategy!r}, {config.optimizer} lr={config.lr_of(task.index)}). The likely cause is a learning rate "
        "too large or, for a regularising strategy, a strength too large for the learning rate "
        "(the penalty's step lr * strength * importance overshoots; Maltoni and Lomonaco warn of "
        "this for EWC): lower the strength or the learning rate."
    )


def train_task(model: torch.nn.Module, benchmark: Benchmark, task: Task, data: TrainingData,
               strategy: Strategy, optimizer: torch.optim.Optimizer,
               config: TrainConfig) -> tuple[list[float], list[float]]:
    """Train ``task`` for ``config.epochs_of(task.index)`` epochs.

    Each step trains on the strategy's ``extend_batch`` of the current batch (replay appends
    its samples; the task loss is the strategy's ``loss``, by default the cross-entropy over all
    of them) and shows the strategy the current batch with its logits afterwards (``observe``).

    Returns the mean task loss (the strategy's ``loss``, cross-entropy by default) of each epoch
    and, apart, the mean penalty of each epoch, the same for every strategy. A strategy that adds
    its penalty's gradient itself (``applies_penalty_gradient``) has the penalty's value measured without a graph every
    ``PENALTY_SAMPLE_EVERY`` steps and at the epoch's last step (its epoch mean is over those steps).

    With ``config.lr_patience`` the validation schedule (:mod:`clutils.schedules`) holds part of
    ``data`` out, may stop before ``epochs`` and puts the best epoch's weights back.
    """
    fixed_task = _task_argument(benchmark, task)
    schedule = validation = val_task = None
    if config.lr_patience is not None:
        schedule = PlateauSchedule(optimizer.param_groups[-1]["lr"], config.lr_patience, config.lr_factor, config.lr_min)
        train, validation, train_ids, val_ids = split_validation(
            data.data, config.validation_fraction, _shuffle_seed(config.seed, task.index, -1), data.task_ids)
        data = TrainingData(train, train_ids)
        val_task = val_ids if val_ids is not None and fixed_task is not None else fixed_task
    x, y, ids = data.data.x, data.data.y, data.task_ids
    n = len(y)
    if n == 0:
        raise ValueError(f"task {task.index + 1} has no training samples")
    steps = math.ceil(n / config.batch_size)
    losses, penalties = [], []
    model.train()
    epochs = config.epochs_of(task.index)
    bar = tqdm(total=epochs * steps, disable=not config.progress, leave=False,
               desc=f"task {task.index + 1}/{len(benchmark)}", unit="step")
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(_shuffle_seed(config.seed, task.index, epoch))
        order = torch.randperm(n, generator=generator).to(y.device)
        loss_sum = torch.zeros((), device=y.device)  # task loss
        penalty_sum = torch.zeros((), device=y.device)
        penalty_seen = 0  # samples whose step's penalty was measured
        window = torch.zeros((), device=y.device)  # task loss summed since the last check
        correct = torch.zeros((), device=y.device, dtype=torch.int64)
        for step, start in enumerate(range(0, n, config.batch_size), 1):
            index = order[start:start + config.batch_size]
            xb, yb = x[index], y[index]
            tb = ids[index] if ids is not None and fixed_task is not None else fixed_task
            strategy.before_step(model, Step(task.index, epoch, epochs, step, steps))
            xt, yt, tt = strategy.extend_batch(xb, yb, tb)
            logits = model(xt, tt)
            loss = strategy.loss(model, Batch(xt, yt, tt, logits))  # default: F.cross_entropy(logits, yt)
            penalty = reported = None
            if strategy.applies_penalty_gradient:
                if step % PENALTY_SAMPLE_EVERY == 0 or step == steps:
                    with torch.no_grad():  # the value only, for the report
                        reported = strategy.penalty(model, Batch(xt, yt, tt, logits.detach()))
                    penalty_seen += len(yb)
            else:
                penalty_seen += len(yb)
                penalty = reported = strategy.penalty(model, Batch(xt, yt, tt, logits))
            optimizer.zero_grad(set_to_none=True)
            if strategy.needs_task_gradient:
                loss.backward()
                strategy.after_task_backward(model)
                if penalty is not None:
                    penalty.backward()  # accumulates into .grad: the penalty's own graph
            else:
                (loss if penalty is None else loss + penalty).backward()
            strategy.after_backward(model)
            optimizer.step()
            strategy.after_step(model)
            current = logits.detach()[:len(yb)]
            strategy.observe(model, Batch(xb, yb, tb, current))
            loss_sum += loss.detach() * len(yb)
            if reported is not None:
                penalty_sum += reported.detach() * len(yb)
            window += loss.detach()
            correct += (current.argmax(1) == yb).sum()
            bar.update(1)
            if step % DIVERGENCE_CHECK_EVERY == 0 or step == steps:
                window_sum, seen_sum, p_sum = torch.stack([window, loss_sum, penalty_sum]).tolist()
                mean_penalty = p_sum / penalty_seen if penalty_seen else 0.0
                window_steps = (step - 1) % DIVERGENCE_CHECK_EVERY + 1
                try:
                    _check_loss(window_sum / window_steps, seen_sum / min(n, start + len(yb)) + mean_penalty,
                                strategy, config, task, epoch, step, steps)
                except TrainingDivergedError:
                    bar.close()
                    raise
                window.zero_()
        mean_loss = seen_sum / n
        losses.append(mean_loss)
        penalties.append(mean_penalty)
        bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{mean_loss:.3f}", penalty=f"{mean_penalty:.3g}",
                        acc=f"{correct.item() / n:.3f}")
        if schedule is not None and not schedule.after_epoch(
                model, validation_loss(model, strategy, validation, val_task, config.eval_batch_size), optimizer):
            break
    if schedule is not None:
        schedule.restore(model)
    bar.close()
    return losses, penalties


def _plain(value: Any) -> Any:
    """``value`` as JSON would store it (tuples as lists, other objects as text)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _fingerprint(settings: Any) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def fit(model: torch.nn.Module, benchmark: Benchmark, strategy: Strategy, config: TrainConfig | None = None,
        *, device: str | torch.device = "auto", run_dir: str | Path | None = None,
        meta: dict[str, Any] | None = None) -> Result:
    """Train ``model`` on every task of ``benchmark`` in turn with ``strategy``.

    Returns a :class:`Result`; with ``run_dir`` the run checkpoints after each
    task and, started again with the same arguments, resumes after the last
    finished task; the directory is locked for the run (:class:`RunDirInUseError`
    if another process holds it). ``meta`` (e.g. the model's architecture) is stored in the config.
    """
    if run_dir is None:
        return _fit(model, benchmark, strategy, config, device, None, meta)
    with locked(Path(run_dir)):
        return _fit(model, benchmark, strategy, config, device, Path(run_dir), meta)


def _fit(model, benchmark: Benchmark, strategy: Strategy, config: TrainConfig | None, device,
         run_dir: Path | None, meta: dict[str, Any] | None) -> Result:
    config = config or TrainConfig()
    device = resolve_device(device)
    benchmark = benchmark.to(device)
    model.to(device)
    torch.manual_seed(config.seed)  # dropout and any other randomness of the steps
    strategy.setup(model, benchmark)
    result = Result(
        config={**asdict(config), "device": str(device), **(meta or {})},
        benchmark=benchmark.describe(),
        strategy={"name": strategy.name, "hyperparameters": dict(strategy.hp)},
    )
    optimizer = make_optimizer(model, config)
    checkpoint = run_dir / CHECKPOINT if run_dir is not None else None
    settings = _plain({"config": {k: v for k, v in result.config.items() if k != "progress"},
                       "benchmark": result.benchmark, "strategy": result.strategy})
    if checkpoint is not None and checkpoint.exists():
        # A fresh optimiser per task (or a restarted model) makes the saved optimiser state unused, and a
        # growing network (PNN's new column) would not fit it: it is then not loaded.
        result = _resume(checkpoint, settings, model, optimizer, strategy, device,
                         load_optimizer=not (config.reset_optimizer or strategy.restarts_model))
    else:
        result.initial_accuracy, _ = evaluate(model, benchmark, strategy, config.eval_batch_size)

    tasks = tqdm(benchmark.tasks[result.tasks_done:], disable=not config.progress,
                 desc=f"{strategy.name} on {benchmark.name}", unit="task",
                 initial=result.tasks_done, total=len(benchmark))
    for task in tasks:
        started = time.perf_counter()
        model.prepare_task(task.classes, benchmark.scenario)
        strategy.before_task(model, task)
        if (config.reset_optimizer or strategy.restarts_model) and task.index > 0:
            optimizer = make_optimizer(model, config, task.index)
        else:
            set_task_lr(optimizer, config, task.index)
        data = strategy.training_data(task)
        losses, penalties = train_task(model, benchmark, task, data, strategy, optimizer, config)
        result.epoch_losses.append(losses)
        result.epoch_penalties.append(penalties)
        strategy.after_task(model, task, data)
        trained = time.perf_counter()
        row, matrix = evaluate(model, benchmark, strategy, config.eval_batch_size, config.record_confusion)
        result.accuracy_matrix.append(row)
        if matrix is not None:
            result.confusion.append(matrix)
        result.timings["train_seconds"].append(trained - started)
        result.timings["eval_seconds"].append(time.perf_counter() - trained)
        tasks.set_postfix(acc=f"{sum(row[: task.index + 1]) / (task.index + 1):.3f}")
        if checkpoint is not None:
            _save(checkpoint, settings, model, optimizer, strategy, result)
    tasks.close()
    return result


def _save(path: Path, settings: dict[str, Any], model, optimizer, strategy: Strategy, result: Result) -> None:
    state = {
        "fingerprint": _fingerprint(settings),
        "settings": settings,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "strategy": strategy.state_dict(),
        "result": result.to_dict(),
        "rng": torch.get_rng_state(),
    }
    write_checkpoint(path, state)
    result.save(path.parent / "result.json")


def _resume(path: Path, settings: dict[str, Any], model, optimizer, strategy: Strategy, device,
            load_optimizer: bool = True) -> Result:
    state = read_checkpoint(path, device, CHECKPOINT_KEYS)
    if state["fingerprint"] != _fingerprint(settings):
        changed = differences(state["settings"], settings) or ["(settings stored in another form)"]
        raise CheckpointMismatchError(
            f"{path} belongs to a run with other settings: {'; '.join(changed)}. Use another run directory, "
            "or delete it to start afresh"
        )
    try:
        model.load_state_dict(state["model"])
        if load_optimizer:
            optimizer.load_state_dict(state["optimizer"])
        strategy.load_state_dict(state["strategy"])
        torch.set_rng_state(state["rng"].cpu())
        return Result.from_dict(state["result"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(path, f"does not fit this run ({type(error).__name__}: {error})") from None
