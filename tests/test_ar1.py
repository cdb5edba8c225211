"""The AR1 chapter's code: CWR, CWR+, AR1, the class-incremental LwF/EWC/SI (Maltoni & Lomonaco 2019),
the per-batch schedule, the weight diagnostics and the presets. Small synthetic benchmarks, no network."""
from __future__ import annotations

import math
import urllib.error
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clutils import presets
from clutils.data import benchmarks as bm
from clutils.data.tensors import Dataset, TensorData
from clutils.diagnostics import weights as diag
from clutils.experiments import ar1 as ex
from clutils.models import build_model
from clutils.result import Result
from clutils.strategies import make, strategy_names
from clutils.strategies.base import Batch
from clutils.strategies.cwr import output_layer, shared_parameters
from clutils.strategies.sit import (
    LambdaOvershootWarning, check_lambda, lambda_bound, linear_map, lwf_lambdas, soft_target_loss, two_term_loss,
)
from clutils.train import TrainConfig, fit

PAPER_STRATEGIES = ("cwr", "cwr+", "ar1", "lwf-sit", "ewc-sit", "si-sit")


def synthetic(n_classes: int = 6, per_class: int = 24, dim: int = 10, seed: int = 0) -> Dataset:
    """Gaussian blobs, one per class: separable enough to learn in a few steps."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(n_classes, dim, generator=g)

    def draw(n):
        y = torch.arange(n_classes).repeat_interleave(n)
        return TensorData(centres[y] + torch.randn(len(y), dim, generator=g), y)

    return Dataset("blobs", draw(per_class), draw(per_class // 2), n_classes)


def class_incremental(n_tasks: int = 3, **kw) -> bm.Benchmark:
    return bm.split(synthetic(**kw), n_tasks, "class", seed=None)


def run(name: str, bench=None, epochs: int = 2, lr: float = 0.05, expanding: bool = False, observe=None,
        **hp) -> tuple[Result, torch.nn.Module, object]:
    bench = bench or class_incremental()
    model = build_model(bench, hidden=(16,), expanding_head=expanding, seed=0)
    strategy = make(name, **hp)
    if observe is not None:
        observe(strategy)
    result = fit(model, bench, strategy, TrainConfig(epochs=epochs, batch_size=16, lr=lr, optimizer="sgd",
                                                     progress=False, record_confusion=True), device="cpu")
    return result, model, strategy


def watch(strategy, hook: str, callback, first: bool = False) -> None:
    """Wrap ``strategy.<hook>`` (``before_task``, ``after_task``): ``callback(model, task)`` runs
    after the hook (before it if ``first``)."""
    inner = getattr(strategy, hook)

    def wrapped(model, task, *rest):
        if first:
            callback(model, task)
        inner(model, task, *rest)
        if not first:
            callback(model, task)

    setattr(strategy, hook, wrapped)


# ----------------------------------------------------------------------------- registry


def test_the_paper_strategies_are_registered_with_their_algorithm_in_the_docstring():
    names = strategy_names()
    for name in PAPER_STRATEGIES:
        assert name in names
    assert "Algorithm 1" in (make("cwr").__class__.__module__ and __import__("clutils.strategies.cwr",
                                                                               fromlist=["x"]).__doc__)
    assert "Algorithm 2" in make("cwr+").__class__.__doc__
    assert "Algorithm 3" in make("ar1").__class__.__doc__
    for name, eq in (("lwf-sit", "Eq. 3"), ("ewc-sit", "Eq. 8"), ("si-sit", "Eq. 11")):
        assert eq in type(make(name)).__doc__


# ----------------------------------------------------------------------------- the bound on lambda


def test_lambda_bound_is_one_over_eta_max_f():
    assert lambda_bound(0.001, 0.001) == pytest.approx(1e6)
    with pytest.raises(ValueError):
        lambda_bound(0, 0.001)


@pytest.mark.parametrize("factor, outcome", [(0.5, "short"), (1.0, "exact"), (1.5, "overshoot"), (2.5, "diverge")])
def test_one_decay_step_on_a_saturated_weight_follows_the_bound(factor, outcome):
    """Eq. 7 with F_hat = max_F and no task gradient: theta - theta* is multiplied by 1 - eta lambda max_F."""
    eta, max_f = 0.01, 1e-3
    lam = factor * lambda_bound(eta, max_f)
    strategy = make("si-sit", lam=lam, max_f=max_f)
    p = torch.nn.Parameter(torch.tensor([1.0]))
    model = torch.nn.Module()
    model.p = p
    strategy.importance = {"p": torch.tensor([max_f])}
    strategy.anchor = {"p": torch.tensor([0.0])}
    strategy.invalidate_gradient_cache()
    distances = [1.0]
    opt = torch.optim.SGD([p], lr=eta)
    for _ in range(3):
        opt.zero_grad()
        p.grad = torch.zeros_like(p)  # no task gradient
        strategy.after_backward(model)
        opt.step()
        distances.append(float(p.detach()))
    ratio = distances[1] / distances[0]
    assert ratio == pytest.approx(1 - factor, abs=1e-6)
    if outcome == "exact":
        assert distances[1] == pytest.approx(0.0, abs=1e-6)
    elif outcome == "short":
        assert 0 < distances[-1] < distances[0]
    elif outcome == "overshoot":
        assert distances[1] < 0 and abs(distances[-1]) < abs(distances[0])
    else:
        assert abs(distances[-1]) > abs(distances[0])


def test_check_lambda_warns_above_the_bound_and_refuses_divergence():
    eta, max_f = 0.01, 1e-3
    bound = lambda_bound(eta, max_f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_lambda(make("ewc-sit", lam=bound, max_f=max_f), eta) == pytest.approx(1.0)
    with pytest.warns(LambdaOvershootWarning):
        assert check_lambda(make("ewc-sit", lam=1.5 * bound, max_f=max_f), eta) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="diverges"):
        check_lambda(make("si-sit", lam=2.5 * bound, max_f=max_f), eta)
    assert check_lambda(make("naive"), eta) is None
    assert check_lambda(make("ewc-sit", lam=10 * bound), eta, optimizer="adam") is None


def test_the_quick_profile_respects_the_bound():
    setup = presets.get("ar1-accuracy", "quick")["setups"][0]
    for label in ("ewc", "si", "ar1"):
        spec = ex.run_spec(setup["strategies"][label], setup)
        lr = spec["train"]["lr"] * (spec["train"].get("shared_lr_scale", 1.0) if label == "ar1" else 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert check_lambda(make(spec["strategy"], **spec["hp"]), lr) <= 1


# ----------------------------------------------------------------------------- LwF (Eq. 2-5)


def test_eq2_and_eq3_are_the_same_loss_with_the_same_gradient():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g, requires_grad=True)
    y = torch.randint(0, 5, (8,), generator=g)
    y_lwf = torch.softmax(torch.randn(8, 5, generator=g), 1)
    for lam in (0.0, 0.3, 0.9):
        l2 = soft_target_loss(logits, y, y_lwf, lam)
        l1 = two_term_loss(logits, y, y_lwf, lam)
        assert float(l1.detach()) == pytest.approx(float(l2.detach()), rel=1e-6)
        g1, = torch.autograd.grad(l1, logits)
        g2, = torch.autograd.grad(l2, logits)
        target = (1 - lam) * F.one_hot(y, 5) + lam * y_lwf
        assert torch.allclose(g1, g2, atol=1e-7)
        assert torch.allclose(g2, (torch.softmax(logits, 1) - target) / 8, atol=1e-6)  # Eq. 4


def test_lwf_sit_penalty_plus_the_task_loss_is_eq3():
    bench = class_incremental()
    model = build_model(bench, hidden=(8,), seed=0)
    strategy = make("lwf-sit", schedule="fixed", lam=0.4)
    strategy.setup(model, bench)
    strategy.after_task(model, bench.tasks[0], None)
    strategy.before_task(model, bench.tasks[1])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # the student moves away from the teacher
    x, y = bench.tasks[1].train.x[:8], bench.tasks[1].train.y[:8]
    logits = model(x)
    total = F.cross_entropy(logits, y) + strategy.penalty(model, Batch(x, y, None, logits))
    with torch.no_grad():
        y_lwf = torch.softmax(strategy.old_model(x), 1)
    assert float(total.detach()) == pytest.approx(float(soft_target_loss(logits, y, y_lwf, 0.4).detach()), rel=1e-5)


def test_eq5_schedule_with_the_identity_map_gives_the_papers_core50_example():
    lams = lwf_lambdas([10] + [5] * 8, "eq5", map_from=(0, 1), map_to=(0, 1))
    assert lams[0] == 0
    assert lams[1:] == pytest.approx([2 / 3, 3 / 4, 4 / 5, 5 / 6, 6 / 7, 7 / 8, 8 / 9, 9 / 10])
    mapped = lwf_lambdas([10] + [5] * 8, "eq5", map_from=(0.66, 0.9), map_to=(0.45, 0.85))
    assert mapped[-1] == pytest.approx(linear_map(0.9, (0.66, 0.9), (0.45, 0.85))) == pytest.approx(0.85)
    assert lwf_lambdas([5, 5, 5], "fixed", lam=0.8) == [0.0, 0.8, 0.8]
    assert all(0 <= v <= 1 for v in lwf_lambdas([1, 100], "eq5", map_from=(0, 0.5), map_to=(0, 1)))


# ----------------------------------------------------------------------------- EWC (Eq. 8) and SI (Eq. 11)


def test_ewc_sit_averages_and_clips_the_fisher():
    bench = class_incremental()
    model = build_model(bench, hidden=(4,), seed=0)
    s = make("ewc-sit", max_f=0.5)
    s.setup(model, bench)
    name = next(iter(dict(model.named_parameters())))
    f1 = {name: torch.full_like(dict(model.named_parameters())[name], 0.8)}
    f2 = {name: torch.full_like(f1[name], 0.1)}
    s.consolidate_importance(model, f1)
    assert torch.all(s.importance[name] == 0.5)  # clipped
    s.consolidate_importance(model, f2)
    assert torch.allclose(s.raw[name], torch.full_like(f1[name], 0.9))
    assert torch.allclose(s.importance[name], torch.full_like(f1[name], 0.45))  # (0.8 + 0.1) / 2


def test_si_sit_weights_and_clips_the_importance():
    bench = class_incremental()
    model = build_model(bench, hidden=(4,), seed=0)
    s = make("si-sit", max_f=1.0, w_first=0.1, w_rest=2.0)
    s.setup(model, bench)
    name = next(iter(dict(model.named_parameters())))
    base = torch.linspace(-1, 1, dict(model.named_parameters())[name].numel()).reshape_as(
        dict(model.named_parameters())[name])
    s.batches = 0
    s.consolidate_importance(model, {name: base}, 0.1)
    s.consolidate_importance(model, {name: base}, 2.0)
    assert torch.allclose(s.raw[name], 2.1 * base)
    assert torch.allclose(s.importance[name], (2.1 * base).clamp(0, 1))


def test_si_sit_importance_is_the_path_integral_over_the_squared_displacement():
    bench = class_incremental(n_tasks=2)
    result, model, s = run("si-sit", bench, lam=1.0, max_f=1e9, xi=0.1, w_first=1.0, w_rest=1.0)
    assert s.batches == 2
    for v in s.importance.values():
        assert torch.all(v >= 0)


def test_ar1_protects_only_the_shared_weights_and_clips():
    result, model, s = run("ar1", lam=10.0, max_f=1e-3)
    shared = set(shared_parameters(model))
    assert set(s.importance) == shared
    assert all(float(v.max()) <= 1e-3 * (1 + 1e-6) and float(v.min()) >= 0 for v in s.importance.values())
    assert s.protects_head is False


# ----------------------------------------------------------------------------- CWR, CWR+, AR1


def test_cwr_freezes_the_shared_weights_after_the_first_batch():
    bench = class_incremental()
    snaps = []

    def observe(strategy):
        watch(strategy, "after_task", lambda model, task: snaps.append(
            {n: p.detach().clone() for n, p in shared_parameters(model).items()}))

    run("cwr", bench, observe=observe)
    for later in snaps[1:]:
        for n in later:
            assert torch.equal(later[n], snaps[0][n])


def test_cwr_copies_scaled_rows_and_leaves_untrained_classes_at_zero():
    bench = class_incremental()
    tw = {}

    def keep_trained_head(model, task):  # tw: the head as trained, before CWR consolidates it
        tw[task.index] = output_layer(model).weight.detach().clone()

    def observe(strategy):
        watch(strategy, "after_task", keep_trained_head, first=True)

    result, model, s = run("cwr", bench, observe=observe, w_first=2.0, w_rest=0.5)
    w = output_layer(model).weight.detach()
    for task in bench.tasks:
        rows = list(task.classes)
        scale = 2.0 if task.index == 0 else 0.5
        assert torch.allclose(w[rows], scale * tw[task.index][rows])
    # after batch 1, the classes of batches 2 and 3 had cw = 0
    assert s.head.trained.all()


def test_cwr_plus_mean_shifts_each_batch_and_starts_from_zero():
    bench = class_incremental()
    starts = []

    def observe(strategy):
        watch(strategy, "before_task",
              lambda model, task: starts.append(output_layer(model).weight.detach().clone()))

    result, model, s = run("cwr+", bench, observe=observe)
    assert all(torch.count_nonzero(w) == 0 for w in starts)  # zero init of tw, every batch
    layer = output_layer(model)
    for task in bench.tasks:
        rows = list(task.classes)
        assert float(layer.weight[rows].detach().mean()) == pytest.approx(0.0, abs=1e-6)
        assert float(layer.bias[rows].detach().mean()) == pytest.approx(0.0, abs=1e-6)


def test_cwr_random_init_uses_the_requested_gaussian():
    bench = class_incremental()
    starts = []

    def observe(strategy):
        watch(strategy, "before_task",
              lambda model, task: starts.append(output_layer(model).weight.detach().clone()))

    run("cwr", bench, observe=observe, init_std=0.01)
    assert all(0.003 < float(w.std()) < 0.03 for w in starts)


def test_classes_not_trained_yet_are_never_predicted_by_cwr():
    bench = class_incremental()
    model = build_model(bench, hidden=(16,), seed=0)
    strategy = make("cwr+")
    fit(model, bm.Benchmark(bench.name, "class", bench.tasks[:1], bench.n_classes, bench.input_shape, "blobs"),
        strategy, TrainConfig(epochs=2, batch_size=16, lr=0.05, optimizer="sgd", progress=False), device="cpu")
    model.eval()
    pred = model(torch.cat([t.test.x for t in bench.tasks])).argmax(1)
    assert set(pred.tolist()) <= set(bench.tasks[0].classes)
    model.train()
    assert model(bench.tasks[0].test.x).shape[1] == bench.n_classes  # training is not masked


def test_ar1_keeps_learning_the_shared_weights():
    bench = class_incremental()
    snaps = []

    def observe(strategy):
        watch(strategy, "after_task", lambda model, task: snaps.append(
            {n: p.detach().clone() for n, p in shared_parameters(model).items()}))

    result, model, s = run("ar1", bench, observe=observe, lam=10.0)
    moved = sum(float((snaps[-1][n] - snaps[0][n]).abs().sum()) for n in snaps[0])
    assert moved > 0


@pytest.mark.parametrize("name", ["cwr", "cwr+", "ar1"])
def test_the_cwr_family_refuses_a_task_incremental_benchmark(name):
    bench = bm.split(synthetic(), 3, "task", seed=None)
    model = build_model(bench, hidden=(8,), seed=0)
    with pytest.raises(ValueError, match="class-incremental"):
        fit(model, bench, make(name), TrainConfig(epochs=1, progress=False), device="cpu")


@pytest.mark.parametrize("name", ["naive", "lwf-sit", "ewc-sit", "si-sit", "cwr", "cwr+", "ar1"])
@pytest.mark.parametrize("expanding", [False, True])
def test_every_strategy_runs_with_a_maximal_or_an_expanding_head(name, expanding):
    hp = {"lam": 10.0} if name in ("ewc-sit", "si-sit", "ar1") else {}
    result, model, _ = run(name, epochs=1, expanding=expanding, **hp)
    assert result.R.shape == (3, 3)
    assert np.isfinite(result.R).all()


def test_cwr_family_state_round_trips():
    bench = class_incremental()
    result, model, s = run("ar1", bench, lam=10.0)
    state = s.state_dict()
    fresh = make("ar1", lam=10.0)
    fresh.setup(model, bench)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.head.cw, s.head.cw)
    assert set(fresh.importance) == set(s.importance)
    assert fresh.batches == s.batches


@pytest.mark.parametrize("name", ["cwr+", "ar1"])
def test_an_interrupted_run_resumes_to_the_same_result(name, tmp_path):
    bench = class_incremental()
    config = TrainConfig(epochs=1, batch_size=16, lr=0.05, optimizer="sgd", progress=False)
    hp = {"lam": 10.0} if name == "ar1" else {}
    full = fit(build_model(bench, hidden=(8,), seed=0), bench, make(name, **hp), config, device="cpu")

    class Interrupt(Exception):
        pass

    strategy = make(name, **hp)
    inner = strategy.before_task

    def before_task(model, task):
        if task.index == 2:
            raise Interrupt
        inner(model, task)

    strategy.before_task = before_task
    with pytest.raises(Interrupt):
        fit(build_model(bench, hidden=(8,), seed=0), bench, strategy, config, device="cpu", run_dir=tmp_path)
    resumed = fit(build_model(bench, hidden=(8,), seed=0), bench, make(name, **hp), config, device="cpu",
                  run_dir=tmp_path)
    assert np.allclose(resumed.R, full.R)


# ----------------------------------------------------------------------------- per-batch schedule


def test_first_batch_learning_rate_is_that_batch_trained_at_that_rate():
    bench = class_incremental(n_tasks=1)
    setup = {"model": {"arch": "mlp", "hidden": [8]},
             "train": {"epochs": 2, "batch_size": 16, "lr": 0.1, "optimizer": "sgd"}}
    scaled = ex.run_strategy({"strategy": "naive", "first": {"lr": 0.025}}, setup, bench, record_confusion=False)
    plain = ex.run_strategy({"strategy": "naive", "train": {"lr": 0.025}}, setup, bench, record_confusion=False)
    other = ex.run_strategy({"strategy": "naive"}, setup, bench, record_confusion=False)
    assert np.allclose(scaled.R, plain.R)
    assert np.allclose(scaled.epoch_losses, plain.epoch_losses, rtol=1e-6)
    assert not np.allclose(scaled.epoch_losses, other.epoch_losses, rtol=1e-3)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_first_batch_gets_its_own_epochs_and_learning_rate(optimizer):
    bench = class_incremental()
    setup = {"model": {"arch": "mlp", "hidden": [8]},
             "train": {"epochs": 1, "batch_size": 16, "lr": 0.05 if optimizer == "sgd" else 1e-3,
                       "optimizer": optimizer}}
    result = ex.run_strategy({"strategy": "naive", "first": {"epochs": 3, "lr": 0.01}}, setup, bench)
    assert [len(losses) for losses in result.epoch_losses] == [3] + [1] * (len(bench) - 1)
    assert result.config["first_task_epochs"] == 3 and result.config["first_task_lr"] == 0.01
    with pytest.raises(ValueError, match="'epochs' and 'lr' only"):
        ex.run_strategy({"strategy": "naive", "first": {"momentum": 0.9}}, setup, bench)


def test_shared_lr_scale_slows_only_the_layers_below_the_output():
    bench = class_incremental(n_tasks=1)
    setup = {"model": {"arch": "mlp", "hidden": [8]},
             "train": {"epochs": 1, "batch_size": 16, "lr": 0.1, "optimizer": "sgd", "shared_lr_scale": 0.0}}
    before = build_model(bench, hidden=(8,), seed=0)
    moved = {}

    def observe(strategy):
        watch(strategy, "after_task", lambda model, task: moved.update(
            {n: float((p.detach() - dict(before.named_parameters())[n].detach()).abs().sum())
             for n, p in model.named_parameters()}))

    ex.run_strategy({"strategy": "naive"}, setup, bench, observe=observe)
    out = {n for n in moved if n.startswith("head.")}
    assert all(moved[n] == 0 for n in moved if n not in out)
    assert all(moved[n] > 0 for n in out)


# ----------------------------------------------------------------------------- measures and diagnostics


def fake_result(R, test_sizes, classes, confusion=None) -> Result:
    return Result(config={}, benchmark={"test_sizes": test_sizes, "classes_per_task": classes}, strategy={},
                  accuracy_matrix=R, confusion=confusion or [])


def test_fixed_and_growing_test_views():
    R = [[0.9, 0.0, 0.0], [0.5, 0.8, 0.0], [0.4, 0.6, 0.7]]
    r = fake_result(R, [10, 10, 20], [[0], [1], [2, 3]])
    assert ex.fixed_test_accuracy(r) == pytest.approx([9 / 40, 13 / 40, (4 + 6 + 14) / 40])
    assert ex.growing_test_accuracy(r) == pytest.approx([0.9, 0.65, 24 / 40])
    assert ex.per_batch_final_accuracy(r) == pytest.approx([0.4, 0.6, 0.7])


def test_last_batch_share_and_column_band():
    C1 = np.zeros((4, 4), int)
    C1[:, 0] = 10  # everything predicted as class 0 (batch 1)
    C2 = np.zeros((4, 4), int)
    C2[:, 2] = 9
    C2[:, 1] = 1
    r = fake_result([[1, 0], [0, 1]], [20, 20], [[0, 1], [2, 3]], [C1.tolist(), C2.tolist()])
    assert ex.last_batch_share(r) == pytest.approx([1.0, 0.9])
    assert ex.column_band(r) == (2, pytest.approx(0.9))


def test_weight_change_tracker_sees_cwr_freeze():
    bench = class_incremental()
    tracker = diag.WeightChangeTracker("cwr")
    run("cwr", bench, observe=tracker.attach)
    frame = tracker.frame()
    assert sorted(frame["batch"].unique()) == [1, 2, 3]
    assert list(dict.fromkeys(frame["layer"])) == ["fc1", "output"]
    later = frame[(frame.batch > 1) & (frame.layer == "fc1")]
    assert (later["change"] == 0).all()
    assert (frame[frame.layer == "output"]["change"] > 0).all()


def test_importance_snapshots_and_their_summary():
    bench = class_incremental()

    def observe(strategy):
        strategy.keep_snapshots = 2

    _, _, ewc = run("ewc-sit", bench, observe=observe, lam=10.0, max_f=1e-4)
    _, _, si = run("si-sit", bench, observe=observe, lam=10.0, max_f=1e-3)
    frame = diag.importance_frame({"ewc": ewc, "si": si})
    assert len(frame) == 2 * 2 * 2  # strategies x batches x (raw, normalised)
    summary = diag.importance_summary(frame)
    norm = summary[summary.kind == "normalised"]
    assert (norm["max"] <= 1e-3 * (1 + 1e-6)).all()
    assert 0 <= ewc.saturated_fraction() <= 1


def test_layer_groups_name_layers_from_input_to_output():
    bench = class_incremental()
    model = build_model(bench, hidden=(8, 8), seed=0)
    assert [g for g, _ in diag.layer_groups(model)] == ["fc1", "fc2", "output"]


# ----------------------------------------------------------------------------- presets and models


@pytest.mark.parametrize("experiment", ["ar1-scenarios", "ar1-accuracy", "ar1-confusion", "ar1-importance",
                                        "ar1-heads"])
@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_presets_define_every_profile(experiment, profile):
    settings = presets.get(experiment, profile)
    assert settings["setups"]
    for setup in settings["setups"]:
        groups = setup.values() if "mt" in setup else [setup]
        for s in groups:
            for spec in s["strategies"].values():
                make(spec["strategy"], **spec.get("hp", {}))


def test_paper_presets_follow_tables_4_and_5():
    core50, icifar = presets.get("ar1-accuracy", "paper")["setups"]
    ar1 = core50["strategies"]["ar1"]
    assert ar1["hp"]["lam"] == 8e5 and ar1["hp"]["w_first"] == ar1["hp"]["w_rest"] == 0.0015
    assert ar1["first"]["epochs"] == 4 and core50["train"]["epochs"] == 2
    assert core50["strategies"]["lwf"]["head"] == "expanding"
    assert core50["benchmark"]["dataset"] == "core50-objects" and core50["benchmark"]["first"] == 10
    assert icifar["strategies"]["ar1"]["hp"]["w_first"] == 1.5e-4
    assert icifar["strategies"]["ewc"]["train"]["epochs"] == 25
    assert icifar["model"]["pretrained"] == "cifar10"
    assert core50["runs"] == icifar["runs"] == 10


def test_googlenet128_builds_offline_without_weights():
    model = ex.googlenet128(50, pretrained=False)
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 128, 128))
    assert out.shape == (1, 50)
    assert model.body.conv1.conv.stride == (1, 1) and model.body.conv1.conv.padding == (0, 0)


def test_googlenet128_offline_names_the_missing_weights(monkeypatch, tmp_path):
    import torchvision.models as tvm

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(tvm, "googlenet", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ex.MissingPretrainedWeightsError, match="googlenet-1378be20.pth") as info:
        ex.googlenet128(50)
    assert "IMAGENET1K_V1" in str(info.value) and "profile='quick'" in str(info.value)


def test_class_orders_start_natural_then_shuffle():
    orders = ex.class_orders(3, seed=0)
    assert orders[0] is None and len(set(orders)) == 3
    data = synthetic(n_classes=10)
    spec = {"kind": "split", "dataset": "blobs", "tasks": 5, "shuffle": True}
    ex._DATA_CACHE[("blobs", "None", None, None, 0, False, ())] = data  # (name, root, sizes, seed, validation, options)
    first = ex.build_benchmark(spec, order_seed=orders[0])
    second = ex.build_benchmark(spec, order_seed=orders[1])
    assert [list(t.classes) for t in first.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert [list(t.classes) for t in second.tasks] != [list(t.classes) for t in first.tasks]
    ex._DATA_CACHE.clear()


def test_quick_setup_runs_in_the_smoke_profile_on_digits():
    setup = presets.get("ar1-accuracy", "smoke")["setups"][0]
    results = ex.run_strategies(setup["strategies"], setup, dataset="digits", seed=0, device="cpu", runs=1,
                                log=None)
    assert set(results) == set(setup["strategies"])
    table = ex.final_table(results)
    assert table.shape[0] == len(setup["strategies"])
    assert math.isfinite(float(table.iloc[0, 0]))


def test_cifarnet_is_pretrained_on_cifar10_once_and_cached(monkeypatch, tmp_path):
    from clutils.data import datasets as datasets_mod

    calls = []

    def fake_cifar10(root=None, download=None, **options):
        calls.append(root)
        g = torch.Generator().manual_seed(0)
        y = torch.arange(10).repeat(2)
        return Dataset("cifar10", TensorData(torch.randn(20, 3, 32, 32, generator=g), y),
                       TensorData(torch.randn(20, 3, 32, 32, generator=g), y), 10)

    monkeypatch.setitem(datasets_mod.LOADERS, "cifar10", fake_cifar10)
    monkeypatch.setenv("CLUTILS_DATA", str(tmp_path))
    target = bm.split(fake_cifar10(), 2, "class", seed=None)
    calls.clear()
    spec = {"arch": "cifarnet", "pretrained": "cifar10", "pretrain_epochs": 1}
    first = ex.build_ar1_model(spec, target, seed=0)
    second = ex.build_ar1_model(spec, target, seed=1)
    assert len(calls) == 1  # the second model reads the cached body
    for (n, a), b in zip(first.body.state_dict().items(), second.body.state_dict().values()):
        assert torch.equal(a, b), n
    assert list(tmp_path.glob("clutils-cache/ar1-cifarnet-cifar10-e1-s0.pt"))


@pytest.mark.parametrize("name", ["ewc-sit", "si-sit", "ar1"])
def test_the_decay_added_to_the_gradients_is_the_gradient_of_the_reported_penalty(name):
    bench = class_incremental()
    result, model, s = run(name, bench, lam=50.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, y = bench.tasks[0].train.x[:4], bench.tasks[0].train.y[:4]
    logits = model(x)
    model.zero_grad()
    s.penalty(model, Batch(x, y, None, logits)).backward()
    autograd = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    s.invalidate_gradient_cache()
    s.after_backward(model)
    for n, g in autograd.items():
        assert torch.allclose(dict(model.named_parameters())[n].grad, g, atol=1e-6), n
    assert s.applies_penalty_gradient


# ----------------------------------------------------------------- issue 9: the authors' code as default


class _Vector(torch.nn.Module):
    def __init__(self, values):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


@pytest.mark.parametrize("path_gradient, expected", [(None, [2.0, -3.0]), ("total", [2.0, -3.0]),
                                                     ("task", [1.0, -1.0])])
def test_si_sit_path_integral_reads_the_gradient_with_the_decay_by_default(path_gradient, expected):
    # task loss 1/2 |theta|^2 (gradient theta = (1, -1)); decay lam * F * (theta - anchor) with
    # lam = 2, F = (0.5, 1), anchor 0: (1, -2). ar1-pytorch's path integral reads their sum.
    model = _Vector([1.0, -1.0])
    s = make("si-sit", lam=2.0, max_f=10.0, **({} if path_gradient is None else {"path_gradient": path_gradient}))
    s.setup(model, None)
    s.raw, s.batches = {"theta": torch.tensor([0.5, 1.0], dtype=torch.float64)}, 1
    s.importance = s.normalise()
    s.anchor = {"theta": torch.zeros(2, dtype=torch.float64)}
    s.before_task(model, None)
    loss = 0.5 * model.theta.pow(2).sum()
    loss.backward()  # the loop's order: task gradient, (task hook), the strategy's decay, (total hook)
    if s.needs_task_gradient:
        s.after_task_backward(model)
    s.after_backward(model)
    assert s.path.grad[0].tolist() == pytest.approx(expected)
    assert model.theta.grad.tolist() == pytest.approx([2.0, -3.0])  # the step uses the decay either way


def test_ar1_follows_the_authors_code_by_default():
    assert make("ar1").hp["path_gradient"] == "total"
    assert make("si-sit").hp["path_gradient"] == "total"
    with pytest.raises(ValueError):
        make("si-sit", path_gradient="penalty")


def test_ar1_leaves_batch_norm_gamma_and_beta_unprotected_unless_asked():
    from clutils.models import ContinualModel, SingleHead

    body = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU())
    model = ContinualModel(body, SingleHead(3, 4))
    assert set(make("ar1").protected(model)) == {"body.0.weight", "body.0.bias"}
    assert set(make("ar1", protect_norm=True).protected(model)) == {
        "body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias"}


# ----------------------------------------------------------------------------- the chapter page and its figures


def _included_objects(page: str) -> list[tuple[str, str]]:
    """(path, object) of every ``literalinclude`` with ``:pyobject:`` on a MyST page."""
    import re

    return re.findall(r"```\{literalinclude\}\s+(\S+)\n(?::[a-z-]+:.*\n)*?:pyobject:\s+(\S+)", page)


def _defines(source: str, dotted: str) -> bool:
    """Whether ``source`` defines the function or class ``dotted`` (``Class.method`` for a method)."""
    import ast

    scope: list = ast.parse(source).body
    for part in dotted.split("."):
        found = [node for node in scope if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == part]
        if not found:
            return False
        scope = found[0].body
    return True


def test_the_chapter_page_includes_code_that_exists():
    """book/ar1.md pulls its code from clutils by object name: every object must be there."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "ar1.md").read_text()
    included = _included_objects(page)
    objects = {obj for _, obj in included}
    # the formulas of the issue: CWR+'s consolidation and zero init, SI's Eq. 9-11, Eq. 7's decay, Eq. 5
    assert {"ConsolidatedHead.consolidate", "ConsolidatedHead.reset_temporary", "SISIT.batch_importance",
            "SISIT.normalise", "ClippedImportance.consolidate_importance", "QuadraticPenalty.after_backward",
            "lwf_lambdas", "AR1.after_task"} <= objects
    for path, obj in included:
        source = (root / "book" / path).resolve()
        assert source.is_file(), f"book/ar1.md includes {path}, which does not exist"
        assert _defines(source.read_text(), obj), f"{path} defines no {obj} (book/ar1.md includes it)"
    assert not _defines("class A:\n    def f(self): pass\n", "A.g")  # the check can fail


