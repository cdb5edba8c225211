"""DEN (clutils.strategies.den, clutils.models_den): the formulas and each phase on tiny nets."""
from __future__ import annotations

import pytest
import torch

from clutils.data.named import make_benchmark
from clutils.models import build_model
from clutils.models_den import CapacityError, DENMLP
from clutils.strategies import make
from clutils.strategies.den import (dead_units, drift, needs_expansion, prox_group_lasso, prox_l1,
                                    select_subnetwork, units_to_split)
from clutils.strategies.l2 import L2
from clutils.train import TrainConfig, fit


@pytest.fixture(scope="module")
def bench():
    return make_benchmark("split-mnist", dataset="digits", scenario="task", n_tasks=3, classes_per_task=2, train_per_class=40,
                          test_per_class=10)


def test_prox_l1_is_soft_thresholding():
    w = torch.tensor([-0.3, -0.05, 0.0, 0.02, 0.5])
    out = prox_l1(w, 0.1)
    # closed form: argmin_v 0.1 |v| + (v - w)^2 / 2
    assert torch.allclose(out, torch.tensor([-0.2, 0.0, 0.0, 0.0, 0.4]))
    grid = torch.linspace(-1, 1, 20001)
    for wi, oi in zip(w, out):
        best = grid[torch.argmin(0.1 * grid.abs() + (grid - wi) ** 2 / 2)]
        assert abs(best - oi) < 1e-3


def test_prox_group_lasso_shrinks_rows_and_zeroes_small_ones():
    w = torch.tensor([[3.0, 4.0], [0.03, 0.04], [0.0, 0.0]])
    out = prox_group_lasso(w, 1.0)
    # row 1: norm 5 -> 4, same direction; row 2: norm 0.05 <= 1 -> 0; row 3 stays 0
    assert torch.allclose(out[0], torch.tensor([2.4, 3.2]))
    assert torch.equal(out[1:], torch.zeros(2, 2))
    assert torch.isclose(out[0].norm(), torch.tensor(4.0))


def test_breadth_first_selection_picks_exactly_the_connected_units():
    # inputs 3 -> layer 0 (4 units) -> layer 1 (3 units) -> head (1 output)
    w0 = torch.zeros(4, 3)
    w0[0, 0] = w0[2, 1] = w0[3, 2] = 1.0
    w1 = torch.zeros(3, 4)
    w1[0, 0] = 1.0  # unit 0 of layer 1 reads unit 0 of layer 0
    w1[2, 1] = 1.0  # unit 2 reads unit 1
    w1[1, 3] = 1.0  # unit 1 reads unit 3, but unit 1 is not connected to the output
    head = torch.tensor([[0.5, 0.0, -0.2]])
    active = [torch.ones(4, dtype=torch.bool), torch.ones(3, dtype=torch.bool)]
    selected = select_subnetwork([w0, w1], head, active)
    assert selected[1].tolist() == [True, False, True]
    assert selected[0].tolist() == [True, True, False, False]
    active[0][1] = False  # an inactive unit is never selected
    assert select_subnetwork([w0, w1], head, active)[0].tolist() == [True, False, False, False]


def test_split_picks_the_most_drifted_units():
    previous = torch.zeros(6, 2)
    current = previous.clone()
    current[:, 0] = torch.tensor([0.01, 0.9, 0.3, 0.6, 0.02, 0.8])
    rho = drift(current, previous)
    assert torch.allclose(rho, current[:, 0])
    candidates = torch.ones(6, dtype=torch.bool)
    assert units_to_split(rho, candidates, sigma=0.05, max_split=2).tolist() == [1, 5]
    assert units_to_split(rho, candidates, sigma=0.05, max_split=10).tolist() == [1, 5, 3, 2]
    candidates[1] = False  # only units that existed before the task are split
    assert units_to_split(rho, candidates, sigma=0.05, max_split=2).tolist() == [5, 3]


def test_expansion_triggers_only_above_tau():
    assert needs_expansion(0.2, 0.1) and not needs_expansion(0.05, 0.1) and not needs_expansion(0.1, 0.1)


def test_dead_units_are_those_with_zero_incoming_weights():
    w = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    assert dead_units(w, torch.tensor([1, 2, 3])).tolist() == [1, 3]


def test_timestamped_inference_is_bit_identical_for_earlier_tasks(bench):
    torch.manual_seed(0)
    model = DENMLP(64, (8, 6), (16, 12), 3, [2, 2, 2])
    x = bench.tasks[0].test.x
    before = model(x, 0).clone()
    for l in range(2):
        units = model.activate(l, 4, task=1)
        with torch.no_grad():  # later units with large weights everywhere, into old units too
            model.fcs[l].weight[units] = torch.randn(4, model.fcs[l].weight.shape[1]) * 10
            for w in model.outgoing(l):
                w[:, units] = torch.randn(w.shape[0], 4) * 10
    assert torch.equal(model(x, 0), before)
    assert not torch.equal(model(x, 1)[:, :2], model.head.heads[1](model.features(x, 0)))
    assert model.n_units() == [12, 10]


