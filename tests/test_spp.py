"""SPP (Peng et al.): the entropy-pruning importance of Eq. 2-3 against a brute-force computation,
its accumulation over tasks (Eq. 4), the penalty of Eq. 5 and its gradient, and the SGD-F baseline.

Tiny hand-made models and scikit-learn's ``digits``; everything on the CPU.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from clutils.data.named import make_benchmark
from clutils.models import MLP, ContinualModel, MultiHead, SingleHead, build_model
from clutils.strategies import Batch, make
from clutils.strategies.hyperparameters import HyperparameterError
from clutils.strategies.spp import SPP, batch_entropy, pruning_importance, shared_parameters, spp_importance
from clutils.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, heads=(3, 3)) -> ContinualModel:
    torch.manual_seed(seed)
    return ContinualModel(MLP(5, (4, 3)), MultiHead(3, list(heads)))


def brute_force_importance(model, x, task, batch_size):
    """Eq. 2-3 one batch at a time, the batch's entropy gradient as the sum of per-sample gradients
    (one backward pass per sample), then the mean over batches."""
    params = shared_parameters(model)
    model.eval()
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    n_batches = 0
    for start in range(0, len(x), batch_size):
        g = {n: torch.zeros_like(p) for n, p in params.items()}
        for i in range(start, min(start + batch_size, len(x))):
            q = torch.softmax(model(x[i:i + 1], task), dim=1)[0]
            h = -(q * torch.log(q)).sum()
            for n, gi in zip(params, torch.autograd.grad(h, list(params.values()), allow_unused=True)):
                if gi is not None:
                    g[n] += gi
        for n, p in params.items():
            w = p.detach()
            for k in range(w.numel()):  # element by element, as written in Eq. 3
                gk, wk = g[n].view(-1)[k], w.view(-1)[k]
                total[n].view(-1)[k] += max(0.0, float(gk * wk + 0.5 * gk ** 2 * wk ** 2))
        n_batches += 1
    return {n: t / n_batches for n, t in total.items()}


@pytest.mark.parametrize("batch_size", [1, 3, 7, 50])
def test_importance_matches_brute_force(batch_size):
    model = tiny_model()
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    got = spp_importance(model, x, task=1, batch_size=batch_size)
    want = brute_force_importance(model, x, 1, batch_size)
    assert set(got) == set(want)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-8)
    assert any(v.sum() > 0 for v in got.values())


def test_importance_depends_on_the_batch_size():
    model = tiny_model()
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(2))
    small = spp_importance(model, x, 0, batch_size=1)
    large = spp_importance(model, x, 0, batch_size=40)
    assert not all(torch.allclose(small[n], large[n]) for n in small)


def test_importance_is_the_clipped_second_order_expansion():
    g = torch.tensor([1.0, -1.0, -3.0, 0.5, 2.0])
    w = torch.tensor([2.0, 1.0, 1.0, 0.0, -0.5])
    # g*w + (g*w)^2/2: 2 + 2; -1 + 0.5 -> 0; -3 + 4.5; 0; -1 + 0.5 -> 0
    torch.testing.assert_close(pruning_importance(g, w), torch.tensor([4.0, 0.0, 1.5, 0.0, 0.0]))


def test_importance_is_zero_where_the_entropy_does_not_depend_on_the_parameter():
    model = tiny_model()
    model.body.unused = nn.Linear(2, 2)  # never called by forward
    with torch.no_grad():
        model.body.layers[1].weight[0].zero_()  # zero weights: pruning them changes nothing
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(3))
    omega = spp_importance(model, x, 0, batch_size=4)
    assert torch.all(omega["body.unused.weight"] == 0) and torch.all(omega["body.unused.bias"] == 0)
    assert torch.all(omega["body.layers.1.weight"][0] == 0)
    assert omega["body.layers.1.weight"][1:].sum() > 0


def test_task_heads_are_neither_measured_nor_penalised_but_a_single_head_is():
    multi = tiny_model()
    assert not any(n.startswith("head.") for n in shared_parameters(multi))
    single = ContinualModel(MLP(5, (4,)), SingleHead(4, 3))
    assert "head.linear.weight" in shared_parameters(single)


def test_importance_restores_training_mode_and_leaves_grad_alone():
    model = tiny_model()
    model.train()
    spp_importance(model, torch.randn(4, 5), 0, 2)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_batch_entropy():
    logits = torch.tensor([[0.0, 0.0], [0.0, -1e9]])  # uniform over 2: log 2; one class closed: 0
    torch.testing.assert_close(batch_entropy(logits), torch.log(torch.tensor(2.0)))


def digits_split(n_tasks=3):
    return make_benchmark("split-mnist", dataset="digits", n_tasks=n_tasks, classes_per_task=2, train_per_class=30,
                          test_per_class=10)


def test_cumulative_importance_is_the_sum_of_the_tasks_importances():
    bench = digits_split()
    strategy = make("spp", lam=1.0, batch_size=16)
    measured = []
    original = strategy.task_importance

    def recording(model, task, data):
        out = original(model, task, data)
        measured.append({n: v.clone() for n, v in out.items()})
        return out

    strategy.task_importance = recording
    model = build_model(bench, hidden=(16,), seed=0)
    fit(model, bench, strategy, TrainConfig(epochs=2, batch_size=32, lr=0.1, optimizer="sgd", progress=False),
        device="cpu")
    final = strategy.importance  # measures the deferred last task
    assert len(measured) == len(bench)
    for n in final:
        torch.testing.assert_close(final[n], sum(m[n] for m in measured))
    assert not any(n.startswith("head.") for n in final)


def test_penalty_value_and_its_gradient_match_autograd():
    bench = digits_split(2)
    model = build_model(bench, hidden=(8,), seed=0)
    strategy = SPP(lam=2.5)
    strategy.setup(model, bench)
    gen = torch.Generator().manual_seed(0)
    params = shared_parameters(model)
    strategy.consolidate(model, {n: torch.rand(p.shape, generator=gen) for n, p in params.items()})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    batch = Batch(torch.zeros(1, 64), torch.zeros(1, dtype=torch.int64), 1, torch.zeros(1, 2))
    value = strategy.penalty(model, batch)
    expected = 2.5 * sum((strategy.importance[n] * (params[n] - strategy.anchor[n]) ** 2).sum() for n in params)
    torch.testing.assert_close(value, expected)  # Eq. 5: no factor 1/2
    want = torch.autograd.grad(value, list(params.values()))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    strategy.after_backward(model)
    for (n, p), w in zip(params.items(), want):
        torch.testing.assert_close(p.grad, w, rtol=1e-5, atol=1e-7)
    assert all(torch.all(p.grad == 0) for n, p in model.named_parameters() if n.startswith("head."))


def test_hyperparameters_are_checked():
    with pytest.raises(HyperparameterError):
        make("spp", batch_size=0)
    with pytest.raises(HyperparameterError):
        make("spp", lam=-1.0)
    with pytest.raises(ValueError):
        make("spp", samples=0)


def test_the_penalty_holds_important_weights_near_their_anchor():
    """lam = 0 (naive training) and lam = 20 share task 1; after task 2 the Omega-weighted drift
    sum_k Omega_k (w_k - w*_k)^2 from task 1's weights is smaller with the penalty."""
    bench = digits_split(2)
    config = TrainConfig(epochs=5, batch_size=32, lr=0.05, optimizer="sgd", progress=False)
    drift = {}
    for lam in (0.0, 20.0):
        model = build_model(bench, hidden=(32,), seed=0)
        strategy = make("spp", lam=lam)
        anchors = []
        original = strategy.consolidate

        def recording(model, importance, original=original, anchors=anchors):
            anchors.append(({n: v.clone() for n, v in importance.items()},
                            {n: p.detach().clone() for n, p in shared_parameters(model).items()}))
            original(model, importance)

        strategy.consolidate = recording
        fit(model, bench, strategy, config, device="cpu")
        omega, anchor = anchors[0]
        params = shared_parameters(model)
        drift[lam] = float(sum((omega[n] * (params[n].detach() - anchor[n]) ** 2).sum() for n in omega))
    assert drift[20.0] < 0.5 * drift[0.0]


