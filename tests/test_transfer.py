"""The transfer chapter's building blocks (clutils.transfer): each checked against its formula."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from clutils import presets
from clutils.data.tensors import TensorData
from clutils.transfer import data as tdata
from clutils.transfer.dann import DANN, dann_lambda, grad_reverse, train_dann
from clutils.transfer.distill import distillation_loss, kd_loss, soft_targets
from clutils.transfer.finetune import MODES, Classifier, modes_for, prepare_finetune
from clutils.transfer.multitask import GradNorm, MultiTaskNet, UncertaintyWeighting, make_weighting, train_multitask
from clutils.transfer.training import accuracy, index_batches, train_classifier


# ----------------------------------------------------------------------------- gradient reversal

@pytest.mark.parametrize("lambd", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_is_the_identity_forward_and_flips_and_scales_the_gradient(lambd):
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, dtype=torch.float64)
    y = grad_reverse(x, lambd)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -lambd * w)


def test_gradient_reversal_passes_gradcheck_against_its_stated_jacobian():
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(grad_reverse(x, 0.7).pow(2).sum(), x)
    assert torch.allclose(g, -0.7 * 2 * x)


def test_dann_schedule_starts_at_zero_and_tends_to_one():
    assert dann_lambda(0.0) == 0.0
    assert 0.99 < dann_lambda(1.0) < 1.0
    values = [dann_lambda(p / 10) for p in range(11)]
    assert values == sorted(values)
    with pytest.raises(ValueError):
        dann_lambda(1.5)


def test_dann_domain_loss_reaches_the_body_reversed_and_source_only_ignores_the_target():
    torch.manual_seed(0)
    model = DANN(6, [8], 3, domain_hidden=4)
    xs, ys, xt = torch.randn(16, 6), torch.randint(0, 3, (16,)), torch.randn(16, 6) + 3
    from clutils.transfer.dann import dann_loss
    _, domain = dann_loss(model, xs, ys, xt, lambd=1.0)
    body_w = model.body.layers[1].weight
    (g_reversed,) = torch.autograd.grad(domain, body_w)
    feats = model.body(torch.cat([xs, xt]))
    plain = F.cross_entropy(model.domain(feats), torch.cat([torch.zeros(16), torch.ones(16)]).long())
    (g_plain,) = torch.autograd.grad(plain, body_w)
    assert torch.allclose(g_reversed, -g_plain, atol=1e-6)
    history = train_dann(model, xs, ys, xt, steps=3, lr=1e-3, batch_size=8, seed=0, adapt=False)
    assert history["domain"] == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- distillation

def test_distillation_loss_equals_its_closed_form():
    torch.manual_seed(0)
    z, v = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    for T in (1.0, 4.0, 20.0):
        p = torch.exp(v / T) / torch.exp(v / T).sum(1, keepdim=True)
        q = torch.exp(z / T) / torch.exp(z / T).sum(1, keepdim=True)
        closed = T ** 2 * (-(p * torch.log(q)).sum(1)).mean()
        assert torch.allclose(distillation_loss(z, v, T), closed)
        assert torch.allclose(distillation_loss(z, v, T, scale=False), closed / T ** 2)
        assert torch.allclose(soft_targets(v, T), p)


def test_distillation_gradient_is_q_minus_p_over_T_and_quadratic_at_high_temperature():
    torch.manual_seed(1)
    N = 6
    z = torch.randn(1, N, dtype=torch.float64)
    v = torch.randn(1, N, dtype=torch.float64)
    z, v = z - z.mean(), v - v.mean()  # zero-mean logits, as the lecture assumes
    for T in (1.0, 4.0, 20.0):
        zz = z.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(distillation_loss(zz, v, T, scale=False), zz)
        assert torch.allclose(g, (soft_targets(z, T) - soft_targets(v, T)) / T)
    T = 1000.0
    zz = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(distillation_loss(zz, v, T, scale=False), zz)
    approx = (z - v) / (N * T ** 2)
    assert torch.allclose(g, approx, rtol=1e-2, atol=0)
    # with the T^2 factor the soft term's gradient no longer shrinks with T: it tends to (z - v) / N
    (g_scaled,) = torch.autograd.grad(distillation_loss(zz, v, T), zz)
    assert torch.allclose(g_scaled, (z - v) / N, rtol=1e-2, atol=0)


def test_kd_loss_mixes_hard_and_soft_terms():
    z, v, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert torch.allclose(kd_loss(z, v, y, 4.0, 0.0), F.cross_entropy(z, y))
    assert torch.allclose(kd_loss(z, v, y, 4.0, 1.0), distillation_loss(z, v, 4.0))
    with pytest.raises(ValueError):
        kd_loss(z, v, y, 4.0, 1.5)
    with pytest.raises(ValueError):
        distillation_loss(z, v[:, :2], 2.0)


# ----------------------------------------------------------------------------- fine-tuning

def _toy(n=60, d=10, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return x, y


def test_linear_probe_leaves_the_body_bit_identical_and_the_source_untouched():
    x, y = _toy()
    torch.manual_seed(0)
    source = Classifier(10, [16, 8], 4)
    before = copy.deepcopy(source.state_dict())
    model, groups = prepare_finetune(source, "linear_probe", 3, 1e-2)
    body = copy.deepcopy(model.body.state_dict())
    head = model.head.weight.detach().clone()
    train_classifier(model, x, y, steps=20, lr=1e-2, batch_size=16, seed=0, groups=groups)
    for k, v in model.body.state_dict().items():
        assert torch.equal(v, body[k]), k
    assert not torch.equal(model.head.weight, head)
    for k, v in source.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("mode", [m for m in modes_for("mlp") if m != "linear_probe"])
def test_other_modes_train_the_body_and_lower_lr_scales_its_rate(mode):
    x, y = _toy()
    torch.manual_seed(0)
    source = Classifier(10, [16], 4)
    model, groups = prepare_finetune(source, mode, 3, 1e-2, body_lr_factor=0.1)
    assert groups[0]["lr"] == pytest.approx(1e-3 if mode == "lower_lr" else 1e-2)
    if mode == "scratch":
        assert not torch.equal(model.body.layers[1].weight, source.body.layers[1].weight)
    else:
        assert torch.equal(model.body.layers[1].weight, source.body.layers[1].weight)
    start = model.body.layers[1].weight.detach().clone()
    train_classifier(model, x, y, steps=5, lr=1e-2, batch_size=16, seed=0, groups=groups)
    assert not torch.equal(model.body.layers[1].weight, start)


def test_conv_body_scratch_resets_the_filters_and_the_probe_keeps_them():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, 12, 12, generator=g), torch.randint(0, 3, (40,), generator=g)
    torch.manual_seed(0)
    source = Classifier(144, [16], 4, arch="conv", image_shape=(1, 12, 12), conv_width=4)
    first_conv = source.body.layers[0].weight
    assert source(x).shape == (40, 4)
    scratch, _ = prepare_finetune(source, "scratch", 3, 1e-2, seed=1)
    assert not torch.equal(scratch.body.layers[0].weight, first_conv)
    assert not torch.equal(scratch.body.fc[0].weight, source.body.fc[0].weight)
    probe, groups = prepare_finetune(source, "linear_probe", 3, 1e-2)
    train_classifier(probe, x, y, steps=5, lr=1e-2, batch_size=16, seed=0, groups=groups)
    for k, v in probe.body.state_dict().items():
        assert torch.equal(v, source.body.state_dict()[k]), k
    frozen, groups = prepare_finetune(source, "frozen_conv", 3, 1e-2)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in [*frozen.body.fc.parameters(),
                                                                               *frozen.head.parameters()]}
    train_classifier(frozen, x, y, steps=5, lr=1e-2, batch_size=16, seed=0, groups=groups)
    for k, v in frozen.body.layers.state_dict().items():
        assert torch.equal(v, source.body.layers.state_dict()[k]), k
    assert not torch.equal(frozen.body.fc[0].weight, source.body.fc[0].weight)
    full, groups = prepare_finetune(source, "full", 3, 1e-2)
    train_classifier(full, x, y, steps=5, lr=1e-2, batch_size=16, seed=0, groups=groups)
    assert not torch.equal(full.body.layers[0].weight, first_conv)


def test_classifier_rejects_a_body_it_cannot_build():
    with pytest.raises(ValueError, match="unknown body"):
        Classifier(144, [16], 3, arch="resnet")
    with pytest.raises(ValueError, match="image_shape"):
        Classifier(144, [16], 3, arch="conv")
    with pytest.raises(ValueError, match="one fully connected layer"):
        Classifier(144, [16, 8], 3, arch="conv", image_shape=(1, 12, 12))
    with pytest.raises(ValueError, match="must be square and hold 144"):
        Classifier(144, [16], 3, arch="conv", image_shape=(1, 10, 12))
    with pytest.raises(ValueError, match="too small"):
        Classifier(64, [16], 3, arch="conv", image_shape=(1, 8, 8))


def test_finetune_rejects_bad_input():
    source = Classifier(10, [16], 4)
    assert "frozen_conv" not in modes_for("mlp") and modes_for("conv") == MODES
    with pytest.raises(ValueError, match="needs the conv body"):
        prepare_finetune(source, "frozen_conv", 3, 1e-2)
    with pytest.raises(ValueError, match="unknown body"):
        modes_for("vit")
    with pytest.raises(ValueError, match="mode"):
        prepare_finetune(source, "freeze-all", 3, 1e-2)
    with pytest.raises(ValueError, match="body_lr_factor"):
        prepare_finetune(source, "lower_lr", 3, 1e-2, body_lr_factor=0.0)


def test_training_learns_a_separable_problem_and_batches_cover_the_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 2, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    model = Classifier(2, [8], 2)
    losses = train_classifier(model, x, y, steps=150, lr=1e-2, batch_size=32, seed=0)
    assert losses[-1] < losses[0] and accuracy(model, x, y) > 0.9
    batches = list(index_batches(10, 4, 3, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))


# ----------------------------------------------------------------------------- data

def test_class_split_relabels_and_upper_body_marks_tops():
    data = TensorData(torch.arange(6.0).unsqueeze(1), torch.tensor([5, 0, 7, 5, 2, 9]))
    part = tdata.class_split(data, [7, 5])
    assert part.y.tolist() == [1, 0, 1] and part.x.squeeze(1).tolist() == [0.0, 2.0, 3.0]
    assert tdata.upper_body(torch.tensor([0, 1, 2, 3, 4, 5, 6])).tolist() == [1, 0, 1, 0, 1, 0, 1]
    x = torch.ones(3, 4)
    assert torch.equal(tdata.shift_domain(x, 0.0, 0, invert=True), -x)
    assert torch.equal(tdata.shift_domain(x, 1.0, 3), tdata.shift_domain(x, 1.0, 3))


# ----------------------------------------------------------------------------- multi-task weighting

def test_uncertainty_weighting_matches_its_formula():
    weighting = UncertaintyWeighting(2)
    with torch.no_grad():
        weighting.log_var.copy_(torch.tensor([0.5, -1.0]))
    l1, l2 = torch.tensor(0.8), torch.tensor(0.3)
    expected = math.exp(-0.5) * 0.8 + 0.25 + math.exp(1.0) * 0.3 - 0.5
    assert weighting.combine([l1, l2]).item() == pytest.approx(expected, rel=1e-6)
    assert weighting.weights() == pytest.approx([math.exp(-0.5), math.exp(1.0)], rel=1e-6)


def _two_tasks(seed=0, n=256):
    """Task 0 is noisy (20% of labels flipped at random): harder than task 1, which is clean."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    easy = (x[:, 0] > 0).long()
    hard = (x[:, 1] > 0).long()
    flip = torch.rand(n, generator=g) < 0.2
    hard = torch.where(flip, 1 - hard, hard)
    return x, [hard, easy]


