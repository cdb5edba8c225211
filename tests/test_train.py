"""The training loop: determinism, resuming, the NaN guard, confusion matrices, results, baselines.

Everything runs on the CPU on scikit-learn's ``digits`` with tiny MLPs.
"""
from __future__ import annotations

import json

import pytest
import torch

from clutils.checkpoint import read_checkpoint
from clutils.data.named import make_benchmark
from clutils.models import build_model
from clutils.result import Result
from clutils.strategies import make
from clutils.strategies.si import SI
from clutils.train import (CHECKPOINT, CheckpointMismatchError, TrainConfig, TrainingDivergedError,
                           fit, make_optimizer, resolve_device, set_task_lr)

CONFIG = dict(epochs=2, batch_size=64, lr=1e-3, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def permuted3():
    """Three permuted-digits tasks of 300 training and 100 test images."""
    return make_benchmark("permuted-mnist", n_tasks=3, dataset="digits", train_per_class=30, test_per_class=10)


@pytest.fixture(scope="module")
def split_class():
    """Split digits, class-incremental: five tasks of two classes, one head of ten."""
    return make_benchmark("split-mnist", dataset="digits", scenario="class", train_per_class=40, test_per_class=15)


@pytest.fixture(scope="module")
def split_task():
    return make_benchmark("split-mnist", dataset="digits", train_per_class=30, test_per_class=10)


def run(benchmark, strategy, run_dir=None, seed=0, dropout=0.2, **config):
    model = build_model(benchmark, hidden=(32,), dropout=dropout, seed=seed)
    return fit(model, benchmark, strategy, TrainConfig(seed=seed, **{**CONFIG, **config}),
               device="cpu", run_dir=run_dir)


# --------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", ["naive", "si"])
def test_same_seed_same_matrix_bit_for_bit(permuted3, name):
    a = run(permuted3, make(name))
    b = run(permuted3, make(name))
    assert a.accuracy_matrix == b.accuracy_matrix  # exact float equality
    assert a.epoch_losses == b.epoch_losses
    assert a.initial_accuracy == b.initial_accuracy
    c = run(permuted3, make(name), seed=1)
    assert c.epoch_losses != a.epoch_losses
    assert len(a.accuracy_matrix) == 3 and all(len(row) == 3 for row in a.accuracy_matrix)
    assert all(0.0 <= v <= 1.0 for row in a.accuracy_matrix for v in row)


# ------------------------------------------------------------------------- resume


class InterruptedSI(SI):
    """SI that is interrupted (like Ctrl-C) at its third step of task ``at_task`` (0-based)."""

    def __init__(self, at_task: int, **hp):
        super().__init__(**hp)
        self.at_task = at_task

    def before_task(self, model, task):
        super().before_task(model, task)
        self.current, self.steps = task.index, 0

    def after_step(self, model):
        super().after_step(model)
        self.steps += 1
        if self.current == self.at_task and self.steps == 3:
            raise KeyboardInterrupt


class CountingSI(SI):
    """SI that records which tasks it trains."""

    def __init__(self, **hp):
        super().__init__(**hp)
        self.trained = []

    def before_task(self, model, task):
        super().before_task(model, task)
        self.trained.append(task.index)


def test_resume_after_an_interruption_matches_an_uninterrupted_run(permuted3, tmp_path):
    reference = run(permuted3, make("si", c=0.5))

    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(permuted3, InterruptedSI(at_task=1, c=0.5), run_dir=run_dir)  # during task 2 of 3
    saved = Result.load(run_dir / "result.json")
    assert saved.tasks_done == 1
    assert saved.accuracy_matrix == reference.accuracy_matrix[:1]
    # the checkpoint holds tensors and plain values only (read_checkpoint loads with weights_only=True)
    state = read_checkpoint(run_dir / CHECKPOINT, "cpu")
    assert state["result"]["accuracy_matrix"] == reference.accuracy_matrix[:1]
    assert any(key.startswith("importance.") for key in state["strategy"])

    again = CountingSI(c=0.5)
    resumed = run(permuted3, again, run_dir=run_dir)
    assert again.trained == [1, 2]  # resumed after task 1
    assert resumed.accuracy_matrix == reference.accuracy_matrix  # bit for bit
    assert resumed.initial_accuracy == reference.initial_accuracy
    assert resumed.epoch_losses == reference.epoch_losses
    assert Result.load(run_dir / "result.json").accuracy_matrix == reference.accuracy_matrix

    # a finished run is not trained again
    done = CountingSI(c=0.5)
    assert run(permuted3, done, run_dir=run_dir).accuracy_matrix == reference.accuracy_matrix
    assert done.trained == []


@pytest.mark.parametrize("change", [
    {"lr": 2e-3},
    {"strategy": {"c": 0.2}},
    {"epochs": 1},
    {"seed": 1},
])
def test_resume_refuses_a_run_dir_with_other_settings(permuted3, tmp_path, change):
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(permuted3, InterruptedSI(at_task=1, c=0.5), run_dir=run_dir)
    hp = {"c": 0.5, **change.get("strategy", {})}
    config = {k: v for k, v in change.items() if k != "strategy"}
    with pytest.raises(CheckpointMismatchError, match="other settings") as info:
        run(permuted3, make("si", **hp), run_dir=run_dir, **config)
    assert str(run_dir) in str(info.value)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------- NaN guard


def test_huge_learning_rate_is_reported_with_task_and_epoch(permuted3):
    with pytest.raises(TrainingDivergedError, match=r"task 1, epoch 1"):
        run(permuted3, make("naive"), optimizer="sgd", lr=1e12, epochs=1)


def test_absurd_penalty_is_reported_with_task_and_epoch(permuted3):
    # SI's penalty only starts with task 2; c = 1e40 overflows float32.
    with pytest.raises(TrainingDivergedError, match=r"task 2, epoch 1") as info:
        run(permuted3, make("si", c=1e40), epochs=1)
    assert "strength" in str(info.value) and "c=1e+40" in str(info.value)


# ---------------------------------------------------------------------- confusion


@pytest.mark.parametrize("fixture", ["split_class", "split_task", "permuted3"])
def test_confusion_matrices_count_every_test_sample(request, fixture):
    bench = request.getfixturevalue(fixture)
    result = run(bench, make("naive"), epochs=1, record_confusion=True)
    T, C = len(bench), bench.n_classes
    matrices = result.confusion_matrices()
    assert matrices.shape == (T, C, C)
    sizes = [len(t.test) for t in bench.tasks]
    per_class = torch.zeros(C, dtype=torch.int64)
    for task in bench.tasks:
        per_class += torch.bincount(bench.to_dataset_labels(task, task.test.y), minlength=C)
    for i in range(T):
        assert matrices[i].sum() == sum(sizes)  # every test sample of every task, once
        assert matrices[i].sum(axis=1).tolist() == per_class.tolist()  # rows: true classes
        # the diagonal is the number of correct answers the accuracy matrix implies
        correct = sum(a * n for a, n in zip(result.accuracy_matrix[i], sizes))
        assert matrices[i].trace() == pytest.approx(correct, abs=1e-3)
    assert run(bench, make("naive"), epochs=1).confusion == []


# ------------------------------------------------------------------------ results


def test_result_json_round_trip(split_task, tmp_path):
    result = run(split_task, make("si"), epochs=1, record_confusion=True)
    path = result.save(tmp_path / "out" / "result.json")
    data = json.loads(path.read_text())
    assert set(data["metrics"]) == {"acc", "bwt", "fwt", "forgetting"}
    assert data["config"]["epochs"] == 1 and data["strategy"]["name"] == "si"
    assert data["strategy"]["hyperparameters"] == {"c": 0.1, "xi": 0.1, "omega_relu": "sum"}
    loaded = Result.load(path)
    assert loaded.to_dict() == result.to_dict()
    assert loaded.accuracy_matrix == result.accuracy_matrix
    assert loaded.confusion == result.confusion
    assert loaded.metrics() == result.metrics()


# ---------------------------------------------------------------------- baselines


def test_separate_never_changes_a_finished_task(split_task):
    result = run(split_task, make("separate"))
    R = result.accuracy_matrix
    for i in range(len(R)):
        for j in range(len(R)):
            if j < i:
                assert R[i][j] == R[j][j]  # its own weights, untouched since
            elif j > i:
                assert R[i][j] == result.initial_accuracy[j]  # still the untrained weights
    assert result.metrics()["bwt"] == 0.0 and result.metrics()["forgetting"] == 0.0


def test_joint_trains_on_everything_seen_and_beats_naive(split_class):
    joint = make("joint")
    model = build_model(split_class, hidden=(32,), seed=0)
    joint.setup(model, split_class)
    sizes = [len(joint.training_data(t).data) for t in split_class.tasks]
    assert sizes == [sum(len(t.train) for t in split_class.tasks[: i + 1]) for i in range(len(split_class))]
    ids = joint.training_data(split_class.tasks[2]).task_ids
    assert torch.bincount(ids).tolist() == [len(t.train) for t in split_class.tasks[:3]]

    settings = dict(epochs=3, batch_size=32, dropout=0.0)
    naive = run(split_class, make("naive"), **settings)
    together = run(split_class, make("joint"), **settings)
    # class-incremental: naive forgets the earlier classes, joint training keeps them
    assert naive.metrics()["acc"] < 0.4
    assert together.metrics()["acc"] > naive.metrics()["acc"] + 0.3


def test_joint_with_multi_head_uses_each_samples_task(split_task):
    result = run(split_task, make("joint"), epochs=1)
    R = result.accuracy_matrix
    assert len(R) == 5 and all(0.0 <= v <= 1.0 for row in R for v in row)


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": -1}, {"lr": 0.0}, {"optimizer": "rmsprop"},
                                 {"first_task_epochs": 0}, {"first_task_lr": -1.0}, {"shared_lr_scale": -0.5}])