def test_sgd_f_freezes_the_body_after_the_first_task():
    bench = digits_split(3)
    model = build_model(bench, hidden=(16,), seed=0)
    strategy = make("sgd-f")
    snapshots = []
    original = strategy.after_task

    def recording(model, task, data):
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})
        original(model, task, data)

    strategy.after_task = recording
    fit(model, bench, strategy, TrainConfig(epochs=2, batch_size=32, lr=0.1, optimizer="sgd", progress=False),
        device="cpu")
    body = [n for n in snapshots[0] if n.startswith("body.")]
    assert all(torch.equal(snapshots[0][n], snapshots[-1][n]) for n in body)
    assert not torch.equal(snapshots[0]["head.heads.2.weight"], snapshots[-1]["head.heads.2.weight"])


def test_code_excerpts_on_the_chapter_page_are_verbatim_from_the_implementation():
    """book/spp.md shows the code next to the formulas; it must not drift from the module."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "spp.md").read_text()
    files = ("clutils/strategies/spp.py", "clutils/diagnostics/spp.py", "clutils/experiments/spp_vae.py")
    sources = [(root / f).read_text() for f in files]
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 6
    for block in blocks:
        assert any(block.strip("\n") in source for source in sources), \
            f"excerpt not found in any of {', '.join(files)}:\n{block}"
