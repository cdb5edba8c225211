"""Stacked runs (clutils.stacked): K copies in one pass reproduce K single runs.

Everything runs on the CPU on scikit-learn's ``digits`` with tiny MLPs.
"""
from __future__ import annotations

import pytest
import torch

from clutils.data.named import make_benchmark
from clutils.models import build_model
from clutils.stacked import (Copy, StackedModel, StackingError, fit_copies, fit_stacked, stack_problem)
from clutils.strategies import make
from clutils.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = dict(epochs=2, batch_size=64, lr=1e-3, progress=False, reset_optimizer=False)


@pytest.fixture(scope="module")
def permuted():
    """Two seeds of three permuted-digits tasks (different permutations and subsets)."""
    return [make_benchmark("permuted-mnist", n_tasks=3, dataset="digits", train_per_class=30, test_per_class=10,
                           seed=s) for s in (0, 1)]


@pytest.fixture(scope="module")
def split_task():
    return make_benchmark("split-mnist", dataset="digits", train_per_class=20, test_per_class=10)


def single(benchmark, name, seed, hidden=(32,), **hp):
    model = build_model(benchmark, hidden=hidden, seed=seed)
    result = fit(model, benchmark, make(name, **hp), TrainConfig(seed=seed, **CONFIG), device="cpu")
    return result, model


def assert_same(a, b, weights_a=None, weights_b=None):
    assert a.accuracy_matrix == b.accuracy_matrix
    assert a.initial_accuracy == b.initial_accuracy
    for la, lb in zip(a.epoch_losses, b.epoch_losses):
        assert la == pytest.approx(lb, rel=1e-5, abs=1e-6)
    for pa, pb in zip(a.epoch_penalties, b.epoch_penalties):
        assert pa == pytest.approx(pb, rel=1e-4, abs=1e-7)
    if weights_a is not None:
        for (na, wa), (nb, wb) in zip(weights_a.named_parameters(), weights_b.named_parameters()):
            assert na == nb
            torch.testing.assert_close(wa, wb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,hp", [("naive", {}), ("si", {"c": 0.5}), ("alasso", {"xi": 1e-3}),
                                     ("ewc", {"lam": 100.0, "fisher_samples": 100}), ("mas", {"samples": 100})])
def test_a_stacked_run_of_two_seeds_reproduces_each_single_run(permuted, name, hp):
    singles = [single(permuted[s], name, s, **hp) for s in (0, 1)]
    copies = [Copy(build_model(permuted[s], hidden=(32,), seed=s), permuted[s], make(name, **hp), s) for s in (0, 1)]
    stacked = fit_stacked(copies, TrainConfig(**CONFIG), device="cpu")
    for (result, model), got, c in zip(singles, stacked, copies):
        assert_same(result, got, model, c.model)  # c.model: the copy's view of the stacked weights
        assert got.config["seed"] == result.config["seed"]
        assert got.strategy == result.strategy
        assert got.metrics() == pytest.approx(result.metrics())


def test_the_initialisation_of_each_copy_is_the_single_models(permuted):
    models = [build_model(permuted[0], hidden=(16, 8), seed=s) for s in (3, 4)]
    reference = [build_model(permuted[0], hidden=(16, 8), seed=s) for s in (3, 4)]
    stacked = StackedModel(models)
    for k, ref in enumerate(reference):
        for name, p in stacked.named_parameters():
            assert torch.equal(p[k], dict(ref.named_parameters())[name])
    x = permuted[0].tasks[0].test.x[:5]
    out = stacked(torch.stack([x, x]))
    for k, ref in enumerate(reference):
        torch.testing.assert_close(out[k], ref(x), rtol=1e-6, atol=1e-6)


def test_a_sweep_of_two_strengths_equals_two_single_runs(permuted):
    values = (0.8, 3.0)
    singles = [single(permuted[0], "alasso", 0, a=a, xi=1e-3) for a in values]
    copies = [Copy(build_model(permuted[0], hidden=(32,), seed=0), permuted[0], make("alasso", a=a, xi=1e-3), 0)
              for a in values]
    stacked = fit_stacked(copies, TrainConfig(**CONFIG), device="cpu")
    for (result, model), got, c in zip(singles, stacked, copies):
        assert_same(result, got, model, c.model)
    assert [r.strategy["hyperparameters"]["a"] for r in stacked] == list(values)
    assert stacked[0].accuracy_matrix != stacked[1].accuracy_matrix  # the sweep changed something


def test_mixed_strategies_and_multi_head_models_stack(split_task):
    names = ("naive", "si")
    singles = [single(split_task, n, 2) for n in names]
    copies = [Copy(build_model(split_task, hidden=(32,), seed=2), split_task, make(n), 2) for n in names]
    stacked = fit_stacked(copies, TrainConfig(**CONFIG), device="cpu")
    for (result, model), got, c in zip(singles, stacked, copies):
        assert_same(result, got, model, c.model)


