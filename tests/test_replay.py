"""The replay chapter's strategies and memories: reservoir statistics, A-GEM's and GEM's
projections (GEM against a brute-force solution), DER's stored logits, and checkpoint/resume.

Small tensors and scikit-learn's ``digits`` on the CPU.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from clutils.buffers import ReservoirBuffer, TaskMemory, reservoir_slots
from clutils.data.named import make_benchmark
from clutils.models import build_model
from clutils.strategies import make
from clutils.strategies.replay.agem import agem_project
from clutils.strategies.replay.common import IGNORE
from clutils.strategies.replay.der import logit_matching
from clutils.strategies.replay.gem import gem_project, solve_dual
from clutils.strategies.replay.gradients import flat_grad, loss_gradient, trainable
from clutils.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")

_BENCH: dict[str, object] = {}


def split(scenario: str = "class"):
    if scenario not in _BENCH:
        _BENCH[scenario] = make_benchmark("split-mnist", dataset="digits", scenario=scenario,
                                          train_per_class=40, test_per_class=15)
    return _BENCH[scenario]


def config(**changes) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 16, "lr": 0.05, "optimizer": "sgd", "progress": False,
                          **changes})


# ----------------------------------------------------------------------------- the reservoir


def sequential_reservoir(stream_batches, capacity, uniforms):
    """Algorithm R one sample at a time, in plain Python: the reference for the batched version."""
    slots, n = [None] * capacity, 0
    for batch, u in zip(stream_batches, uniforms):
        for item, draw in zip(batch, u.tolist()):
            if n < capacity:
                slots[n] = item
            else:
                j = int(np.floor(draw * (n + 1)))
                if j < capacity:
                    slots[j] = item
            n += 1
    return slots


def test_batched_reservoir_equals_one_sample_at_a_time():
    """Collisions inside a batch (two samples drawing one slot): the later sample wins, as in algorithm R."""
    capacity = 5
    buffer = ReservoirBuffer(capacity, seed=3)
    ids = torch.arange(200)
    batches = list(ids.split(16))
    # the buffer draws its uniforms from its own generator: replay them for the reference
    replay = torch.Generator().manual_seed(3)
    uniforms = [torch.rand(len(b), generator=replay) for b in batches]
    for b in batches:
        buffer.add(b.float().unsqueeze(1), b)
    expected = sequential_reservoir([b.tolist() for b in batches], capacity, uniforms)
    assert buffer.y.tolist() == expected


def test_reservoir_keeps_each_sample_with_probability_m_over_n():
    """After N samples each one is stored with probability M / N (300 streams of batches of 50, fixed seeds).

    Per sample the frequency has a standard error of sqrt(p (1 - p) / 300) = 0.017 at p = 0.1;
    averaged over the first, middle and last 100 samples it is 0.0017: the tolerance 0.01 is
    more than 6 standard errors, and a reservoir that favours early or late samples (e.g. one
    that stops at the first M, or always replaces) misses it by far.
    """
    N, M, runs = 1000, 100, 300
    counts = torch.zeros(N)
    for run in range(runs):
        buffer = ReservoirBuffer(M, seed=run)
        for chunk in torch.arange(N).split(50):
            buffer.add(chunk.float().unsqueeze(1), chunk)
        assert len(buffer) == M and len(set(buffer.y.tolist())) == M  # full, no sample twice
        counts[buffer.y] += 1
    frequency = counts / runs
    for part in (frequency[:100], frequency[450:550], frequency[-100:]):
        assert abs(part.mean().item() - M / N) < 0.01
    assert frequency.max().item() < M / N + 6 * (0.1 * 0.9 / runs) ** 0.5


def test_reservoir_slots_fill_first_then_replace_with_probability():
    uniform = torch.tensor([0.99, 0.0, 0.5, 0.999])
    slots = reservoir_slots(seen=2, batch=4, capacity=3, uniform=uniform)
    # n = 2: free slot 2; n = 3: j = 0; n = 4: j = floor(0.5 * 5) = 2; n = 5: j = 5 >= 3 -> dropped
    assert slots.tolist() == [2, 0, 2, -1]


def test_task_memory_keeps_the_last_samples_of_every_batch_not_only_the_first():
    """A-GEM/GEM memory: a task's ring holds the last per_task samples of its whole stream."""
    memory = TaskMemory(n_tasks=2, per_task=10)
    stream = torch.arange(64)
    for batch in stream.split(8):
        memory.add(0, batch.float().unsqueeze(1), batch)
    x, y = memory.of(0)
    assert sorted(y.tolist()) == list(range(54, 64))
    assert memory.size(1) == 0
    memory.add(1, torch.zeros(25, 1), torch.arange(25))  # a batch longer than the ring
    assert sorted(memory.of(1)[1].tolist()) == list(range(15, 25))


