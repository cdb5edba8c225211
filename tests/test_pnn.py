"""Progressive networks (clutils.models_pnn, clutils.strategies.pnn) on split digits and tiny tensors."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from clutils.data.named import make_benchmark
from clutils.models import build_model
from clutils.models_pnn import PNNMLP, build_pnn_model, parameter_count
from clutils.strategies import make
from clutils.strategies.base import TrainingData
from clutils.train import TrainConfig, fit, make_optimizer, train_task

pytestmark = pytest.mark.usefixtures("one_thread")


def digits(scenario="task", tasks=3):
    return make_benchmark("split-mnist", dataset="digits", scenario=scenario, n_tasks=tasks, classes_per_task=2,
                          train_per_class=30, test_per_class=10)


def config(**changes):
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "lr": 1e-3, "progress": False, **changes})


def test_old_tasks_outputs_are_bit_identical_after_training_new_columns():
    bench = digits()
    model = build_pnn_model(bench, hidden=(16, 16), seed=0)
    strategy = make("pnn")
    strategy.setup(model, bench)
    cfg = config()
    logits = {}
    for task in bench.tasks:
        strategy.before_task(model, task)
        train_task(model, bench, task, TrainingData(task.train), strategy, make_optimizer(model, cfg, task.index), cfg)
        strategy.after_task(model, task, None)
        with torch.no_grad():
            logits[task.index] = model(bench.tasks[0].test.x, 0).clone()
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[0], logits[2])


def test_fit_gives_zero_backward_transfer_exactly():
    bench = digits()
    model = build_model(bench, "pnn-mlp", hidden=(16,), seed=0)
    result = fit(model, bench, make("pnn"), config(), device="cpu")
    R = result.R[:, : len(bench)]
    for j in range(len(bench)):
        assert (R[j:, j] == R[j, j]).all(), R  # the accuracy on task j never changes once learnt
    assert R[-1].mean() > 0.6


def test_a_kept_optimiser_is_refused_rather_than_training_nothing():
    bench = digits(tasks=2)
    model = build_pnn_model(bench, hidden=(8,), seed=0)
    with pytest.raises(RuntimeError, match="reset_optimizer=True"):
        fit(model, bench, make("pnn"), config(reset_optimizer=False, epochs=1), device="cpu")


@pytest.mark.parametrize("scenario", ["class", "domain"])
def test_other_scenarios_are_refused_with_a_clear_error(scenario):
    bench = digits(scenario)
    with pytest.raises(ValueError, match="task-incremental"):
        build_pnn_model(bench)
    task_bench = digits("task")
    with pytest.raises(ValueError, match="task-incremental"):
        make("pnn").setup(build_pnn_model(task_bench, hidden=(8,)), bench)


def test_a_plain_network_is_refused():
    bench = digits()
    with pytest.raises(TypeError, match="progressive network"):
        make("pnn").setup(build_model(bench, "mlp", hidden=(8,)), bench)


@pytest.mark.parametrize("hidden", [(7,), (5, 6), (4, 3, 5)])
def test_parameter_count_of_t_columns_matches_the_closed_form(hidden):
    heads = [2, 3, 2, 4, 2]
    model = PNNMLP(11, hidden, heads)
    counts = [model.parameters_used(t) for t in range(1, len(heads) + 1)]
    assert counts == [parameter_count(11, hidden, heads, t) for t in range(1, len(heads) + 1)]
    assert model.parameters_used(len(heads)) == sum(p.numel() for p in model.parameters())


def test_parameters_grow_quadratically_with_equal_heads():
    model = PNNMLP(20, (10, 10), [3] * 8)
    counts = [model.parameters_used(t) for t in range(1, 9)]
    first = [b - a for a, b in zip(counts, counts[1:])]
    second = [b - a for a, b in zip(first, first[1:])]
    assert all(d > 0 for d in second)  # super-linear
    assert len(set(second)) == 1  # exactly quadratic: constant second difference (2 x V's growth)
    # each new column's V reads one more earlier column in each of its two adapters (hidden 2, output)
    assert second[0] == 10 * 10 + 10 * 10


def test_laterals_are_used_gradient_reaches_the_new_columns_adapters():
    bench = digits()
    model = build_pnn_model(bench, hidden=(16, 16), seed=0)
    strategy = make("pnn")
    strategy.setup(model, bench)
    strategy.before_task(model, bench.tasks[1])
    x, y = bench.tasks[1].train.x[:32], bench.tasks[1].train.y[:32]
    torch.nn.functional.cross_entropy(model(x, 1), y).backward()
    adapters = list(model.columns[1].adapters.parameters())
    assert adapters and all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapters)
    assert all(p.grad is None for p in model.columns[0].parameters())  # the frozen column gets none
    assert all(not p.requires_grad for k in (0, 2) for p in model.columns[k].parameters())


def test_the_new_column_reads_the_earlier_ones():
    bench = digits()
    model = build_pnn_model(bench, hidden=(16, 16), seed=0)
    x = bench.tasks[1].test.x[:8]
    before = model(x, 1).detach().clone()
    with torch.no_grad():
        model.columns[0].layers[0].weight.mul_(2.0)  # change column 0 only
    assert not torch.equal(before, model(x, 1))


def test_task_ids_per_sample_route_each_row_through_its_column():
    bench = digits()
    model = build_pnn_model(bench, hidden=(8,), seed=0)
    x = bench.tasks[0].test.x[:6]
    ids = torch.tensor([0, 1, 2, 0, 1, 2])
    out = model(x, ids)
    for row, t in enumerate(ids.tolist()):
        assert torch.allclose(out[row, :2], model(x[row:row + 1], t)[0])
    with pytest.raises(ValueError, match="task id"):
        model(x, None)


def test_code_excerpts_on_the_chapter_page_are_verbatim_from_the_implementation():
    """book/expansion.md shows the code next to the formulas; it must not drift from the modules."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "expansion.md").read_text()
    source = "\n".join((root / "clutils" / p).read_text() for p in ("models_pnn.py", "strategies/pnn.py"))
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 3
    for block in blocks:
        assert block.strip("\n") in source, f"excerpt not found in the PNN modules:\n{block}"


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    """The checkpoint after task k holds column k's optimiser; the resumed run builds column k+1's."""
    import clutils.train as loop

    bench = digits()
    full = fit(build_pnn_model(bench, hidden=(8,), seed=0), bench, make("pnn"), config(epochs=1), device="cpu")
    original, calls = loop.train_task, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "train_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(build_pnn_model(bench, hidden=(8,), seed=0), bench, make("pnn"), config(epochs=1), device="cpu",
            run_dir=tmp_path)
    monkeypatch.setattr(loop, "train_task", original)
    resumed = fit(build_pnn_model(bench, hidden=(8,), seed=0), bench, make("pnn"), config(epochs=1), device="cpu",
                  run_dir=tmp_path)
    assert (resumed.R == full.R).all()
