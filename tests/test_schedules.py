"""The validation lr schedule (clutils.schedules) alone and inside the loop, on tiny data."""
from __future__ import annotations

import pytest
import torch

from clutils import train as train_module
from clutils.data.named import make_benchmark
from clutils.data.tensors import TensorData
from clutils.models import build_model
from clutils.schedules import PlateauSchedule, split_validation
from clutils.strategies.base import Strategy
from clutils.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_lr_drops_after_patience_epochs_without_improvement():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    schedule = PlateauSchedule(0.05, patience=3, factor=3.0, min_lr=1e-4)
    assert schedule.after_epoch(model, 1.0, optimizer)
    for _ in range(2):  # two epochs without improvement: patience not yet spent
        assert schedule.after_epoch(model, 1.0, optimizer)
        assert optimizer.param_groups[0]["lr"] == 0.05
    assert schedule.after_epoch(model, 1.5, optimizer)  # the third: lr / 3
    assert schedule.lr == pytest.approx(0.05 / 3) and optimizer.param_groups[0]["lr"] == pytest.approx(0.05 / 3)
    assert schedule.after_epoch(model, 0.5, optimizer)  # an improvement resets the patience
    assert schedule.wait == 3 and schedule.best_epoch == 4


def test_training_stops_when_the_lr_falls_below_the_floor():
    model = tiny_model()
    schedule = PlateauSchedule(1e-3, patience=2, factor=3.0, min_lr=1e-4)
    epochs = 0
    while schedule.after_epoch(model, 1.0):
        epochs += 1
        assert epochs < 100
    # best at epoch 1; 1e-3 -> 3.3e-4 -> 1.1e-4 -> (3.7e-5 < 1e-4): stop, after 1 + 3 x patience epochs
    assert epochs + 1 == 1 + 3 * 2 and schedule.stopped and schedule.lr == pytest.approx(1e-3 / 9)


def test_best_weights_and_buffers_are_restored_bit_identically():
    model = tiny_model()
    model(torch.randn(8, 3))  # BN running statistics move
    schedule = PlateauSchedule(0.1, patience=5)
    schedule.after_epoch(model, 0.3)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model(torch.randn(8, 3) + 5)
    schedule.after_epoch(model, 0.4)
    assert not torch.equal(model.state_dict()["1.running_mean"], best["1.running_mean"])
    schedule.restore(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k]), k


def test_split_validation_is_stratified_disjoint_and_complete():
    y = torch.arange(5).repeat_interleave(20)
    x = torch.arange(100.0)[:, None]
    train, val, _, _ = split_validation(TensorData(x, y), 0.1, seed=0)
    assert len(val) == 10 and len(train) == 90
    assert torch.bincount(val.y).tolist() == [2] * 5
    seen = torch.cat([train.x, val.x]).flatten().sort().values
    assert torch.equal(seen, x.flatten())
    with pytest.raises(ValueError, match="validation_fraction"):
        split_validation(TensorData(x, y), 1.0, seed=0)


def test_config_checks_the_schedule_values():
    with pytest.raises(ValueError, match="lr_patience"):
        TrainConfig(lr_patience=0)
    with pytest.raises(ValueError, match="lr_factor"):
        TrainConfig(lr_patience=5, lr_factor=1.0)
    with pytest.raises(ValueError, match="validation_fraction"):
        TrainConfig(lr_patience=5, validation_fraction=0.0)


class SeenRows(Strategy):
    """Remembers every training input it is shown."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def observe(self, model, batch):
        self.rows.append(batch.x.detach().clone())


def test_the_loop_holds_validation_out_stops_and_restores_the_best_epoch(monkeypatch):
    bench = make_benchmark("split-mnist", dataset="digits", n_tasks=2, train_per_class=30, test_per_class=10)
    # scripted validation losses: best at the second epoch, then none better; each call snapshots the weights
    scripted = iter([1.0, 0.5] + [0.9] * 50)
    calls = []

    def fake_loss(model, strategy, data, task, batch_size):
        calls.append(({k: v.clone() for k, v in model.state_dict().items()}, data))
        return next(scripted)

    monkeypatch.setattr(train_module, "validation_loss", fake_loss)
    strategy = SeenRows()
    model = build_model(bench, hidden=(16,), seed=0)
    config = TrainConfig(epochs=40, batch_size=32, lr=0.05, optimizer="sgd", progress=False,
                         lr_patience=2, lr_factor=10.0, lr_min=1e-3)
    bench.tasks = bench.tasks[:1]
    fit(model, bench, strategy, config, device="cpu")
    # 0.05 -> 5e-3 -> (5e-4 < 1e-3) stop: 2 epochs then 2 x patience without improvement
    assert len(calls) == 2 + 2 * 2
    best_state, validation = calls[1]
    for k, v in model.state_dict().items():
        assert torch.equal(v, best_state[k]), k
    n, classes = len(bench.tasks[0].train), len(bench.tasks[0].classes)
    assert len(validation) == classes * 3  # 10% of the 30 images of each class
    trained = torch.cat(strategy.rows).flatten(1)
    assert len(trained) == len(calls) * (n - len(validation))
    matches = (trained[None, :, :] == validation.x.flatten(1)[:, None, :]).all(-1)
    assert not matches.any(), "a validation image was trained on"


def test_without_the_schedule_the_loop_trains_every_epoch_on_every_sample():
    bench = make_benchmark("split-mnist", dataset="digits", n_tasks=1, train_per_class=10, test_per_class=5)
    strategy = SeenRows()
    result = fit(build_model(bench, hidden=(8,), seed=0), bench, strategy,
                 TrainConfig(epochs=3, batch_size=8, progress=False), device="cpu")
    assert len(result.epoch_losses[0]) == 3 and len(torch.cat(strategy.rows)) == 3 * len(bench.tasks[0].train)