# ----------------------------------------------------------------------------- ER


def test_er_trains_on_the_current_batch_followed_by_an_equal_buffer_batch():
    bench = split("task")
    model = build_model(bench, hidden=(8,), seed=0)
    er = make("er", buffer_size=30)
    er.setup(model, bench)
    x, y = bench.tasks[0].train.x[:12], bench.tasks[0].train.y[:12]
    assert er.extend_batch(x, y, 0)[0] is x  # empty buffer: nothing to replay
    er.before_task(model, bench.tasks[0])
    from clutils.strategies import Batch
    er.observe(model, Batch(x, y, 0, model(x, 0).detach()))
    er.before_task(model, bench.tasks[1])
    x1, y1 = bench.tasks[1].train.x[:12], bench.tasks[1].train.y[:12]
    xt, yt, tt = er.extend_batch(x1, y1, 1)
    assert len(xt) == 24 and torch.equal(xt[:12], x1) and torch.equal(yt[:12], y1)
    assert tt[:12].tolist() == [1] * 12 and tt[12:].tolist() == [0] * 12  # replayed from task 1's head
    assert {tuple(r.tolist()) for r in xt[12:].flatten(1)} <= {tuple(r.tolist()) for r in x.flatten(1)}


def test_er_beats_naive_in_class_incremental_learning():
    bench = split("class")
    accuracy = {}
    for name in ("naive", "er"):
        model = build_model(bench, hidden=(64,), seed=0)
        accuracy[name] = fit(model, bench, make(name), config(epochs=3), device="cpu").metrics()["acc"]
    assert accuracy["er"] > accuracy["naive"] + 0.15, accuracy


# ----------------------------------------------------------------------------- DER


def test_der_stores_the_logits_of_insertion_time_and_never_refreshes_them():
    bench = split("class")
    model = build_model(bench, hidden=(16,), seed=0)
    der = make("der++", buffer_size=20)
    expected: dict[int, torch.Tensor] = {}
    add = ReservoirBuffer.add

    def recording_add(buffer, x, y, task=None, logits=None):
        slots = add(buffer, x, y, task, logits)
        for row, slot in enumerate(slots.tolist()):
            if slot >= 0:
                expected[slot] = logits[row].clone()
        return slots

    original = ReservoirBuffer.add
    ReservoirBuffer.add = recording_add
    try:
        fit(model, bench, der, config(), device="cpu")
    finally:
        ReservoirBuffer.add = original
    stored = der.buffer.logits
    assert len(expected) == 20
    for slot, logits in expected.items():
        assert torch.equal(stored[slot], logits)
    with torch.no_grad():
        now = model(der.buffer.x)
    assert not torch.allclose(now, stored, atol=1e-3)  # the model moved on; the targets did not