def test_confusion_rows_draw_class_labels_and_one_colour_bar():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clutils import plots

    rng = np.random.default_rng(0)
    rows = {"naive": [rng.random((4, 4)) for _ in range(3)], "ewc": [rng.random((4, 4)) for _ in range(3)]}
    names = ["zero", "one", "two", "three"]
    fig = plots.confusion_rows(rows, names, groups=[2, 2])
    panels, bar = fig.axes[:-1], fig.axes[-1]
    assert len(panels) == 6 and bar.get_ylabel() == "share of the true class"
    assert [t.get_text() for t in panels[0].get_yticklabels()] == names  # first column: true classes
    assert [t.get_text() for t in panels[-1].get_xticklabels()] == names  # last row: predicted classes
    assert panels[1].get_yticklabels() == [] or not panels[1].get_yticks().size
    plt.close(fig)
    with pytest.raises(ValueError, match="class names"):
        plots.confusion_rows(rows, names[:3])
    # a run's matrices, sorted by batch: the labels follow the class order
    C = [np.eye(4, dtype=int).tolist(), np.eye(4, dtype=int).tolist()]
    r = fake_result([[1, 0], [1, 1]], [20, 20], [[2, 3], [0, 1]], C)
    fig = ex.plot_confusion_rows({"cwr": r}, class_names=names)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["two", "three", "zero", "one"]
    plt.close(fig)