@pytest.mark.parametrize("name", ["er", "der", "joint", "separate", "lwf", "cwr", "ar1", "hat", "dgr"])
def test_strategies_that_cannot_stack_say_so(permuted, name):
    from clutils.strategies import strategy_names

    if name not in strategy_names():
        pytest.skip(f"{name} is not registered")
    strategy = make(name)
    assert stack_problem(build_model(permuted[0], hidden=(8,)), strategy) is not None
    copies = [Copy(build_model(permuted[0], hidden=(8,), seed=s), permuted[0], make(name), s) for s in (0, 1)]
    with pytest.raises(StackingError, match=f"{name}.*one at a time"):
        fit_stacked(copies, TrainConfig(**CONFIG), device="cpu")


def test_conv_nets_and_bad_inputs_are_refused(permuted):
    from clutils.experiments.alasso import paper_convnet

    bench = make_benchmark("split-mnist", dataset="digits", train_per_class=5, test_per_class=2)
    conv = paper_convnet("table-d", bench, seed=0)
    assert "PaperConvNet" in stack_problem(conv, make("naive"))
    with pytest.raises(StackingError, match="same architecture"):
        StackedModel([build_model(permuted[0], hidden=(8,)), build_model(permuted[0], hidden=(9,))])
    shared = make("naive")
    copies = [Copy(build_model(permuted[0], hidden=(8,), seed=s), permuted[0], shared, s) for s in (0, 1)]
    with pytest.raises(StackingError, match="own strategy"):
        fit_stacked(copies, TrainConfig(**CONFIG), device="cpu")
    other = make_benchmark("permuted-mnist", n_tasks=2, dataset="digits", train_per_class=30, test_per_class=10)
    copies = [Copy(build_model(b, hidden=(8,), seed=0), b, make("naive"), 0) for b in (permuted[0], other)]
    with pytest.raises(StackingError, match="same tasks"):
        fit_stacked(copies, TrainConfig(**CONFIG), device="cpu")


def test_fit_copies_runs_one_at_a_time_what_cannot_stack(permuted):
    copies = [Copy(build_model(permuted[0], hidden=(8,), seed=s), permuted[0], make("joint"), s) for s in (0, 1)]
    results, how = fit_copies(copies, TrainConfig(**{**CONFIG, "epochs": 1}), device="cpu")
    assert how.startswith("sequential") and "joint" in how
    assert [r.config["seed"] for r in results] == [0, 1]
    copies = [Copy(build_model(permuted[0], hidden=(8,), seed=s), permuted[0], make("naive"), s) for s in (0, 1)]
    results, how = fit_copies(copies, TrainConfig(**{**CONFIG, "epochs": 1}), device="cpu")
    assert how == "stacked" and len(results) == 2


def test_class_incremental_copies_with_their_own_subsets_and_confusion_matrices():
    import dataclasses

    benches = [make_benchmark("split-mnist", dataset="digits", scenario="class", train_per_class=20,
                              test_per_class=10, seed=s) for s in (0, 1)]
    config = TrainConfig(**{**CONFIG, "record_confusion": True})
    singles = [fit(build_model(b, hidden=(16,), seed=s), b, make("naive"), TrainConfig(**{**CONFIG, "seed": s,
               "record_confusion": True}), device="cpu") for s, b in enumerate(benches)]
    copies = [Copy(build_model(b, hidden=(16,), seed=s), b, make("naive"), s) for s, b in enumerate(benches)]
    for single_result, got in zip(singles, fit_stacked(copies, config, device="cpu")):
        assert got.accuracy_matrix == single_result.accuracy_matrix
        assert got.confusion == single_result.confusion
    # Another class order (as a benchmark that shuffles its classes per seed would have).
    reordered = dataclasses.replace(benches[1], tasks=[dataclasses.replace(t, classes=t.classes[::-1])
                                                       for t in benches[1].tasks])
    expanding = [Copy(build_model(b, hidden=(16,), seed=s, expanding_head=True), b, make("naive"), s)
                 for s, b in enumerate((benches[0], reordered))]
    with pytest.raises(StackingError, match="same classes"):
        fit_stacked(expanding, config, device="cpu")


def test_the_alasso_chapter_runs_stack_what_stacks_and_match_its_single_runs():
    from clutils import presets
    from clutils.experiments import alasso as ex

    settings = presets.get("alasso-permuted-mnist", "smoke")
    benches = {s: ex.permuted_benchmark(settings, dataset="digits", seed=s) for s in (0, 1)}
    jobs = {(s, label): (label, benches[s], s) for s in (0, 1) for label in ("SGD", "ALASSO", "SGD+dropout")}
    assert not ex.spec_stacks(ex.method_spec("SGD+dropout", settings), settings)  # dropout: one at a time
    got = ex.run_stacked(jobs, settings, device="cpu")
    assert list(got) == list(jobs)
    for key, (label, bench, s) in jobs.items():
        single = ex.run_method(label, bench, settings, seed=s, device="cpu")
        assert got[key].accuracy_matrix == single.accuracy_matrix, key
        assert got[key].config.get("stacked_copies") == (None if label == "SGD+dropout" else 4)