def test_der_loss_is_ce_plus_alpha_mse_plus_beta_ce_on_independent_draws():
    bench = split("class")
    model = build_model(bench, hidden=(16,), seed=0)
    der = make("der++", buffer_size=50, alpha=0.3, beta=0.7)
    der.setup(model, bench)
    from clutils.strategies import Batch
    x, y = bench.tasks[0].train.x[:40], bench.tasks[0].train.y[:40]
    der.observe(model, Batch(x, y, None, model(x).detach() + 1.0))  # stored targets differ from the outputs
    xb, yb = bench.tasks[1].train.x[:10], bench.tasks[1].train.y[:10]
    xt, yt, _ = der.extend_batch(xb, yb, None)
    assert len(xt) == 30 and (yt[10:] == IGNORE).all()
    b, first, second = der._draws
    assert not torch.equal(first, second)  # two draws
    logits = model(xt)
    penalty = der.penalty(model, Batch(xt, yt, None, logits))
    mse = ((logits[10:20] - der.buffer.logits[first]) ** 2).mean()  # maximal head: every output open
    ce = torch.nn.functional.cross_entropy(logits[20:], der.buffer.y[second])
    assert torch.allclose(penalty, 0.3 * mse + 0.7 * ce)


def test_der_logit_matching_leaves_out_outputs_closed_at_insertion():
    stored = torch.tensor([[1.0, -1e9], [2.0, 3.0]])
    outputs = torch.tensor([[0.0, 5.0], [2.0, 1.0]])
    assert logit_matching(outputs, stored).item() == pytest.approx((1 + 0 + 4) / 3)


# ----------------------------------------------------------------------------- A-GEM


def test_agem_projection_is_orthogonal_to_the_reference_when_it_applies_and_identity_otherwise():
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        g, g_ref = torch.randn(20, generator=generator, dtype=torch.float64), torch.randn(20, generator=generator,
                                                                                         dtype=torch.float64)
        projected = agem_project(g, g_ref)
        if torch.dot(g, g_ref) < 0:
            assert abs(torch.dot(projected, g_ref).item()) < 1e-10
            # the change is along g_ref only (it is g that is projected, not g_ref)
            residual = (g - projected) - torch.dot(g - projected, g_ref) / torch.dot(g_ref, g_ref) * g_ref
            assert residual.abs().max().item() < 1e-10
        else:
            assert projected is g


def test_agem_step_projects_the_current_gradient_against_the_memory_gradient():
    bench = split("class")
    model = build_model(bench, hidden=(16,), seed=0)
    agem = make("a-gem", buffer_size=100, replay_batch=1000)  # the whole memory: a deterministic reference
    fit(model, bench, agem, config(), device="cpu")  # fills the memories of all tasks
    agem.before_task(model, bench.tasks[4])
    params = trainable(model)
    x, y = bench.tasks[4].train.x[:32], bench.tasks[4].train.y[:32]
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    g = flat_grad(params)
    memory_x = torch.cat([agem.memory.of(k)[0] for k in range(4)])
    memory_y = torch.cat([agem.memory.of(k)[1] for k in range(4)])
    g_ref = loss_gradient(model, params, memory_x, memory_y, None)
    assert torch.dot(g, g_ref) < 0, "the new task's gradient should conflict with the old tasks'"
    agem.extend_batch(x, y, None)
    agem.after_backward(model)
    stepped = flat_grad(params)
    assert torch.allclose(stepped, agem_project(g, g_ref), atol=1e-5)
    assert abs(torch.dot(stepped, g_ref).item()) < 1e-4 * g_ref.norm().item() * g.norm().item()


# ----------------------------------------------------------------------------- GEM


def brute_force_projection(g: np.ndarray, G: np.ndarray) -> np.ndarray:
    """min ||z - g|| s.t. G z >= 0, by trying every set of active constraints (tiny problems only)."""
    best, best_distance = None, np.inf
    for r in range(len(G) + 1):
        for active in itertools.combinations(range(len(G)), r):
            if active:
                A = G[list(active)]
                z = g - A.T @ np.linalg.lstsq(A @ A.T, A @ g, rcond=None)[0]  # projection onto {A z = 0}
            else:
                z = g
            if (G @ z >= -1e-9).all() and np.linalg.norm(z - g) < best_distance:
                best, best_distance = z, np.linalg.norm(z - g)
    return best


