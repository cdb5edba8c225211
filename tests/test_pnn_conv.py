"""Progressive networks with convolutional columns (clutils.models_pnn.PNNConv) on tiny images and digits."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from clutils.data.named import make_benchmark
from clutils.models import build_model
from clutils.models_pnn import ConvAdapter, ConvBody, PNNConv, build_pnn_model, conv_geometry, conv_parameter_count
from clutils.strategies import make
from clutils.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")


def digits(tasks=3):
    return make_benchmark("split-mnist", dataset="digits", scenario="task", n_tasks=tasks, classes_per_task=2,
                          train_per_class=30, test_per_class=10)


def test_old_columns_outputs_are_bit_identical_after_training_new_columns():
    bench = digits()
    model = build_model(bench, "pnn-conv", seed=0, channels=(8, 16), fc=32)
    assert isinstance(model, PNNConv)
    strategy = make("pnn")
    first = {}
    original = strategy.after_task

    def after_task(m, task, data):
        original(m, task, data)
        with torch.no_grad():
            first[task.index] = m(bench.tasks[task.index].test.x, task.index).clone()

    strategy.after_task = after_task
    result = fit(model, bench, strategy, TrainConfig(epochs=5, batch_size=16, lr=1e-3, reset_optimizer=True,
                                                     progress=False), device="cpu")
    model.eval()
    with torch.no_grad():
        for t in range(len(bench)):
            assert torch.equal(first[t], model(bench.tasks[t].test.x, t))
    R = result.R[:, : len(bench)]
    for j in range(len(bench)):
        assert (R[j:, j] == R[j, j]).all(), R
    assert R[-1].mean() > 0.6  # the columns do learn


def test_gradients_reach_the_new_column_and_its_adapters_only():
    model = PNNConv((1, 12, 12), (4, 8), 16, [2, 2, 2])
    model.activate(2)
    x, y = torch.randn(6, 1, 12, 12), torch.tensor([0, 1, 0, 1, 1, 0])
    nn.functional.cross_entropy(model(x, 2), y).backward()
    assert all(p.grad is None for k in (0, 1) for p in model.columns[k].parameters())
    own = list(model.columns[2].parameters())
    assert all(p.grad is not None for p in own)
    assert all(p.grad.abs().sum() > 0 for p in model.columns[2].adapters.parameters())


def test_the_new_column_reads_every_earlier_column():
    model = PNNConv((1, 12, 12), (4, 8), 16, [2, 2, 2])
    x = torch.randn(4, 1, 12, 12)
    for k in (0, 1):
        before = model(x, 2).detach().clone()
        with torch.no_grad():
            model.columns[k].layers[0].weight.mul_(2.0)
        assert not torch.equal(before, model(x, 2))


@pytest.mark.parametrize("shape,channels", [((1, 12, 12), (4, 8)), ((3, 16, 16), (4, 6, 8)), ((1, 8, 8), (3, 5))])
def test_parameter_count_matches_the_closed_form(shape, channels):
    heads = [2, 3, 2, 4]
    model = PNNConv(shape, channels, 10, heads)
    counts = [model.parameters_used(t) for t in range(1, len(heads) + 1)]
    assert counts == [conv_parameter_count(shape, channels, 10, heads, t) for t in range(1, len(heads) + 1)]
    assert counts[-1] == sum(p.numel() for p in model.parameters())
    second = [counts[i + 2] - 2 * counts[i + 1] + counts[i] for i in range(len(counts) - 2)]
    assert all(d > 0 for d in second)  # super-linear


def test_conv_adapters_reduce_with_1x1_convolutions_and_use_the_layers_kernel():
    model = PNNConv((1, 12, 12), (4, 8, 8), 16, [2, 2, 2])
    column = model.columns[2]  # reads two earlier columns
    conv_adapters = [a for a in column.adapters if isinstance(a, ConvAdapter)]
    assert len(conv_adapters) == 3  # into conv 2, conv 3 and the dense layer
    for adapter, (c_in, c_out) in zip(conv_adapters[:2], [(4, 8), (8, 8)]):
        assert adapter.V.kernel_size == (1, 1) and adapter.V.in_channels == 2 * c_in and adapter.V.out_channels == c_in
        assert isinstance(adapter.U, nn.Conv2d) and adapter.U.kernel_size == (3, 3) and adapter.U.out_channels == c_out
    dense = conv_adapters[2]
    assert dense.V.kernel_size == (1, 1) and dense.V.in_channels == 2 * 8 and dense.V.out_channels == 8
    assert isinstance(dense.U[-1], nn.Linear) and dense.U[-1].out_features == 16
    assert len(model.columns[0].adapters) == 0


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="too small"):
        PNNConv((1, 6, 6), (4, 8, 8), 16, [2, 2])
    with pytest.raises(ValueError, match="C x H x W"):
        PNNConv((144,), (4, 8), 16, [2, 2])
    model = PNNConv((1, 12, 12), (4, 8), 16, [2, 2])
    with pytest.raises(ValueError, match="N x 1 x 12 x 12"):
        model(torch.randn(3, 144), 0)
    with pytest.raises(ValueError, match="N x 1 x 12 x 12"):
        model(torch.randn(3, 1, 16, 16), 1)
    with pytest.raises(ValueError, match="no column"):
        model(torch.randn(3, 1, 12, 12), 2)
    with pytest.raises(ValueError, match="unknown PNN column"):
        build_pnn_model(digits(), column="lstm")


def test_geometry_and_the_baseline_body_match_a_first_column():
    assert conv_geometry((1, 28, 28), (8, 16)) == [(1, 28, 28), (8, 14, 14), (16, 7, 7)]
    torch.manual_seed(3)
    body = ConvBody((1, 12, 12), (4, 8), 16)
    torch.manual_seed(3)
    model = PNNConv((1, 12, 12), (4, 8), 16, [2])
    x = torch.randn(5, 1, 12, 12)
    _, hiddens = model.columns[0](x, [])
    assert body.out_features == 16 and torch.equal(body(x), hiddens[-1])


def test_the_cli_builds_conv_columns():
    from clutils.cli import main

    assert main(["run", "--strategy", "pnn", "--arch", "pnn-conv", "--benchmark", "split-mnist", "--dataset", "digits",
                 "--scenario", "task", "--profile", "smoke", "--tasks", "2"]) in (0, None)


def test_transfer_table_runs_with_conv_columns():
    from clutils import presets
    from clutils.experiments import expansion as ex

    settings = presets.get("expansion-pnn", "smoke")
    settings["soup"].update({"variants": ["original", "flipped", "inverted"], "three_column": True,
                             "source_epochs": 1, "target_epochs": 2})
    variants = ex.soup(settings, dataset="digits", seed=0)
    table = ex.transfer_scores(variants, settings, seed=0, column="conv")
    assert set(table["column"]) == {"conv"}
    assert set(table["method"]) == {"baseline 1", "baseline 2", "baseline 3", "baseline 4", "PNN 2 col", "PNN 3 col"}
    assert table["score"].between(0, 2).all() and all(len(c) == 2 for c in table["curve"])
    mlp = ex.transfer_scores(variants, settings, seed=0, column="mlp")
    assert not (table["final accuracy"].to_numpy() == mlp["final accuracy"].to_numpy()).all()  # other networks
    del settings["soup"]["conv"]
    with pytest.raises(ValueError, match="soup\\['conv'\\]"):
        ex.transfer_scores(variants, settings, seed=0, column="conv")
    with pytest.raises(ValueError, match="unknown column"):
        ex.transfer_scores(variants, settings, seed=0, column="lstm")