def test_uncertainty_weighting_learns_the_larger_weight_for_the_easier_task():
    x, ys = _two_tasks()
    torch.manual_seed(0)
    model = MultiTaskNet(4, [16], [2, 2])
    weighting = UncertaintyWeighting(2)
    history = train_multitask(model, weighting, x, ys, steps=600, lr=2e-2, batch_size=64, seed=0)
    w_hard, w_easy = history["weights"][-1]
    loss_hard, loss_easy = history["losses"][-1]
    assert loss_easy < loss_hard
    assert w_easy > w_hard


def test_gradnorm_weights_sum_to_the_number_of_tasks_and_balance_the_gradient_norms():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    ys = [(x[:, 0] > 0).long(), (x[:, 1] > 0).long()]
    torch.manual_seed(0)
    model = MultiTaskNet(4, [16], [2, 2])
    # one task's gradient dominates: scale its head's weights up
    with torch.no_grad():
        model.heads[0].weight.mul_(20.0)
    weighting = GradNorm(2, alpha=0.0, lr=0.05)
    x0 = x[:64]
    outs = model(x0)
    losses = [F.cross_entropy(o, y[:64]) for o, y in zip(outs, ys)]
    W = model.shared_layer().weight
    norms = [torch.autograd.grad(loss, W, retain_graph=True)[0].norm().item() for loss in losses]
    assert norms[0] > 3 * norms[1]
    gap_before = abs(norms[0] - norms[1])
    for _ in range(40):
        outs = model(x0)
        losses = [F.cross_entropy(o, y[:64]) for o, y in zip(outs, ys)]
        weighting.combine(losses, model.shared_layer())
        assert sum(weighting.weights()) == pytest.approx(2.0, rel=1e-5)
    n0, n1 = weighting.last_norms
    assert abs(n0 - n1) < 0.5 * gap_before
    assert weighting.weights()[0] < weighting.weights()[1]
    assert list(weighting.parameters()) == []  # the network's optimizer never trains w
    with pytest.raises(ValueError):
        weighting.combine(losses)