def test_gem_projection_is_the_closest_gradient_that_satisfies_every_constraint():
    rng = np.random.default_rng(0)
    tried = 0
    for _ in range(200):
        G, g = rng.normal(size=(3, 4)), rng.normal(size=4)
        if (G @ g >= 0).all():
            continue
        tried += 1
        z = gem_project(torch.tensor(g), torch.tensor(G), margin=0.0, eps=1e-12).numpy()
        assert (G @ z >= -1e-7).all()
        assert np.allclose(z, brute_force_projection(g, G), atol=1e-6)
    assert tried > 50


def test_gem_dual_with_a_margin_matches_a_brute_force_solution():
    """The dual QP min 1/2 v'Pv + b'v s.t. v >= gamma, against every choice of bound variables."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        A = rng.normal(size=(3, 5))
        P, b = A @ A.T + 1e-3 * np.eye(3), rng.normal(size=3)
        gamma = 0.5
        best, value = None, np.inf
        for r in range(4):
            for fixed in itertools.combinations(range(3), r):
                free = [i for i in range(3) if i not in fixed]
                v = np.full(3, gamma)
                if free:
                    rhs = -(b[free] + P[np.ix_(free, list(fixed))] @ v[list(fixed)])
                    v[free] = np.linalg.solve(P[np.ix_(free, free)], rhs)
                f = 0.5 * v @ P @ v + b @ v
                if (v >= gamma - 1e-9).all() and f < value:
                    best, value = v, f
        assert np.allclose(solve_dual(P, b, gamma), best, atol=1e-6)


def test_gem_steps_do_not_increase_any_memory_loss_to_first_order():
    bench = split("class")
    model = build_model(bench, hidden=(16,), seed=0)
    gem = make("gem", buffer_size=100, margin=0.0)
    fit(model, bench, gem, config(), device="cpu")
    assert gem.projected > 0
    gem.before_task(model, bench.tasks[4])
    params = trainable(model)
    x, y = bench.tasks[4].train.x[:32], bench.tasks[4].train.y[:32]
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    gem.after_backward(model)
    z = flat_grad(params)
    for k in range(4):
        g_k = loss_gradient(model, params, *gem.memory.of(k), None)
        assert torch.dot(z, g_k).item() >= -1e-3 * z.norm().item() * g_k.norm().item()


# ----------------------------------------------------------------------------- checkpoint and resume


def interrupted(cls):
    """``cls`` (same name and settings) interrupted like Ctrl-C at the third step of task 3."""

    class Interrupted(cls):
        def before_task(self, model, task):
            super().before_task(model, task)
            self.steps = 0

        def after_step(self, model):
            super().after_step(model)
            self.steps += 1
            if task_index(self) == 2 and self.steps == 3:
                raise KeyboardInterrupt

    return Interrupted


def task_index(strategy) -> int:
    return strategy.current


@pytest.mark.parametrize("name", ["er", "der++", "a-gem", "gem"])
def test_the_buffer_survives_checkpoint_and_resume_bit_identically(name, tmp_path):
    bench = split("class")
    hp = {"buffer_size": 40}

    def run(strategy, run_dir=None):
        model = build_model(bench, hidden=(16,), seed=0)
        return model, fit(model, bench, strategy, config(seed=1), device="cpu", run_dir=run_dir)

    reference_strategy = make(name, **hp)
    reference_model, reference = run(reference_strategy)

    with pytest.raises(KeyboardInterrupt):
        run(interrupted(type(reference_strategy))(**hp), tmp_path)
    resumed_strategy = make(name, **hp)
    resumed_model, resumed = run(resumed_strategy, tmp_path)
    assert resumed.accuracy_matrix == reference.accuracy_matrix
    for a, b in zip(reference_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    state_a, state_b = reference_strategy.state_dict(), resumed_strategy.state_dict()
    store = "buffer" if "buffer" in state_a else "memory"
    for key, value in state_a[store].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, state_b[store][key]), key
        else:
            assert value == state_b[store][key], key


# ----------------------------------------------------------------------------- the chapter page


def test_code_excerpts_on_the_chapter_page_are_verbatim_from_the_implementation():
    """book/replay.md shows the code next to the formulas; it must not drift from the modules."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "replay.md").read_text()
    sources = [(root / "clutils" / "buffers.py").read_text()]
    sources += [p.read_text() for p in sorted((root / "clutils" / "strategies" / "replay").glob("*.py"))]
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 6
    for block in blocks:
        assert any(block.strip("\n") in source for source in sources), f"excerpt not found in the replay code:\n{block}"
    assert "## Deep generative replay" in page and "replay_9_generative.ipynb" in page


