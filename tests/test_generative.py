"""Deep generative replay (``clutils.strategies.generative``) and its VAE (``clutils.generators``).

Everything runs on the CPU with scikit-learn's ``digits`` (8x8 images) and tiny networks.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clutils.checkpoint import read_checkpoint
from clutils.data.named import make_benchmark
from clutils.generators import VAE, train_vae
from clutils.models import build_model
from clutils.result import Result
from clutils.strategies import make
from clutils.strategies.base import Batch, TrainingData
from clutils.strategies.generative import (DeepGenerativeReplay, replay_correction, replay_ratio,
                                           scholar_labels, solver_loss)
from clutils.strategies.hyperparameters import HyperparameterError
from clutils.train import CHECKPOINT, TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(gen_steps=60, gen_hidden=32, z_dim=4, gen_batch_size=32)  # a generator that trains in a blink
_BENCHES: dict = {}


def bench(scenario: str = "class", n_tasks: int | None = None):
    key = (scenario, n_tasks)
    if key not in _BENCHES:
        if scenario == "domain":
            _BENCHES[key] = make_benchmark("permuted-mnist", dataset="digits", n_tasks=n_tasks or 3,
                                           train_per_class=20, test_per_class=10)
        else:
            _BENCHES[key] = make_benchmark("split-mnist", dataset="digits", scenario=scenario, n_tasks=n_tasks,
                                           train_per_class=30, test_per_class=10)
    return _BENCHES[key]


def config(**changes) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "lr": 1e-3, "progress": False, **changes})


# ----------------------------------------------------------------------------------------- the VAE


def test_vae_reduces_its_reconstruction_loss_on_tiny_data():
    torch.manual_seed(0)
    x = bench().tasks[0].train.x  # 60 images of two digits
    vae = VAE(x.shape[1:], hidden=64, z_dim=8)
    vae.fit_range(x)
    before = vae.reconstruction_loss(x)
    losses = train_vae(vae, x, steps=300, batch_size=32)
    after = vae.reconstruction_loss(x)
    assert after < 0.7 * before, (before, after)
    assert losses[-1] < losses[0]  # the negative ELBO falls too
    samples = vae.sample(5)
    assert samples.shape == (5, *x.shape[1:])
    assert samples.min() >= vae.low - 1e-6 and samples.max() <= vae.high + 1e-6  # in the data's range


def test_vae_loss_is_bce_plus_kl():
    torch.manual_seed(1)
    vae = VAE((1, 2, 2), hidden=3, z_dim=2)
    x = torch.rand(4, 1, 2, 2)
    vae.fit_range(torch.tensor([0.0, 1.0]))
    torch.manual_seed(5)
    loss = vae.loss(x)
    torch.manual_seed(5)  # the same reparameterisation noise, by hand
    mu, log_var = vae.encode(x)
    z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
    p = torch.sigmoid(vae.decode_logits(z))
    target = x.flatten(1)
    bce = -(target * p.log() + (1 - target) * (1 - p).log()).sum(1)
    kl = 0.5 * (mu ** 2 + log_var.exp() - 1 - log_var).sum(1)
    torch.testing.assert_close(loss, bce + kl, rtol=1e-5, atol=1e-5)


def test_train_vae_mixes_current_data_and_replay_with_weights_r_and_1_minus_r():
    """With r = 1 the replay is never drawn; with r < 1 it is drawn once per step."""
    x = torch.rand(20, 1, 2, 2)
    calls = []

    def replay(n):
        calls.append(n)
        return torch.rand(n, 1, 2, 2)

    train_vae(VAE((1, 2, 2), 3, 2), x, steps=4, batch_size=8, replay=replay, r=1.0)
    assert calls == []
    train_vae(VAE((1, 2, 2), 3, 2), x, steps=4, batch_size=8, replay=replay, r=0.5)
    assert calls == [8, 8, 4, 8]  # as many replayed samples as current ones (20 = 8 + 8 + 4)
    with pytest.raises(ValueError, match="ratio"):
        train_vae(VAE((1, 2, 2), 3, 2), x, steps=1, replay=replay, r=1.5)


# ---------------------------------------------------------------------------------- the solver loss


@pytest.mark.parametrize("t", [1, 2, 3, 5])
def test_r_is_one_over_t_unless_fixed(t):
    assert replay_ratio(t) == pytest.approx(1 / t)
    assert replay_ratio(t, 0.3) == 0.3
    assert make("dgr", ratio=0.25).hp["ratio"] == 0.25


@pytest.mark.parametrize("r, n_current, n_replay", [(0.5, 4, 4), (0.2, 4, 4), (1 / 3, 3, 5)])
def test_the_step_minimises_r_ce_current_plus_1_minus_r_ce_replayed(r, n_current, n_replay):
    """The loop's loss (mean CE over the concatenation) + the correction = the solver loss, and the
    gradient on the current rows is r x that of CE(current), on the replayed rows (1 - r) x CE(replayed)."""
    torch.manual_seed(0)
    logits = torch.randn(n_current + n_replay, 5, requires_grad=True)
    y = torch.randint(5, (n_current + n_replay,))
    total = F.cross_entropy(logits, y) + replay_correction(logits, y, n_current, r)
    (grad,) = torch.autograd.grad(total, logits)
    cur = logits[:n_current].detach().requires_grad_()
    old = logits[n_current:].detach().requires_grad_()
    (g_cur,) = torch.autograd.grad(F.cross_entropy(cur, y[:n_current]), cur)
    (g_old,) = torch.autograd.grad(F.cross_entropy(old, y[n_current:]), old)
    torch.testing.assert_close(grad[:n_current], r * g_cur)
    torch.testing.assert_close(grad[n_current:], (1 - r) * g_old)
    torch.testing.assert_close(total, solver_loss(logits, y, n_current, r))


def test_penalty_is_the_correction_only_for_an_extended_batch():
    strategy = make("dgr", **SMALL)
    b = bench()
    model = build_model(b, hidden=(16,), seed=0)
    strategy.setup(model, b)
    x, y = b.tasks[0].train.x[:8], b.tasks[0].train.y[:8]
    assert strategy.extend_batch(x, y, None)[0] is x  # nothing to replay before the first task ends
    assert strategy.penalty(model, Batch(x, y, None, model(x))) is None


# ------------------------------------------------------------------------------ the replayed samples


def _after_first_task(mode: str, scenario: str = "class"):
    """A strategy that has finished task 1 (the model trained briefly), and the model's copy at that point."""
    b = bench(scenario)
    model = build_model(b, hidden=(16,), seed=0)
    strategy = make("dgr", replay=mode, **SMALL)
    strategy.setup(model, b)
    first = b.tasks[0]
    model.prepare_task(first.classes, b.scenario)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    task_arg = 0 if scenario == "task" else None
    for _ in range(30):
        loss = F.cross_entropy(model(first.train.x, task_arg), first.train.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    strategy.after_task(model, first, TrainingData(first.train))
    snapshot = copy.deepcopy(model)
    with torch.no_grad():  # "training task 2" moves the weights far away
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.prepare_task(b.tasks[1].classes, b.scenario)
    strategy.before_task(model, b.tasks[1])
    return b, model, strategy, snapshot


@pytest.mark.parametrize("mode", ["generative", "exact", "noise"])
def test_replayed_labels_come_from_the_previous_solver(mode):
    b, model, strategy, snapshot = _after_first_task(mode)
    task = b.tasks[1]
    x, y = task.train.x[:16], task.train.y[:16]
    torch.manual_seed(3)
    xt, yt, tt = strategy.extend_batch(x, y, None)
    assert tt is None and torch.equal(xt[:16], x) and torch.equal(yt[:16], y)  # the current batch first
    x_old, y_old = xt[16:], yt[16:]
    assert len(x_old) == 16
    with torch.no_grad():
        old_logits = snapshot(x_old)
        now_logits = model(x_old)
    seen = list(b.tasks[0].classes)
    expected = torch.tensor(seen)[old_logits[:, seen].argmax(1)]
    assert torch.equal(y_old, expected)  # the previous solver's answer among the classes seen so far
    assert set(y_old.tolist()) <= set(seen)
    assert not torch.equal(y_old, now_logits.argmax(1))  # not the current model's
    if mode == "exact":  # real inputs of task 1
        train = b.tasks[0].train.x.flatten(1)
        assert all((train == row).all(1).any() for row in x_old.flatten(1))
    penalty = strategy.penalty(model, Batch(xt, yt, tt, model(xt)))
    assert penalty is not None and torch.isfinite(penalty)


def test_task_incremental_replay_labels_each_input_with_an_earlier_tasks_head():
    b, model, strategy, snapshot = _after_first_task("generative", scenario="task")
    x, y = b.tasks[1].train.x[:8], b.tasks[1].train.y[:8]
    xt, yt, tt = strategy.extend_batch(x, y, 1)
    assert tt.tolist() == [1] * 8 + [0] * 8  # the current task's id, then the only earlier task's
    assert torch.equal(yt[8:], scholar_labels(snapshot, xt[8:], tt[8:]))


def test_no_replay_trains_exactly_like_naive_fine_tuning():
    b = bench()
    runs = []
    for strategy in (make("naive"), make("dgr", replay="none")):
        model = build_model(b, hidden=(16,), seed=0)
        runs.append(fit(model, b, strategy, config(), device="cpu"))
    assert runs[0].accuracy_matrix == runs[1].accuracy_matrix
    assert runs[0].epoch_losses == runs[1].epoch_losses


def test_generative_replay_forgets_less_than_no_replay_in_class_il():
    """Split digits, class-incremental: replaying the scholar keeps part of the old classes."""
    b = make_benchmark("split-mnist", dataset="digits", scenario="class", n_tasks=2, train_per_class=60,
                       test_per_class=20)
    final = {}
    for mode in ("none", "generative"):
        model = build_model(b, hidden=(64,), seed=0)
        strategy = make("dgr", replay=mode, gen_steps=400, gen_hidden=64, z_dim=8, gen_batch_size=64)
        final[mode] = fit(model, b, strategy, config(epochs=10), device="cpu").R[-1, 0]
    assert final["none"] < 0.2 and final["generative"] > final["none"] + 0.2, final


# ------------------------------------------------------------------------------------- checkpoints


class Interrupted(DeepGenerativeReplay):
    """Deep generative replay interrupted (like Ctrl-C) at the third step of task ``at_task``."""

    def __init__(self, at_task: int, **hp):
        super().__init__(**hp)
        self.at_task, self.steps, self.current = at_task, 0, None

    def before_task(self, model, task):
        super().before_task(model, task)
        self.current, self.steps = task.index, 0

    def after_step(self, model):
        self.steps += 1
        if self.current == self.at_task and self.steps == 3:
            raise KeyboardInterrupt


@pytest.mark.parametrize("mode", ["generative", "exact"])
def test_checkpoint_and_resume_is_bit_identical(mode, tmp_path):
    b = bench("class", n_tasks=5)
    hp = {"replay": mode, **SMALL}

    def run(strategy, run_dir=None):
        model = build_model(b, hidden=(16,), seed=0)
        result = fit(model, b, strategy, config(), device="cpu", run_dir=run_dir)
        return result, strategy

    reference, ref_strategy = run(make("dgr", **hp))
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(Interrupted(at_task=2, **hp), run_dir)
    assert Result.load(run_dir / "result.json").tasks_done == 2
    state = read_checkpoint(run_dir / CHECKPOINT, "cpu")["strategy"]  # tensors and plain values only
    assert any(k.startswith("solver.") for k in state)
    assert any(k.startswith("generator.") for k in state) == (mode == "generative")
    resumed, strategy = run(make("dgr", **hp), run_dir)
    assert resumed.accuracy_matrix == reference.accuracy_matrix  # bit for bit
    assert resumed.epoch_losses == reference.epoch_losses and resumed.epoch_penalties == reference.epoch_penalties
    a, c = ref_strategy.state_dict(), strategy.state_dict()
    assert sorted(a) == sorted(c)
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], c[key]), key
        else:
            assert a[key] == c[key], key


