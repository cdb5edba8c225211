"""iCaRL (Rebuffi et al. 2017) and the loop's loss and prediction hooks it needs.

Herding against a brute-force greedy search, nearest-mean-of-exemplars classification, the
distillation targets, the memory per class (M // classes seen), checkpoint/resume; and the
default loss and prediction of every other strategy unchanged (bit for bit). Small tensors and
scikit-learn's ``digits`` on the CPU.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clutils.models import build_model
from clutils.strategies import REGISTRY, make
from clutils.strategies.base import Batch, Strategy
from clutils.strategies.replay.icarl import herding, icarl_targets, nearest_mean, normalise
from clutils.train import _shuffle_seed, fit, make_optimizer
from test_replay import config, split  # the replay tests' small split and SGD config

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- herding


def brute_force_herding(features: np.ndarray, m: int) -> list[int]:
    """Algorithm 4 spelt out: at step k try every unchosen sample, keep the best running mean."""
    mu = features.mean(0)
    chosen: list[int] = []
    for k in range(1, m + 1):
        best, best_distance = None, math.inf
        for i in range(len(features)):
            if i in chosen:
                continue
            distance = np.linalg.norm(mu - features[chosen + [i]].mean(0))
            if distance < best_distance:
                best, best_distance = i, distance
        chosen.append(best)
    return chosen


def test_herding_picks_the_exemplars_whose_running_mean_best_approximates_the_class_mean():
    generator = torch.Generator().manual_seed(0)
    for trial in range(20):
        phi = normalise(torch.randn(12, 5, generator=generator, dtype=torch.float64))
        chosen = herding(phi, 6).tolist()
        assert chosen == brute_force_herding(phi.numpy(), 6), trial
        assert len(set(chosen)) == 6  # no sample twice


def test_herding_beats_random_subsets_at_approximating_the_mean():
    generator = torch.Generator().manual_seed(1)
    phi = normalise(torch.randn(10, 4, generator=generator, dtype=torch.float64))
    mu = phi.mean(0)
    chosen = herding(phi, 3)
    ours = (mu - phi[chosen].mean(0)).norm().item()
    subsets = [(mu - phi[list(s)].mean(0)).norm().item() for s in itertools.combinations(range(10), 3)]
    # greedy is not always optimal, but it is far better than a typical subset
    assert ours <= np.quantile(subsets, 0.1)
    assert herding(phi, 50).tolist() == herding(phi, 10).tolist()  # m is capped at the class size


# ----------------------------------------------------------------------------- nearest mean, targets


def test_nearest_mean_classifies_by_the_nearest_normalised_class_mean():
    generator = torch.Generator().manual_seed(2)
    means = normalise(torch.randn(4, 6, generator=generator))
    features = 3.0 * torch.randn(30, 6, generator=generator)  # the scale must not matter
    allowed = torch.tensor([True, True, False, True])
    got = nearest_mean(features, means, allowed)
    for row, key in zip(features, got.tolist()):
        distances = [(row / row.norm() - means[k]).norm().item() if allowed[k] else math.inf for k in range(4)]
        assert key == int(np.argmin(distances))
    assert 2 not in got.tolist()


def test_distillation_targets_are_the_previous_models_sigmoids_for_old_classes():
    y = torch.tensor([2, 3])
    old_logits = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 3.0, -1.0, 2.0]])
    old = torch.tensor([True, True, False, False])[None, :]
    targets = icarl_targets(y, 4, old_logits, old)
    assert torch.equal(targets[:, :2], torch.sigmoid(old_logits[:, :2]))
    assert torch.equal(targets[:, 2:], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.equal(icarl_targets(y, 4, None, old), F.one_hot(y, 4).float())  # the first task


def test_icarl_loss_is_bce_over_seen_classes_with_the_previous_network_as_target():
    bench = split("class")
    model = build_model(bench, hidden=(16,), seed=0)
    icarl = make("icarl", buffer_size=40)
    fit(model, bench, icarl, config(), device="cpu")
    previous = icarl.previous_model()
    assert previous is not None and all(not p.requires_grad for p in previous.parameters())
    # one more step of the last task: old = classes of tasks 1-4, new = task 5's
    icarl.before_task(model, bench.tasks[4])
    icarl.seen[list(bench.tasks[4].classes)] = False  # as during task 5's training
    x, y = bench.tasks[4].train.x[:8], bench.tasks[4].train.y[:8]
    with torch.no_grad():
        model.head.linear.weight.add_(0.1)  # the current network differs from the previous one
    logits = model(x)
    loss = icarl.loss(model, Batch(x, y, None, logits))
    old_classes = [c for t in bench.tasks[:4] for c in t.classes]
    columns = old_classes + list(bench.tasks[4].classes)
    targets = F.one_hot(y, bench.n_classes).float()
    targets[:, old_classes] = torch.sigmoid(previous(x))[:, old_classes]
    expected = F.binary_cross_entropy_with_logits(logits[:, columns], targets[:, columns])
    assert torch.allclose(loss, expected)


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_memory_per_class_is_m_over_the_classes_seen(scenario):
    bench = split(scenario)
    M = 30
    icarl = make("icarl", buffer_size=M)
    model = build_model(bench, hidden=(16,), seed=0)
    counts_after = []

    class Watch(type(icarl)):
        def after_task(self, model, task, data):
            super().after_task(model, task, data)
            keys = self.keys(self.exemplars.y, self.exemplar_task)
            counts_after.append(torch.bincount(keys, minlength=self.n_keys)[self.seen].tolist())

    fit(model, bench, Watch(buffer_size=M), config(), device="cpu")
    for t, counts in enumerate(counts_after, 1):
        seen = 2 * t
        assert counts == [M // seen] * seen, (t, counts)


def test_icarl_checkpoint_and_resume_are_bit_identical(tmp_path):
    bench = split("class")

    class Interrupted(REGISTRY["icarl"]):
        """Stopped like Ctrl-C when task 4 starts (the checkpoint holds tasks 1-3)."""

        def before_task(self, model, task):
            super().before_task(model, task)
            if task.index == 3:
                raise KeyboardInterrupt

    def run(strategy, run_dir=None):
        model = build_model(bench, hidden=(16,), seed=0)
        return model, fit(model, bench, strategy, config(seed=1), device="cpu", run_dir=run_dir)

    reference_strategy = make("icarl", buffer_size=30)
    reference_model, reference = run(reference_strategy)
    with pytest.raises(KeyboardInterrupt):
        run(Interrupted(buffer_size=30), tmp_path)
    resumed_strategy = make("icarl", buffer_size=30)
    resumed_model, resumed = run(resumed_strategy, tmp_path)
    assert resumed.accuracy_matrix == reference.accuracy_matrix
    for a, b in zip(reference_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(reference_strategy.exemplars.x, resumed_strategy.exemplars.x)
    assert torch.equal(reference_strategy.means, resumed_strategy.means)


def test_icarl_beats_fine_tuning_in_class_incremental_learning():
    bench = split("class")
    runs = {}
    for name in ("naive", "icarl"):
        model = build_model(bench, hidden=(32,), seed=0)
        strategy = make(name, buffer_size=50) if name == "icarl" else make(name)
        runs[name] = fit(model, bench, strategy, config(epochs=3, batch_size=10), device="cpu").metrics()["acc"]
    assert runs["icarl"] > runs["naive"] + 0.3, runs


# ----------------------------------------------------------------------------- the hooks' defaults


def test_every_other_strategy_keeps_the_default_loss_and_prediction():
    """Only iCaRL changes the loop's loss and prediction; the default is the cross-entropy and the largest logit."""
    for name, cls in REGISTRY.items():
        if name != "icarl":
            assert cls.loss is Strategy.loss, name
            assert cls.predict is Strategy.predict, name
    generator = torch.Generator().manual_seed(3)
    logits, y = torch.randn(9, 5, generator=generator), torch.randint(0, 5, (9,), generator=generator)
    y[0] = -100  # ignored targets (DER's replayed samples) are still ignored
    base = Strategy()
    assert torch.equal(base.loss(None, Batch(None, y, None, logits)), F.cross_entropy(logits, y))


def test_the_default_loss_trains_bit_identically_to_plain_cross_entropy_sgd():
    """The loop with the default hook reproduces a hand-written cross-entropy SGD loop bit for bit."""
    bench = split("domain")
    task = bench.tasks[0]
    cfg = config(batch_size=32, seed=4)
    model = build_model(bench, hidden=(16,), seed=0)
    reference = build_model(bench, hidden=(16,), seed=0)
    fit(model, dataclasses.replace(bench, tasks=[task]),
        make("naive"), cfg, device="cpu")
    optimizer = make_optimizer(reference, cfg)
    order = torch.randperm(len(task.train), generator=torch.Generator().manual_seed(_shuffle_seed(4, 0, 0)))
    reference.train()
    for start in range(0, len(order), 32):
        index = order[start:start + 32]
        loss = F.cross_entropy(reference(task.train.x[index]), task.train.y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)