def test_train_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_shared_lr_scale_zero_trains_only_the_output_layer(split_class, optimizer):
    model = build_model(split_class, hidden=(16,), seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    head = {f"head.linear.{k}" for k in ("weight", "bias")}
    config = TrainConfig(epochs=1, batch_size=64, lr=1e-2, optimizer=optimizer, shared_lr_scale=0.0, progress=False)
    fit(model, split_class, make("naive"), config, device="cpu")
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) != (n in head), n


def test_first_task_epochs_and_lr_apply_to_the_first_task_only(permuted3):
    config = dict(epochs=1, first_task_epochs=3, first_task_lr=5e-3)
    result = run(permuted3, make("naive"), reset_optimizer=False, **config)
    assert [len(losses) for losses in result.epoch_losses] == [3, 1, 1]
    # the same run where task 1's lr is the later tasks' one differs: the first lr was used
    other = run(permuted3, make("naive"), reset_optimizer=False, epochs=1, first_task_epochs=3)
    assert result.epoch_losses[0] != other.epoch_losses[0]
    model = build_model(permuted3, hidden=(8,), seed=0)
    optimizer = make_optimizer(model, TrainConfig(shared_lr_scale=0.1, **config), 0)
    assert sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([5e-4, 5e-3])
    set_task_lr(optimizer, TrainConfig(shared_lr_scale=0.1, **config), 1)
    assert sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([1e-4, 1e-3])