def test_make_weighting_rejects_unknown_names():
    assert isinstance(make_weighting("gradnorm", 2, alpha=1.0), GradNorm)
    with pytest.raises(ValueError, match="weighting"):
        make_weighting("pcgrad", 2)


# ----------------------------------------------------------------------------- experiments (smoke, digits)

def test_the_chapter_experiments_run_on_digits_in_the_smoke_profile():
    from clutils.transfer import experiments as ex

    d = ex.load(presets.get("transfer-finetune", "smoke"), "digits", "cpu")
    smoke = presets.get("transfer-finetune", "smoke")
    with pytest.raises(ValueError, match="too small for the conv body"):  # digits are 8x8
        ex.run_finetune(d, smoke, 0, labels=[5])
    ft = ex.run_finetune(d, ex.mlp_settings(smoke), 0, labels=[5])
    assert set(ft.target) == {(5, m) for m in modes_for("mlp")}
    assert ft.source_after[(5, "linear_probe")] == pytest.approx(ft.source_accuracy)
    dom = ex.run_domain(d, presets.get("transfer-domain", "smoke"), 0)
    assert 0 <= dom.source_only <= 1 and 0 <= dom.dann <= 1
    kd = ex.run_distill(d, presets.get("transfer-distill", "smoke"), 0, temperatures=[4.0])
    assert set(kd.distilled) == {4.0}
    mt = ex.run_multitask(d, presets.get("transfer-multitask", "smoke"), 0, weightings=["equal", "gradnorm"])
    assert set(mt.accuracy) == {"equal", "gradnorm"} and all(len(v) == 2 for v in mt.accuracy.values())


# ----------------------------------------------------------------------------- the chapter page

def test_code_excerpts_on_the_chapter_page_are_verbatim_from_clutils_transfer():
    """book/transfer.md shows the code beside the formulas; it must not drift from the modules."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "transfer.md").read_text()
    source = "\n".join(p.read_text() for p in sorted((root / "clutils" / "transfer").glob("*.py")))
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 5
    for block in blocks:
        assert block.strip("\n") in source, f"excerpt not found in clutils/transfer/:\n{block}"
