"""HAT (clutils.strategies.hat, clutils.models_hat): the guarantee, the formulas, the diagnostics."""
from __future__ import annotations

import math

import pytest
import torch

from clutils.data.named import make_benchmark
from clutils.models_hat import build_hat_model
from clutils.strategies import make
from clutils.strategies.base import TrainingData
from clutils.strategies.hat import (HAT, annealed_s, attention_regulariser, capacity_used, compensation,
                                    gradient_masks, mask_overlap)
from clutils.train import TrainConfig, fit, make_optimizer, train_task

pytestmark = pytest.mark.usefixtures("one_thread")

_BENCH = {}


def bench(dataset: str = "digits"):
    """Two tasks of five classes (the AlexNet-like net needs Fashion-MNIST's 28x28 images)."""
    if dataset not in _BENCH:
        _BENCH[dataset] = make_benchmark("split-mnist", dataset=dataset, n_tasks=2, train_per_class=30,
                                         test_per_class=10)
    return _BENCH[dataset]


ARCHS = {
    "linear": dict(arch="mlp", hidden=(32, 32)),
    "conv": dict(arch="alexnet", width=0.125, fc=32),
    "residual": dict(arch="resnet", widths=(8, 16), blocks=(1, 1), bn="task"),
}
DATA = {"linear": "digits", "conv": "fashion-mnist", "residual": "digits"}


def claim_half(model, task: int = 0) -> None:
    """Task ``task`` fully claims every other unit of every gate (embedding +6) and leaves the rest (-6):
    at s_max = 400 its attention is exactly 1 or exactly 0 in float32."""
    with torch.no_grad():
        for gate in model.gates.values():
            e = gate.embedding[task]
            e.fill_(-6.0)
            e[::2] = 6.0


@pytest.mark.parametrize("kind", list(ARCHS))
def test_fully_claimed_parameters_get_no_update_and_old_outputs_stay_bit_identical(kind):
    b = bench(DATA[kind])
    model = build_hat_model(b, seed=0, **ARCHS[kind])
    strategy = HAT()
    strategy.setup(model, b)
    claim_half(model)
    strategy.after_task(model, b.tasks[0], None)
    assert set(torch.cat([a.unique() for a in strategy.cumulative.values()]).tolist()) == {0.0, 1.0}
    model.eval()
    model.s = strategy.hp["s_max"]
    x_old = b.tasks[0].test.x
    before_out = model(x_old, 0).detach().clone()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    config = TrainConfig(epochs=2, batch_size=16, lr=0.05, optimizer="sgd", progress=False)
    strategy.before_task(model, b.tasks[1])
    optimizer = make_optimizer(model, config, 1)
    train_task(model, b, b.tasks[1], TrainingData(b.tasks[1].train), strategy, optimizer, config)

    masks = gradient_masks(model, strategy.cumulative)
    params = dict(model.named_parameters())
    frozen = moved = 0
    for name, mask in masks.items():
        claimed = mask == 0
        assert torch.equal(params[name][claimed], before[name][claimed]), name
        frozen += int(claimed.sum())
        moved += int((params[name][~claimed] != before[name][~claimed]).sum())
    assert frozen > 0 and moved > 0  # some parameters were protected, others did learn
    model.eval()
    model.s = strategy.hp["s_max"]
    assert torch.equal(model(x_old, 0), before_out)


def test_shared_batch_norm_breaks_the_guarantee():
    """The same run with one BN for all tasks: the running statistics move, old outputs change."""
    b = bench()
    model = build_hat_model(b, seed=0, **{**ARCHS["residual"], "bn": "shared"})
    strategy = HAT()
    strategy.setup(model, b)
    claim_half(model)
    strategy.after_task(model, b.tasks[0], None)
    model.eval()
    model.s = strategy.hp["s_max"]
    before_out = model(b.tasks[0].test.x, 0).detach().clone()
    config = TrainConfig(epochs=1, batch_size=16, lr=0.05, optimizer="sgd", progress=False)
    strategy.before_task(model, b.tasks[1])
    train_task(model, b, b.tasks[1], TrainingData(b.tasks[1].train), strategy, make_optimizer(model, config, 1), config)
    model.eval()
    assert not torch.equal(model(b.tasks[0].test.x, 0), before_out)


def test_compensation_is_the_ratio_of_the_two_sigmoid_derivatives():
    e = torch.linspace(-0.5, 0.5, 41, dtype=torch.float64, requires_grad=True)  # float64: sigmoid'(s e) underflows in float32
    s_max = 400.0
    for s in (1 / s_max, 0.5, 3.0, 50.0):
        (annealed,) = torch.autograd.grad(torch.sigmoid(s * e).sum(), e)  # s sigmoid'(s e)
        (target,) = torch.autograd.grad((s_max * torch.sigmoid(e)).sum(), e)  # s_max sigmoid'(e)
        factor = compensation(e.detach(), s, s_max, clamp=1e9)
        torch.testing.assert_close(annealed * factor, target, rtol=1e-4, atol=1e-6)
    # the clamp of s e at +-50 bounds the factor where cosh would overflow
    assert torch.isfinite(compensation(torch.tensor([6.0]), 400.0, 400.0)).all()