def test_ablations_have_colours_of_their_own():
    from clutils.style import STRATEGY_COLORS

    ablations = ["cwr + zero init", "cwr + mean-shift", "naive | zero init"]
    colours = [ex.color(label) for label in ablations]
    assert len(set(colours)) == len(colours)
    others = {name: c for name, c in STRATEGY_COLORS.items() if name not in ("cwr-zero-init", "cwr-mean-shift",
                                                                              "naive-zero-init")}
    assert not set(colours) & set(others.values())
    assert ex.color("cwr+ (both)") == ex.color("cwr+") and ex.color("naive | random init") == ex.color("naive")


def test_the_chapter_page_shows_a_figure_its_notebook_glues():
    """The landing page's key figure is pasted from part 2 (``glue:any`` with ``:doc:``), not a committed PNG."""
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "ar1.md").read_text()
    pasted = re.findall(r"```\{glue:any\}\s+(\S+)\n:doc:\s+(\S+)", page)
    assert pasted, "book/ar1.md shows no figure from the build"
    for key, doc in pasted:
        notebook = json.loads((root / "book" / doc).resolve().read_text())
        code = "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
        assert re.search(r'\bglue\(\s*"' + re.escape(key) + '"', code), f"{doc} does not glue {key}"
    assert ".png" not in page
