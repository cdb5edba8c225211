"""The SPP chapter's parts 2 and 3: permuted tasks in one scenario and Figure 7's per-layer analysis,
the VAE stand-in of Figure 5 (the decoder's importance, separate encoders), VGG9 and the GPU-time estimate.

scikit-learn's ``digits`` and tiny tensors, on the CPU.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clutils import presets
from clutils.experiments import spp as ex
from clutils.experiments import spp_vae as vae_ex
from clutils.experiments import spp_vision as vision
from clutils.generators import VAE
from clutils.models_vgg import VGG9, build_vgg9_model, training_flops
from clutils.strategies.spp import pruning_importance

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {**presets.get("spp-permuted", "smoke"), "tasks": 2, "train_per_class": 6, "test_per_class": 3}


def test_permuted_benchmark_gives_every_method_the_same_tasks_in_its_scenario():
    task = ex.permuted_benchmark(TINY, "digits", 0, "task")
    domain = ex.permuted_benchmark(TINY, "digits", 0, "domain")
    assert task.scenario == "task" and task.head_sizes == [10, 10]
    assert domain.scenario == "domain" and domain.head_sizes == [10]
    assert torch.equal(task.tasks[1].train.x, domain.tasks[1].train.x)
    assert not torch.equal(task.tasks[0].train.x, task.tasks[1].train.x)  # another permutation
    with pytest.raises(ValueError):
        ex.permuted_benchmark(TINY, "digits", 0, "class")
    with pytest.raises(ValueError):
        ex.run_methods(["SPP"], TINY, dataset="digits", kind="rotated")


def test_layer_analysis_measures_each_hidden_layer_of_a_run():
    results = ex.run_methods(["SPP", "SGD (one shared head)"], TINY, dataset="digits", kind="permuted",
                             snapshots=("SPP", "SGD (one shared head)"))
    for label, result in results.items():
        table = ex.layer_analysis(result, result.benchmark, batch_size=10, samples=20)
        assert len(table) == len(TINY["hidden"])  # the body's layers, never a head
        assert table["F value"].between(0, 1).all()
        assert (table[["weighted change", "change where unimportant"]] >= 0).all().all()
    # the model after task 1 has the first snapshot's weights
    spp = results["SPP"]
    early = ex.model_at(spp, 0)
    name = next(iter(spp.snapshots[0]))
    assert torch.equal(dict(early.named_parameters())[name], spp.snapshots[0][name])
    with pytest.raises(ValueError):
        ex.model_at(ex.run_method("SPP", spp.benchmark, TINY), 0)  # no snapshots kept


# ----------------------------------------------------------------------------- the VAE stand-in

def test_bernoulli_entropy_is_the_sum_of_binary_entropies():
    logits = torch.tensor([[0.0, 2.0], [-3.0, 50.0]])
    p = torch.sigmoid(logits)
    want = -(p * torch.log(p) + (1 - p) * torch.log1p(-p)).nan_to_num().sum()
    assert vae_ex.bernoulli_entropy(logits).item() == pytest.approx(want.item(), abs=1e-5)


@pytest.mark.parametrize("objective", vae_ex.OBJECTIVES)
def test_decoder_importance_is_eq_2_3_on_the_decoder_averaged_over_batches(objective):
    torch.manual_seed(0)
    vae = VAE((1, 2, 3), hidden=5, z_dim=2)
    x = torch.rand(6, 1, 2, 3)
    vae.fit_range(x)
    got = vae_ex.decoder_importance(vae, x, batch_size=3, objective=objective)
    assert set(got) == {n for n, _ in vae.decoder.named_parameters()}  # the encoder is not measured
    params = dict(vae.decoder.named_parameters())
    want = {n: torch.zeros_like(p) for n, p in params.items()}
    for part in (x[:3], x[3:]):  # one batch at a time, by hand
        logits = vae.decode_logits(vae.encode(part)[0].detach())
        if objective == "entropy":
            p = torch.sigmoid(logits)
            value = -(p * torch.log(p) + (1 - p) * torch.log(1 - p)).sum()
        else:
            target = vae.to_unit(part)
            value = -(target * torch.log(torch.sigmoid(logits)) + (1 - target) * torch.log(1 - torch.sigmoid(logits))).sum()
        for (n, w), g in zip(params.items(), torch.autograd.grad(value, list(params.values()))):
            want[n] += pruning_importance(g, w.detach()) / 2
    for n in want:
        assert torch.allclose(got[n], want[n], atol=1e-5, rtol=1e-4)
        assert (got[n] >= 0).all()
    with pytest.raises(ValueError):
        vae_ex.decoder_importance(vae, x, objective="labels")


VAE_SETTINGS = {**presets.get("spp-vae", "smoke"), "train_per_class": 8, "test_per_class": 4, "steps": 5}


def test_separate_encoders_share_the_decoder_and_the_penalty_holds_it():
    groups = vae_ex.group_benchmark(VAE_SETTINGS, "digits")
    assert set(groups.tasks[0].classes).isdisjoint(groups.tasks[1].classes)
    free = vae_ex.run_sequence(groups, VAE_SETTINGS, lam=0.0)
    first, second = free["first"], free["second"]
    assert not torch.equal(first.mu.weight, second.mu.weight)  # a fresh encoder for group 2
    moved = sum((a - b).abs().sum().item() for a, b in zip(first.decoder.parameters(), second.decoder.parameters()))
    held = vae_ex.run_sequence(groups, {**VAE_SETTINGS, "objective": "reconstruction"}, lam=1e6, first=first)
    kept = sum(((a - b).abs() * (o > 0)).sum().item() for a, b, o in zip(
        first.decoder.parameters(), held["second"].decoder.parameters(),
        vae_ex.decoder_importance(first, groups.tasks[0].train.x, 100, "reconstruction").values()))
    assert moved > 0 and kept < moved
    assert held["error_1_after_1"] == free["error_1_after_1"]  # the same first VAE
    with pytest.raises(ValueError):
        vae_ex.train(first, groups.tasks[0].train.x, steps=1, batch_size=2, lr=1e-3, seed=0, lam=1.0)


# ----------------------------------------------------------------------------- VGG9 and the estimate

def test_vgg9_has_nine_weight_layers_and_a_head_per_task():
    settings = presets.get("spp-vision", "smoke")["fig10"]
    bench = vision._shape_only({**settings, "input_shape": [3, 16, 16]})
    model = build_vgg9_model(bench, seed=0)
    weights = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(weights) == 9
    assert model(torch.zeros(2, 3, 16, 16), 0).shape == (2, settings["classes_per_task"])
    with pytest.raises(ValueError):
        build_vgg9_model(vision._shape_only({**settings, "input_shape": [3, 12, 12]}))
    body = VGG9(3, 16)
    forward = training_flops(build_vgg9_model(bench, seed=0), (3, 16, 16), 0)
    assert forward > 2 * sum(p.numel() for p in body.parameters())  # at least one multiply-add per weight


def test_estimate_counts_joint_training_on_the_union_of_tasks():
    s = {"tasks": 4, "train_per_task": 10, "epochs": 2}
    assert vision.samples_seen(s, joint=False) == 4 * 10 * 2
    assert vision.samples_seen(s, joint=True) == 10 * 2 * (1 + 2 + 3 + 4)
    one = vision.estimate_seconds(1e12, s, ["SPP"], 1.0)
    assert one == pytest.approx(80.0)
    assert vision.estimate_seconds(1e12, s, ["SPP"], 2.0) == pytest.approx(one / 2)
    with pytest.raises(ValueError):
        vision.estimate_seconds(1e9, s, ["SPP"], 0.0)


def test_curves_give_acc_bwt_fwt_smt_after_each_task():
    class R:
        def __init__(self, R):
            self.R = np.array(R)

    results = {"SPP": R([[0.9, 0.1], [0.8, 0.7]]), "joint": R([[0.95, 0.1], [0.9, 0.85]])}
    table = vision.curves(results)
    assert table.loc[("SPP", 2), "ACC"] == pytest.approx(75.0)
    assert table.loc[("SPP", 2), "BWT"] == pytest.approx(-10.0)
    assert table.loc[("SPP", 2), "FWT (Eq. 7)"] == pytest.approx(100 * (0.9 - 0.9))
    assert np.isnan(table.loc[("SPP", 1), "BWT"])


def test_penalty_step_benchmark_times_each_strategy_against_plain_steps():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import penalty_step

    result = penalty_step.measure(width=8, batch_size=4, steps=2, rounds=1, strategies=["spp"])
    assert set(result) == {"naive", "spp"} and all(v > 0 for v in result.values())
    with pytest.raises(SystemExit):
        penalty_step.main(["--width", "0"])


def test_long_sequence_runs_vgg9_for_each_method_on_a_tiny_image_benchmark():
    from clutils.data.benchmarks import Benchmark, Task
    from clutils.data.tensors import TensorData

    g = torch.Generator().manual_seed(0)

    def part(n):
        return TensorData(torch.randn(n, 3, 8, 8, generator=g), torch.randint(2, (n,), generator=g))

    bench = Benchmark("tiny-images", "task", [Task(i, part(8), part(4), (2 * i, 2 * i + 1), f"t{i}") for i in range(2)],
                      4, (3, 8, 8), "random")
    settings = {**presets.get("spp-vision", "smoke")["fig10"], "epochs": 1, "batch_size": 4}
    results = vision.run_long_sequence(settings, ["SPP", "fine-tuning", "joint"], benchmark=bench)
    table = vision.curves(results)
    assert set(table.index.get_level_values("method")) == {"SPP", "fine-tuning", "joint"}
    assert table["ACC"].between(0, 100).all()