# ----------------------------------------------------------------------------- the table's method list


def test_the_table_lists_every_method_of_the_preset_and_says_which_are_not_in_clutils_yet():
    from clutils import presets
    from clutils.experiments import replay as ex
    from clutils.strategies import REGISTRY

    settings = presets.get("replay-table", "smoke")
    assert {"PNN", "iCaRL", "GEM"} <= set(settings["methods"])
    assert ex.missing(settings["methods"], settings) == ([] if "pnn" in REGISTRY else ["PNN"])
    domain = split("domain")
    assert not ex.runs_in("iCaRL", domain, settings)  # no Domain-IL entry, as in the paper
    assert ex.runs_in("ER", domain, settings)
    frame = ex.run_grid(["iCaRL"], domain, settings, seeds=[0], device="cpu")
    assert frame.empty and list(frame.columns)[:2] == ["method", "buffer"]


def test_a_method_registered_later_joins_the_table_in_the_scenarios_it_declares(monkeypatch):
    """PNN is one entry of the preset: once its strategy is registered it runs (Task-IL only)."""
    from clutils import presets
    from clutils.experiments import replay as ex
    from clutils.strategies import REGISTRY
    from clutils.strategies.base import Strategy

    class Columns(Strategy):
        name = "pnn"
        scenarios = ("task",)

    monkeypatch.setitem(REGISTRY, "pnn", Columns)
    settings = presets.get("replay-table", "smoke")
    assert ex.missing(settings["methods"], settings) == []
    task_frame = ex.run_grid(["PNN", "SGD"], split("task"), settings, seeds=[0], device="cpu")
    assert sorted(task_frame.method) == ["PNN", "SGD"] and set(task_frame.buffer) == {"-"}
    class_frame = ex.run_grid(["PNN", "SGD"], split("class"), settings, seeds=[0], device="cpu")
    assert list(class_frame.method) == ["SGD"]


def test_the_authors_sequential_mnist_values_per_buffer_apply_to_the_split_benchmarks_only():
    from clutils import presets
    from clutils.experiments import replay as ex

    settings = presets.get("replay-table", "quick")
    permuted = make_benchmark("permuted-mnist", dataset="digits", n_tasks=2, train_per_class=5, test_per_class=2)
    assert ex.buffer_changes("ER", settings, 200, split("class")) == {"lr": 0.01}
    assert ex.buffer_changes("ER", settings, 200, permuted) == {}
    assert ex.strategy_for("DER", settings, 500, split("class")).hp["alpha"] == 1.0
    assert ex.strategy_for("DER", settings, 500, permuted).hp["alpha"] == settings["hp"]["DER"]["hp"]["alpha"]


def test_cost_measures_cpu_time_per_step_of_the_last_task_and_the_memory_held():
    from clutils import presets
    from clutils.experiments import replay as ex

    settings = {**presets.get("replay-table", "smoke"), "hidden": [16]}
    costs = ex.cost(["SGD", "ER"], split("class"), settings, buffer=20, device="cpu")
    assert list(costs.index) == ["SGD", "ER"] and (costs["ms per step"] > 0).all()
    assert costs.loc["SGD", "x SGD"] == 1.0
    assert costs.loc["SGD", "memory held (KiB)"] == 0 and costs.loc["ER", "memory held (KiB)"] > 20 * 64 * 4 / 1024
