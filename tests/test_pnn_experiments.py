"""The PNN chapter's helpers: variants, transfer scores, parameter growth, the bit-identity recorder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clutils import presets
from clutils.experiments import expansion as ex

pytestmark = pytest.mark.usefixtures("one_thread")


def test_variants_change_the_images_as_documented():
    x = torch.randn(4, 1, 12, 12)
    assert torch.equal(ex.transform(x, "original"), x)
    assert torch.equal(ex.transform(x, "flipped"), x.flip(-1))
    assert torch.equal(ex.transform(x, "inverted"), -x)
    noisy = ex.transform(x, "noisy", noise=0.5, seed=1)
    assert torch.equal(noisy, ex.transform(x, "noisy", noise=0.5, seed=1)) and not torch.equal(noisy, x)
    assert ex.transform(x, "zoomed").shape == x.shape
    with pytest.raises(ValueError, match="unknown variant"):
        ex.transform(x, "rotated")


def test_transfer_score_is_relative_auc_above_chance_clipped():
    assert ex.transfer_score([0.5, 0.7], [0.5, 0.7], 0.1) == pytest.approx(1.0)
    assert ex.transfer_score([0.3, 0.5], [0.5, 0.7], 0.1) == pytest.approx(0.3 / 0.5)
    assert ex.transfer_score([1.0, 1.0], [0.15, 0.15], 0.1) == 2.0  # clipped
    assert ex.transfer_score([0.0, 0.0], [0.5, 0.5], 0.1) == 0.0
    assert np.isnan(ex.transfer_score([0.5], [0.1], 0.1))


def test_transfer_table_has_every_baseline_and_the_pnn_for_each_pair():
    settings = presets.get("expansion-pnn", "smoke")
    settings["soup"].update({"variants": ["original", "flipped", "inverted"], "three_column": True,
                             "source_epochs": 1, "target_epochs": 2})
    variants = ex.soup(settings, dataset="digits", seed=0)
    table = ex.transfer_scores(variants, settings, seed=0)
    two = table[table["sources"] == "original"]
    assert set(two["target"]) == {"flipped", "inverted"}
    assert set(two["method"]) == {"baseline 1", "baseline 2", "baseline 3", "baseline 4", "PNN 2 col"}
    three = table[table["sources"] == "original + flipped"]
    assert set(three["method"]) >= {"PNN 3 col"} and set(three["target"]) == {"inverted"}
    assert (table[table["method"] == "baseline 1"]["score"] == 1.0).all()
    assert table["score"].between(0, 2).all()
    assert all(len(c) == 2 for c in table["curve"])


def test_parameter_growth_matches_the_closed_form_and_the_fit_is_exact():
    growth = ex.parameter_growth(30, [8, 8], 2, 6)
    assert (growth["PNN (measured)"] == growth["PNN (closed form)"]).all()
    assert (growth["PNN (measured)"] >= growth["separate networks"]).all()
    _, residual = ex.quadratic_fit(growth.index.to_numpy(), growth["PNN (measured)"].to_numpy())
    assert residual < 1e-6 * growth["PNN (measured)"].max()


def test_recorder_sees_bit_identical_logits_for_pnn_but_not_for_naive():
    settings = presets.get("expansion-pnn", "smoke")
    bench = ex.benchmark(settings, dataset="digits", seed=0)
    _, model, _, recorder = ex.run("pnn", bench, [16], 2, record=True)
    assert all(recorder.identical(model, bench))
    _, model, _, recorder = ex.run("naive", bench, [16], 2, record=True)
    assert not recorder.identical(model, bench)[0]