def test_state_round_trip_restores_generator_and_solver():
    b, model, strategy, snapshot = _after_first_task("generative")
    saved = strategy.state_dict()
    restored = make("dgr", replay="generative", **SMALL)
    restored.setup(build_model(b, hidden=(16,), seed=1), b)
    restored.load_state_dict(copy.deepcopy(saved))
    restored.before_task(model, b.tasks[1])  # the solver is rebuilt on the model's structure
    torch.manual_seed(4)
    one = strategy.extend_batch(b.tasks[1].train.x[:8], b.tasks[1].train.y[:8], None)
    torch.manual_seed(4)
    two = restored.extend_batch(b.tasks[1].train.x[:8], b.tasks[1].train.y[:8], None)
    assert all(torch.equal(u, v) for u, v in zip(one[:2], two[:2]))


# ------------------------------------------------------------------------------- declaration, input


def test_scenarios_are_declared_and_each_runs():
    assert set(DeepGenerativeReplay.scenarios) == {"task", "domain", "class"}
    for scenario in DeepGenerativeReplay.scenarios:
        b = bench(scenario)
        result = fit(build_model(b, hidden=(16,), seed=0), b, make("dgr", **SMALL), config(epochs=1),
                     device="cpu")
        assert np.isfinite(result.R).all()


