"""Models: the head each scenario needs, expanding heads, zero init, multi-head routing."""
from __future__ import annotations

import pytest
import torch

from clutils.data.benchmarks import split
from clutils.data.datasets import load_dataset
from clutils.data.named import make_benchmark
from clutils.models import MASKED_LOGIT, MLP, MultiHead, SingleHead, build_model, zero_init_head


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_head_shapes_per_scenario(digits):
    x = digits.test.x[:7]
    task_b = split(digits, 5, "task", seed=None)
    model = build_model(task_b, hidden=(16,), seed=0)
    assert isinstance(model.head, MultiHead) and model.head.sizes == [2] * 5
    for t in range(5):
        assert model(x, t).shape == (7, 2)
    with pytest.raises(ValueError):
        model(x)  # a multi-head model needs the task id

    domain_b = make_benchmark("permuted-mnist", n_tasks=2, dataset="digits", train_per_class=5, test_per_class=2)
    model = build_model(domain_b, hidden=(16,), seed=0)
    assert isinstance(model.head, SingleHead) and not model.head.expanding
    assert model(x).shape == (7, 10)

    class_b = split(digits, 5, "class", seed=0)
    model = build_model(class_b, hidden=(16, 8), seed=0)
    assert isinstance(model.head, SingleHead) and model(x).shape == (7, 10)
    assert model.body.out_features == 8

    uneven = split(digits, 4, "task", seed=None, first=4)
    model = build_model(uneven, hidden=(16,), seed=0)
    assert [model(x, t).shape[1] for t in range(4)] == [4, 2, 2, 2]


def test_mlp_layers():
    mlp = MLP(64, (32, 16), dropout=0.5, input_dropout=0.2)
    linear = [m for m in mlp.layers if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(64, 32), (32, 16)]
    assert sum(isinstance(m, torch.nn.Dropout) for m in mlp.layers) == 3
    assert mlp(torch.zeros(3, 1, 8, 8)).shape == (3, 16)


def test_expanding_head_masks_unseen_classes(digits):
    bench = split(digits, 5, "class", seed=None)
    model = build_model(bench, hidden=(16,), expanding_head=True, seed=0)
    x = digits.test.x[:20]
    assert model.head.expanding
    assert (model(x) == MASKED_LOGIT).all()  # nothing seen yet
    model.prepare_task(bench.tasks[0].classes, bench.scenario)  # classes 0 and 1
    logits = model(x)
    assert (logits[:, 2:] == MASKED_LOGIT).all()
    assert (logits[:, :2] != MASKED_LOGIT).all()
    assert set(logits.argmax(1).tolist()) <= {0, 1}
    model.prepare_task(bench.tasks[1].classes, bench.scenario)
    logits = model(x)
    assert (logits[:, 4:] == MASKED_LOGIT).all() and (logits[:, :4] != MASKED_LOGIT).all()
    # the masked logits carry no gradient to the output layer's rows of unseen classes
    logits.sum().backward()
    assert (model.head.linear.weight.grad[4:] == 0).all()
    assert (model.head.linear.weight.grad[:4] != 0).any()


def test_maximal_head_is_not_masked_and_only_class_scenario_expands(digits):
    bench = split(digits, 5, "class", seed=None)
    model = build_model(bench, hidden=(16,), expanding_head=False, seed=0)
    assert (model(digits.test.x[:5]) != MASKED_LOGIT).all()
    domain = split(digits, 5, "domain", seed=None)
    assert not build_model(domain, hidden=(16,), expanding_head=True, seed=0).head.expanding


def test_zero_init_gives_zero_logits(digits):
    x = digits.test.x[:9]
    for scenario in ("task", "class"):
        bench = split(digits, 5, scenario, seed=None)
        model = build_model(bench, hidden=(16,), zero_init=True, seed=0)
        for layer in model.output_layers():
            assert (layer.weight == 0).all() and (layer.bias == 0).all()
        out = model(x, 0) if scenario == "task" else model(x)
        assert (out == 0).all()
        assert any((p != 0).any() for p in model.body.parameters())  # only the head is zeroed
    model = build_model(split(digits, 5, "task", seed=None), hidden=(16,), seed=0)
    zero_init_head(model)
    assert len(model.output_layers()) == 5 and all((l.weight == 0).all() for l in model.output_layers())


def test_multi_head_with_per_sample_task_ids(digits):
    bench = split(digits, 4, "task", seed=None, first=4)  # heads of 4, 2, 2, 2 outputs
    model = build_model(bench, hidden=(16,), seed=0)
    x = digits.test.x[:8]
    ids = torch.tensor([0, 1, 2, 3, 3, 0, 1, 2])
    out = model(x, ids)
    assert out.shape == (8, 4)  # padded to the widest head
    features = model.body(x)
    for row, t in enumerate(ids.tolist()):
        k = model.head.sizes[t]
        expected = model.head.heads[t](features[row:row + 1])[0]
        assert torch.allclose(out[row, :k], expected)
        assert (out[row, k:] == MASKED_LOGIT).all()
        assert out[row].argmax() < k
    # per-sample ids agree with the per-task call
    same = model(x[:1], torch.tensor([2]))
    assert torch.allclose(same[0, :2], model(x[:1], 2)[0])


def test_seed_fixes_the_initial_weights_and_bad_arch_is_refused(digits):
    bench = split(digits, 5, "task", seed=None)
    a = build_model(bench, hidden=(16,), seed=5).state_dict()
    b = build_model(bench, hidden=(16,), seed=5).state_dict()
    c = build_model(bench, hidden=(16,), seed=6).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(ValueError, match="mlp"):
        build_model(bench, arch="resnet")