def test_capacity_and_deactivation():
    model = DENMLP(5, (2,), (3,), 1, [2])
    model.activate(0, 1, task=0)
    with pytest.raises(CapacityError):
        model.activate(0, 1, task=0)
    model.deactivate(0, torch.tensor([2]))
    assert model.n_units() == [2] and model.birth(0).tolist() == [0, 0, -1]
    assert torch.equal(model.fcs[0].weight[2], torch.zeros(5)) and torch.equal(model.head.heads[0].weight[:, 2],
                                                                               torch.zeros(2))


def _run(bench, **hp):
    model = build_model(bench, "den-mlp", hidden=(24, 16), seed=0)
    strategy = make("den", epochs=2, batch_size=32, **hp)
    result = fit(model, bench, strategy, TrainConfig(epochs=2, batch_size=32, progress=False), device="cpu")
    return model, strategy, result


def test_expansion_runs_only_when_the_loss_stays_above_tau(bench):
    _, never, _ = _run(bench, tau=1e6, sigma=1e6)
    assert all(e["added"] == [0, 0] and "expansion" not in e["losses"] for e in never.log)
    model, always, _ = _run(bench, tau=0.0, sigma=1e6)
    grown = [e for e in always.log if e["task"] > 0]
    assert all("expansion" in e["losses"] and e["added"] == [10, 10] for e in grown)
    assert model.n_units() == [24 + 20 - sum(e["removed"][0] for e in grown), 16 + 20 - sum(e["removed"][1] for e in grown)]
    assert int((model.birth(0) == 2).sum()) == 10 - grown[1]["removed"][0]


def test_strong_group_lasso_removes_every_new_unit(bench):
    model, strategy, _ = _run(bench, tau=0.0, sigma=1e6, group=10.0)
    assert all(e["removed"] == e["added"] for e in strategy.log)
    assert model.n_units() == [24, 16]


def test_earlier_task_outputs_after_training_later_tasks_with_splits(bench):
    """With no drift allowed (sigma 0 and a split budget that covers every unit), the selective retraining's
    drifts are all undone: task 1's outputs after task 3 equal those after task 1 up to float error."""
    model = build_model(bench, "den-mlp", hidden=(12, 8), seed=0)
    strategy = make("den", epochs=1, batch_size=32, sigma=0.0, max_split=1000, tau=1e6)
    x = bench.tasks[0].test.x
    snapshots = []
    strategy_after = strategy.after_task

    def after_task(m, task, data):
        strategy_after(m, task, data)
        with torch.no_grad():
            snapshots.append(m(x, 0).clone())

    strategy.after_task = after_task
    fit(model, bench, strategy, TrainConfig(epochs=1, batch_size=32, progress=False), device="cpu")
    assert torch.equal(snapshots[0], snapshots[-1])
    assert sum(sum(e["split"]) for e in strategy.log) > 0


def test_den_refuses_a_plain_network(bench):
    model = build_model(bench, "mlp", hidden=(8,), seed=0)
    with pytest.raises(TypeError, match="den-mlp"):
        fit(model, bench, make("den"), TrainConfig(epochs=1, progress=False), device="cpu")


def test_l2_baseline_pulls_towards_the_previous_weights(bench):
    moved = {}
    for lam in (0.0, 100.0):
        model = build_model(bench, "mlp", hidden=(16,), seed=0)
        strategy = make("l2", lam=lam)
        assert isinstance(strategy, L2)
        snapshots = []
        original = strategy.after_task

        def after_task(m, task, data, original=original, snapshots=snapshots):
            original(m, task, data)
            snapshots.append(m.body.layers[1].weight.detach().clone())

        strategy.after_task = after_task
        fit(model, bench, strategy, TrainConfig(epochs=3, batch_size=32, progress=False), device="cpu")
        moved[lam] = (snapshots[-1] - snapshots[0]).norm().item()
        assert "body.layers.1.weight" in strategy.anchor and not any(k.startswith("head") for k in strategy.anchor)
    assert moved[100.0] < 0.5 * moved[0.0], moved


def test_a_full_layer_stops_growing_instead_of_failing(bench):
    from clutils.models_den import build_den_model
    model = build_den_model(bench, hidden=(8, 4), capacity=(14, 6), seed=0)
    strategy = make("den", epochs=1, batch_size=32, tau=0.0, sigma=0.0, max_split=100)
    fit(model, bench, strategy, TrainConfig(epochs=1, batch_size=32, progress=False), device="cpu")
    assert all(n <= c for n, c in zip(model.n_units(), (14, 6)))
    assert any(any(e.get("capacity_reached", [])) for e in strategy.log)