@pytest.mark.parametrize("bad, match", [
    ({"replay": "gan"}, "replay must be one of"),
    ({"ratio": 1.5}, "ratio"),
    ({"ratio": 0.0}, "ratio"),
])
def test_bad_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        make("dgr", **bad)


@pytest.mark.parametrize("bad", [{"gen_steps": 0}, {"z_dim": 2.5}, {"gen_lr": -1.0}])
def test_generator_hyperparameters_are_checked(bad):
    with pytest.raises(HyperparameterError):
        make("dgr", **bad)


# ------------------------------------------------------------------------------------ chapter helpers


def test_scholar_chain_trains_each_solver_on_the_previous_scholar_only():
    from clutils import presets
    from clutils.experiments import generative as ex

    settings = presets.get("dgr", "smoke")["chain"]
    settings.update(train_per_class=30, test_per_class=10, first_epochs=10, solver_steps=100,
                    gen={"gen_steps": 600, "gen_hidden": 64, "gen_batch_size": 32, "z_dim": 8}, samples_shown=3)
    out = ex.scholar_chain(settings, dataset="digits", seed=0, device="cpu")
    assert len(out["accuracy"]) == settings["scholars"] == len(out["samples"])
    assert out["accuracy"][0] > 0.5  # the first solver learnt the real digits
    assert out["accuracy"][1] > 0.2  # the second one, from generated digits only, is far above chance (0.1)
    assert out["samples"][0].shape == (3, 1, 8, 8)