def test_cuda_without_a_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="cuda"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


# ----------------------------------------------------------------- losses and optimiser state (issue 9)


@pytest.mark.parametrize("name", ["lwf", "si", "ewc", "alasso"])
def test_task_loss_and_penalty_are_reported_apart_for_every_strategy(split_task, name):
    result = run(split_task, make(name), epochs=2, dropout=0.0, batch_size=16)
    assert [len(p) for p in result.epoch_penalties] == [2] * len(split_task)
    assert result.epoch_penalties[0] == [0.0, 0.0]  # nothing to protect while training the first task
    assert all(p > 0 for epochs in result.epoch_penalties[1:] for p in epochs)
    naive = run(split_task, make("naive"), epochs=2, dropout=0.0, batch_size=16)
    assert result.epoch_losses[0] == pytest.approx(naive.epoch_losses[0])


def test_a_strategy_that_restarts_the_model_restarts_the_optimiser(split_task):
    kept = run(split_task, make("separate"), epochs=2, dropout=0.0, optimizer="adam", reset_optimizer=False)
    fresh = run(split_task, make("separate"), epochs=2, dropout=0.0, optimizer="adam", reset_optimizer=True)
    # each task's model starts from the initial weights *and* a fresh Adam state
    assert kept.accuracy_matrix == fresh.accuracy_matrix
    assert kept.epoch_losses == fresh.epoch_losses


# --------------------------------------------------------------------- step hooks


class _Recorder(make("naive").__class__):
    """Naive training that replays the first batch it saw, and records what the loop tells it."""

    name = "recorder"

    def __init__(self):
        super().__init__()
        self.steps, self.trained_sizes, self.observed = [], [], []
        self.kept = None

    def before_step(self, model, step):
        self.steps.append(step)

    def extend_batch(self, x, y, task):
        if self.kept is None:
            return x, y, task
        return torch.cat([x, self.kept[0]]), torch.cat([y, self.kept[1]]), task

    def penalty(self, model, batch):
        self.trained_sizes.append(len(batch.y))
        return None

    def observe(self, model, batch):
        if self.kept is None:
            self.kept = (batch.x[:5].clone(), batch.y[:5].clone())
        self.observed.append((len(batch.y), batch.logits.shape, batch.x.shape[0]))


def test_the_loop_reports_each_step_and_trains_on_the_extended_batch(split_task):
    recorder = _Recorder()
    run(split_task, recorder, batch_size=16, epochs=2)
    n = len(split_task.tasks[0].train.y)
    steps = -(-n // 16)
    first_task = [s for s in recorder.steps if s.task == 0]
    assert len(first_task) == 2 * steps
    assert [s.step for s in first_task[:steps]] == list(range(1, steps + 1))
    assert {s.steps for s in first_task} == {steps} and {s.epochs for s in first_task} == {2}
    assert [s.epoch for s in first_task] == [0] * steps + [1] * steps
    assert len(recorder.steps) == len(split_task) * 2 * steps
    # The first step trains on its batch alone; every later one on its batch plus the 5 kept samples.
    assert recorder.trained_sizes[0] == 16 and recorder.trained_sizes[1] == 16 + 5
    # observe sees the current batch only, with one row of logits per current sample.
    assert all(size == rows[0] == xs for size, rows, xs in recorder.observed)
    assert recorder.observed[1][0] == 16