def test_annealing_schedules():
    assert annealed_s(1, 10, 400.0) == pytest.approx(1 / 400)
    assert annealed_s(10, 10, 400.0) == pytest.approx(400.0)
    assert annealed_s(10, 10, 400.0, "code") < 400.0  # the authors' code never reaches s_max
    assert annealed_s(1, 1, 400.0) == 400.0
    s = [annealed_s(b, 7, 400.0) for b in range(1, 8)]
    assert all(x < y for x, y in zip(s, s[1:]))
    with pytest.raises(ValueError):
        annealed_s(0, 10, 400.0)
    with pytest.raises(ValueError):
        make("hat", schedule="cosine")


def test_regulariser_is_zero_when_the_new_mask_only_reuses_claimed_units():
    cumulative = {"a": torch.tensor([1.0, 1.0, 0.0, 0.0]), "b": torch.tensor([1.0, 0.0])}
    reuse = {"a": torch.tensor([1.0, 0.3, 0.0, 0.0]), "b": torch.tensor([0.7, 0.0])}
    assert attention_regulariser(reuse, cumulative).item() == 0.0
    fresh = {"a": torch.tensor([0.0, 0.0, 1.0, 0.0]), "b": torch.tensor([0.0, 0.0])}
    assert attention_regulariser(fresh, cumulative).item() == pytest.approx(1 / 3)  # 1 of 3 free units
    # before the first task: the mean attention
    first = {"a": torch.tensor([0.2, 0.4, 0.6, 0.8]), "b": torch.tensor([0.0, 1.0])}
    assert attention_regulariser(first, None).item() == pytest.approx(3.0 / 6)


def test_gradient_mask_of_the_first_dense_layer_repeats_the_channel_mask():
    b = bench("fashion-mnist")
    model = build_hat_model(b, arch="alexnet", width=0.125, fc=16, seed=0)
    cumulative = {k: torch.zeros(v) for k, v in model.gate_sizes.items()}
    cumulative["c3"][1] = 1.0
    cumulative["fc1"][:] = 1.0
    masks = gradient_masks(model, cumulative)
    m = masks["fc1.weight"]
    P = model.positions
    assert m.shape == model.fc1.weight.shape
    assert (m[:, P:2 * P] == 0).all() and (m[:, :P] == 1).all() and (m[:, 2 * P:] == 1).all()
    assert (masks["convs.2.bias"] == 1 - cumulative["c3"]).all()


def test_hat_learns_and_keeps_its_tasks_through_the_loop():
    b = bench()
    model = build_hat_model(b, arch="mlp", hidden=(32,), seed=0)
    strategy = make("hat")
    result = fit(model, b, strategy, TrainConfig(epochs=5, batch_size=16, lr=0.05, optimizer="sgd",
                                                 progress=False), device="cpu")
    R = result.R
    assert R[0, 0] > 0.6 and R[1, 1] > 0.6  # five classes per task: chance is 0.2
    assert R[1, 0] == R[0, 0]  # the first task is not forgotten
    used = capacity_used(strategy.cumulative)
    assert set(used) == {"fc1"} and 0 < used["fc1"] <= 1
    O = mask_overlap(strategy.per_task)
    assert O.shape == (2, 2) and torch.allclose(O.diagonal(), torch.ones(2))
    # the state round-trips (checkpointing)
    clone = HAT()
    clone.load_state_dict(strategy.state_dict())
    for k in strategy.cumulative:
        assert torch.equal(clone.cumulative[k], strategy.cumulative[k])


def test_hat_refuses_a_model_without_gates():
    b = bench()
    with pytest.raises(TypeError, match="gated network"):
        HAT().setup(build_hat_model(b, masked=False), b)


def test_mask_overlap_counts_shared_units():
    per_task = {0: {"l": torch.tensor([1.0, 1.0, 0.0, 0.0])}, 1: {"l": torch.tensor([0.0, 1.0, 1.0, 1.0])}}
    O = mask_overlap(per_task)
    assert O[0, 1].item() == pytest.approx(1 / 3) and O[1, 0].item() == pytest.approx(0.5)
    assert math.isnan(mask_overlap({0: {"l": torch.zeros(3)}})[0, 0].item())


def test_code_excerpts_on_the_chapter_page_are_verbatim_from_the_implementation():
    """book/hat.md shows the code next to the formulas; it must not drift from the modules."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "hat.md").read_text()
    source = "\n".join((root / "clutils" / p).read_text() for p in ("strategies/hat.py", "models_hat.py", "schedules.py"))
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 5
    for block in blocks:
        assert block.strip("\n") in source, f"excerpt not found in the HAT modules:\n{block}"


def test_hat_flushes_denormals_while_a_task_trains_and_restores_the_default_after():
    """Gates sigmoid(s e) below 1.2e-38 are denormal and slow the CPU's matrix products; HAT flushes them."""
    def product():
        return (torch.tensor([1e-30]) * torch.tensor([1e-10])).item()  # 1e-40: denormal, or 0 when flushed

    seen = []

    class Watching(HAT):
        def after_backward(self, model):
            seen.append(product())
            super().after_backward(model)

    b = bench()
    model = build_hat_model(b, "mlp", hidden=(16, 16), seed=0)
    fit(model, b, Watching(), TrainConfig(epochs=1, batch_size=64, lr=0.05, optimizer="sgd", progress=False),
        device="cpu")
    assert seen and all(v == 0.0 for v in seen)
    assert product() > 0.0  # PyTorch's default is back after the task
