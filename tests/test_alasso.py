"""ALASSO: the asymmetric surrogate (Eq. 5), the exact Omega (Eq. 7, 10-12), the chapter's helpers
and the loss-asymmetry probe."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from clutils import presets
from clutils.diagnostics import asymmetry
from clutils.strategies import make
from clutils.strategies.alasso import ALASSO, side_coefficients, surrogate
from clutils.strategies.quadratic import QuadraticPenalty


class Theta(nn.Module):
    """A model that is just its parameter vector (the loss is computed by hand)."""

    def __init__(self, values):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _set_state(strategy, omega, came_from, anchor):
    strategy.setup(None, None)
    strategy.load_state_dict({
        "omega.theta": torch.tensor(omega, dtype=torch.float64),
        "came_from.theta": torch.tensor(came_from, dtype=torch.float64),
        "anchor.theta": torch.tensor(anchor, dtype=torch.float64),
    })


def penalty_and_gradient(strategy, model):
    """The penalty and its gradient: added by ``after_backward`` or back-propagated, as the loop does."""
    strategy.before_task(model, None)
    model.zero_grad(set_to_none=True)
    value = strategy.penalty(model, None)
    if strategy.applies_penalty_gradient:
        model.theta.grad = torch.zeros_like(model.theta)  # the task loss's gradient, here zero
        strategy.after_backward(model)
    else:
        value.backward()
    return value.detach(), model.theta.grad.clone()


# ----------------------------------------------------------------------------- Eq. 5: the surrogate

def test_registered_with_the_authors_constants():
    s = make("alasso")
    assert isinstance(s, ALASSO)
    assert (s.hp["c"], s.hp["a"], s.hp["epsilon"], s.hp["xi"]) == (1.0, 1.8, 1e-6, 0.1)
    assert s.primed == (1.0, 1.0, 0.0)
    assert make("alasso", decouple=False, a=3.0, c=0.5, epsilon=0.1).primed == (0.5, 3.0, 0.1)
    with pytest.raises(ValueError):
        make("alasso", omega="bogus")


@pytest.mark.parametrize("fused", [True, False])
def test_symmetric_si_penalty_when_a_is_1_and_epsilon_0(fused):
    g = torch.Generator().manual_seed(0)
    omega = torch.rand(50, generator=g, dtype=torch.float64)
    anchor = torch.randn(50, generator=g, dtype=torch.float64)
    came_from = torch.sign(torch.randn(50, generator=g, dtype=torch.float64))
    theta = torch.randn(50, generator=g, dtype=torch.float64)
    model = Theta(theta.tolist())

    s = make("alasso", a=1.0, epsilon=0.0, c=0.7)
    s.applies_penalty_gradient = fused
    _set_state(s, omega.tolist(), came_from.tolist(), anchor.tolist())
    quad = QuadraticPenalty()  # SI's penalty: c * sum_k Omega_k (theta_k - theta*_k)^2
    quad.hp = {"c": 0.7}
    quad.importance, quad.anchor = {"theta": omega}, {"theta": anchor}
    got, g_alasso = penalty_and_gradient(s, model)
    model.theta.grad = None
    expected = quad.penalty(model, None)
    assert torch.allclose(got, expected.detach(), rtol=1e-12)
    expected.backward()  # ... and the same gradient
    assert torch.allclose(g_alasso, model.theta.grad, rtol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_observed_side_charged_omega_unobserved_side_a_omega_plus_epsilon(fused):
    a, eps, c = 3.0, 0.5, 2.0
    # Anchor 1.0 for every parameter, Omega 2.0. came_from = sign(theta^{n-1} - theta^n):
    # +1: the parameter came from above, so above the anchor is the observed side.
    came_from = [1.0, 1.0, -1.0, -1.0, 0.0, 0.0]
    theta = [1.5, 0.5, 1.5, 0.5, 1.5, 0.5]  # every case on both sides, 0.5 away
    s = make("alasso", a=a, epsilon=eps, c=c)
    s.applies_penalty_gradient = fused
    _set_state(s, [2.0] * 6, came_from, [1.0] * 6)
    obs, unobs = 2.0 * 0.25, (a * 2.0 + eps) * 0.25
    expected = [obs, unobs, unobs, obs, unobs, unobs]  # a parameter that never moved: both sides unobserved
    model = Theta(theta)
    per_param = surrogate(model.theta.detach(), s.anchor["theta"], s.omega["theta"], s.came_from["theta"], a, eps)
    assert per_param.tolist() == pytest.approx(expected)
    value, grad = penalty_and_gradient(s, model)
    assert float(value) == pytest.approx(c * sum(expected))
    assert float(s.surrogate_loss(model)) == pytest.approx(sum(expected))
    # Gradient of the fast penalty: 2 c coefficient (theta - anchor)
    coef = [2.0, a * 2 + eps, a * 2 + eps, 2.0, a * 2 + eps, a * 2 + eps]
    d = [0.5, -0.5, 0.5, -0.5, 0.5, -0.5]
    assert grad.tolist() == pytest.approx([2 * c * k * x for k, x in zip(coef, d)])


def test_fast_penalty_matches_the_reference_surrogate_and_its_gradient():
    g = torch.Generator().manual_seed(1)
    n = 1000
    omega = torch.rand(n, generator=g)
    anchor = torch.randn(n, generator=g)
    came_from = torch.randint(-1, 2, (n,), generator=g).float()
    theta = (anchor + torch.randn(n, generator=g)).requires_grad_()
    mid, half = side_coefficients(omega, came_from, 1.8, 1e-2)
    from clutils.strategies.alasso import _AsymmetricQuadratic

    fast = _AsymmetricQuadratic.apply(theta, anchor, mid, half)
    (g_fast,) = torch.autograd.grad(fast, theta)
    ref = surrogate(theta, anchor, omega, came_from, 1.8, 1e-2).sum()
    (g_ref,) = torch.autograd.grad(ref, theta)
    assert torch.allclose(fast, ref, rtol=1e-5)
    assert torch.allclose(g_fast, g_ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- Eq. 7: the exact Omega

H1, T1 = torch.tensor([1.0, 3.0], dtype=torch.float64), torch.tensor([1.0, -0.5], dtype=torch.float64)
H2, T2 = torch.tensor([2.0, 0.5], dtype=torch.float64), torch.tensor([2.0, 1.0], dtype=torch.float64)


def quadratic_loss(theta, h, t):
    """A separable two-parameter quadratic: L(theta) = sum_k h_k (theta_k - t_k)^2, per parameter."""
    return h * (theta - t) ** 2


def train_task(model, strategy, h, t, steps=6000, lr=1e-4):
    """The training loop's hook order (train.py), with plain SGD on the quadratic task loss."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    strategy.before_task(model, None)
    for _ in range(steps):
        loss = quadratic_loss(model.theta, h, t).sum()
        penalty = None if strategy.applies_penalty_gradient else strategy.penalty(model, None)
        opt.zero_grad()
        loss.backward()
        strategy.after_task_backward(model)
        if penalty is not None:
            penalty.backward()
        strategy.after_backward(model)
        opt.step()
        strategy.after_step(model)
    strategy.after_task(model, None, None)


@pytest.mark.parametrize("decouple", [True, False])
def test_omega_matches_eq7_on_a_two_parameter_quadratic(decouple):
    a, eps, c = 2.5, 0.01, 0.3
    s = make("alasso", a=a, epsilon=eps, c=c, xi=0.0, keep_max=False, decouple=decouple,
             c_prime=0.8, a_prime=1.2, epsilon_prime=0.02)
    model = Theta([0.0, 0.0])
    s.setup(model, None)
    theta0 = model.theta.detach().clone()

    train_task(model, s, H1, T1)
    theta1 = model.theta.detach().clone()
    # Task 1: Omega^1 = omega^1 / Delta^2 with omega^1 = L^1(theta^0) - L^1(theta^1) (Eq. 10)
    omega1 = quadratic_loss(theta0, H1, T1) - quadratic_loss(theta1, H1, T1)
    expected1 = omega1 / (theta1 - theta0) ** 2
    assert torch.allclose(s.omega["theta"], expected1, rtol=2e-3)
    assert s.came_from["theta"].tolist() == torch.sign(theta0 - theta1).tolist()

    train_task(model, s, H2, T2)
    theta2 = model.theta.detach().clone()
    c_p, a_p, eps_p = (0.8, 1.2, 0.02) if decouple else (c, a, eps)
    omega2 = quadratic_loss(theta1, H2, T2) - quadratic_loss(theta2, H2, T2)  # Eq. 10
    # Eq. 11/12: omega^{1:1} = -c' L_s^1(theta^2, a'), the old surrogate evaluated in closed form
    d = theta2 - theta1
    observed = torch.sign(d) * torch.sign(theta0 - theta1) > 0
    old_surrogate = torch.where(observed, expected1, a_p * expected1 + eps_p) * d ** 2
    expected2 = (omega2 - c_p * old_surrogate) / d ** 2  # Eq. 7
    assert (expected2 > 0).all()  # the case where Eq. 7 needs no clamping
    assert torch.allclose(s.omega["theta"], expected2, rtol=5e-3)  # the path integral is first order in lr
    assert observed.tolist() == [False, True]  # parameter 1 went on past its anchor, parameter 2 came back


def test_keep_max_bounds_omega_by_the_previous_one():
    s = make("alasso", keep_max=True, xi=0.0)
    model = Theta([0.0, 0.0])
    s.setup(model, None)
    train_task(model, s, H1, T1, steps=2000)
    first = s.omega["theta"].clone()
    # A second task at the same optimum: hardly any loss drop, Eq. 7 would shrink Omega.
    train_task(model, s, H1 * 0.01, model.theta.detach().clone() + 1e-3, steps=200)
    assert (s.omega["theta"] >= first).all()
    assert torch.equal(s.omega["theta"], torch.maximum(s.omega["theta"], first))


def test_si_omega_ablation_is_cumulative_like_si():
    s_al = make("alasso", omega="si", a=1.0, epsilon=0.0, c=0.1, xi=0.1)
    s_si = make("si", c=0.1, xi=0.1)
    m_al, m_si = Theta([0.0, 0.0]), Theta([0.0, 0.0])
    s_al.setup(m_al, None)
    s_si.setup(m_si, None)
    for h, t in ((H1, T1), (H2, T2)):
        train_task(m_al, s_al, h, t, steps=500, lr=1e-3)
        train_task(m_si, s_si, h, t, steps=500, lr=1e-3)
    assert torch.allclose(m_al.theta, m_si.theta)
    assert torch.allclose(s_al.omega["theta"], s_si.importance["theta"])


def test_fused_and_autograd_gradients_train_identically():
    runs = []
    for fused in (True, False):
        s = make("alasso", a=2.0, epsilon=0.01, c=0.5)
        s.applies_penalty_gradient = fused
        model = Theta([0.0, 0.0])
        s.setup(model, None)
        for h, t in ((H1, T1), (H2, T2), (H1, T2)):
            train_task(model, s, h, t, steps=300, lr=1e-2)
        runs.append((model.theta.detach().clone(), s.omega["theta"].clone()))
    assert torch.allclose(runs[0][0], runs[1][0], rtol=1e-10) and torch.allclose(runs[0][1], runs[1][1], rtol=1e-10)


def test_state_dict_round_trip_keeps_the_penalty():
    s = make("alasso")
    model = Theta([0.0, 0.0])
    s.setup(model, None)
    train_task(model, s, H1, T1, steps=300, lr=1e-3)
    with torch.no_grad():
        model.theta += torch.tensor([0.3, -0.2], dtype=torch.float64)
    before = float(s.penalty(model, None).detach())
    fresh = make("alasso")
    fresh.setup(model, None)
    fresh.load_state_dict(s.state_dict())
    assert float(fresh.penalty(model, None).detach()) == pytest.approx(before)


def test_fit_runs_and_resumes(tmp_path):
    from clutils.data import make_benchmark
    from clutils.models import build_model
    from clutils.train import TrainConfig, fit

    bench = make_benchmark("permuted-mnist", dataset="digits", n_tasks=3, seed=0, train_per_class=20, test_per_class=10)
    cfg = TrainConfig(epochs=1, batch_size=32, seed=0, progress=False)
    full = fit(build_model(bench, hidden=(16,), seed=0), bench, make("alasso"), cfg, device="cpu")
    assert full.R.shape == (3, 3) and np.isfinite(full.R).all()
    # Interrupted before the third task, then resumed from the checkpoint: the same result.

    class Interrupted(ALASSO):
        def before_task(self, model, task):
            if task.index == 2:
                raise KeyboardInterrupt
            super().before_task(model, task)

    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(build_model(bench, hidden=(16,), seed=0), bench, Interrupted(), cfg, device="cpu", run_dir=run_dir)
    again = fit(build_model(bench, hidden=(16,), seed=0), bench, make("alasso"), cfg, device="cpu", run_dir=run_dir)
    assert np.allclose(again.R, full.R)


# ----------------------------------------------------------------------------- presets

@pytest.mark.parametrize("profile", presets.PROFILES)
def test_presets_exist_for_every_profile(profile):
    for name in ("alasso-permuted-mnist", "alasso-loss-asymmetry", "alasso-split"):
        settings = presets.get(name, profile)
        assert isinstance(settings, dict) and settings
    quick = presets.get("alasso-permuted-mnist", "quick")
    assert 0.8 in quick["a_values"] and 2.0 in quick["a_values"]
    paper = presets.get("alasso-permuted-mnist", "paper")
    assert paper["hidden"] == [2000, 2000] and paper["epochs"] == 20 and paper["batch_size"] == 256
    assert paper["lr"] == 1e-3 and paper["tasks"] == 30 and paper["tasks_long"] == 100


# ----------------------------------------------------------------------------- the asymmetry probe

class Scalar(nn.Module):
    """Logits that do not matter: the probe's loss_fn below reads the parameter itself."""

    def __init__(self, value):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([value], dtype=torch.float64))

    def forward(self, x):
        return self.p.expand(len(x), 1)


def exp_loss(logits, y, reduction="mean"):
    """exp(p) - p: minimum at p = 0, steeper for p > 0 than for p < 0."""
    per = (logits.exp() - logits).squeeze(1) - 1.0
    return per.mean() if reduction == "mean" else per


def test_probe_detects_an_underestimated_unobserved_side():
    x, y = torch.zeros(4, 1), torch.zeros(4, dtype=torch.long)
    model = Scalar(0.0)
    # came from below (-1): the observed side is the flat one, the unobserved side (p > 0) is steeper
    report = asymmetry.probe_asymmetry(model, {"p": torch.tensor([-1.0])}, x, y, loss_fn=exp_loss, min_move=0)
    row = report.table.iloc[0]
    assert bool(row.underestimated) and row.h_un > row.h_obs
    assert row.actual == pytest.approx(math.exp(1.0) - 1.0 - 1.0)  # exact loss change at +1
    assert report.summary()["underestimated"] == 1.0
    # came from above: the observed side is the steep one; no underestimation
    report = asymmetry.probe_asymmetry(model, {"p": torch.tensor([1.0])}, x, y, loss_fn=exp_loss, min_move=0)
    assert not bool(report.table.iloc[0].underestimated)
    assert report.summary()["underestimated"] == 0.0


def test_probe_fast_path_matches_full_forward_passes():
    from clutils.data import make_benchmark
    from clutils.models import build_model
    from clutils.strategies.base import clone_parameters

    bench = make_benchmark("permuted-mnist", dataset="digits", n_tasks=1, seed=0, train_per_class=20, test_per_class=5)
    model = build_model(bench, hidden=(12, 8), seed=0)
    start = clone_parameters(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, y = bench.tasks[0].train.x, bench.tasks[0].train.y
    chosen = asymmetry.select_parameters(model, start, per_tensor=3, seed=0)
    assert {n for n, _ in chosen} == {n for n, _ in model.named_parameters()}
    offsets = np.array([-0.3, -0.1, 0.1, 0.3])
    fast = asymmetry.loss_profiles(model, x, y, chosen, offsets, task=None)

    class Opaque(nn.Module):  # hides the structure: the probe falls back to full forward passes
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    slow = asymmetry.loss_profiles(Opaque(model), x, y, [(f"inner.{n}", i) for n, i in chosen], offsets)
    assert np.allclose(fast, slow, atol=1e-10)
    report = asymmetry.probe_asymmetry(model, start, x, y, per_tensor=3)
    assert len(report.table) == len(chosen) and report.offsets.shape == (len(chosen), 8)
    assert set(report.summary()) >= {"underestimated", "median_factor", "median_asymmetry"}
    frame = asymmetry.profiles_for_plot(model, x, y, chosen[:2], np.linspace(-0.2, 0.2, 5))
    assert len(frame) == 10
    for _, part in frame.groupby("parameter"):
        right = part[part.offset > 0].loss_change.sum()
        left = part[part.offset < 0].loss_change.sum()
        assert right >= left


# ----------------------------------------------------------------------------- the chapter page

def test_code_excerpts_on_the_chapter_page_are_verbatim_from_the_implementation():
    """book/alasso.md shows the code next to the formulas; it must not drift from the module."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "alasso.md").read_text()
    source = (root / "clutils" / "strategies" / "alasso.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 5
    for block in blocks:
        assert block.strip("\n") in source, f"excerpt not found in clutils/strategies/alasso.py:\n{block}"


class TwoScalars(nn.Module):
    """Two parameters whose values the loss below reads directly."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.q = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x):
        return torch.cat([self.p, self.q]).expand(len(x), 2)


def test_probe_leaves_out_parameters_whose_loss_change_is_float_noise():
    def loss(logits, y, reduction="mean"):
        p, q = logits[:, 0], logits[:, 1]
        # p: a real valley, 1.72 times steeper on one side; q: a valley too, 20x asymmetric, but its
        # loss change is about 1e-16, the size of float noise (like a dead unit's weights)
        per = (p.exp() - p - 1.0) + 1e-16 * ((5 * q).exp() - 5 * q - 1.0) / 12.0
        return per.mean() if reduction == "mean" else per

    x, y = torch.zeros(4, 1), torch.zeros(4, dtype=torch.long)
    start = {"p": torch.tensor([-1.0]), "q": torch.tensor([-1.0])}
    report = asymmetry.probe_asymmetry(TwoScalars(), start, x, y, loss_fn=loss, min_move=0)
    table = report.table.set_index("name")
    assert table.loc["q", "loss_scale"] < asymmetry.FLAT_FLOOR < table.loc["p", "loss_scale"]
    assert list(table["flat"]) == [False, True]
    summary = report.summary()
    assert summary["parameters"] == 2 and summary["flat"] == 1
    p_asymmetry = table.loc["p", "h_un"] / table.loc["p", "h_obs"]
    assert summary["median_asymmetry"] == pytest.approx(p_asymmetry)  # q's 20x does not count
    assert summary["valleys"] == 1.0 and list(report.valleys["name"]) == ["p"]
    # with no floor, q's noise counts as a valley and pulls the median up
    assert asymmetry.summarise(report.table, floor=0.0)["median_asymmetry"] > 2 * p_asymmetry


def test_si_omega_ablation_applies_the_relu_to_the_running_sum():
    # The SI code's relu(Omega + new): a negative contribution lowers the old importance.
    s = make("alasso", omega="si", xi=1.0)
    s.omega = {"t": torch.tensor([1.0])}
    out = s.new_omega({"t": torch.tensor([1.0])}, {"t": torch.tensor([0.0])}, {"t": torch.tensor([-1.0])})
    assert out["t"].item() == pytest.approx(0.5)  # relu(1 + (-1) / (1 + 1)), not 1 + relu(-0.5)
    out = s.new_omega({"t": torch.tensor([1.0])}, {"t": torch.tensor([0.0])}, {"t": torch.tensor([-4.0])})
    assert out["t"].item() == 0.0


def test_the_quick_split_is_its_stand_in_on_every_machine(monkeypatch):
    """A preset entry naming a dataset runs its stand-in split without any override; the paper's
    entry (dataset None) asks for CIFAR-10/100, and the notebooks' parameter replaces either."""
    from clutils import presets
    from clutils.experiments import alasso as ex

    calls = []
    monkeypatch.setattr(ex, "make_benchmark", lambda name, **kw: calls.append((name, kw)) or
                        type("B", (), {"dataset": kw.get("dataset", "cifar"), "n_classes": 10})())
    quick = presets.get("alasso-split", "quick")["cifar"]
    ex.split_benchmark(quick)
    assert calls[-1][0] == "split-mnist"
    assert (calls[-1][1]["dataset"], calls[-1][1]["n_tasks"]) == ("fashion-mnist", quick["standin_tasks"])
    ex.split_benchmark(quick, dataset="mnist")
    assert calls[-1][1]["dataset"] == "mnist"
    ex.split_benchmark(presets.get("alasso-split", "paper")["cifar"])
    assert calls[-1][0] == "split-cifar10-100"


def test_variants_are_shades_of_their_method_and_take_no_other_strategys_colour():
    from clutils.experiments import alasso as ex
    from clutils.style import STRATEGY_COLORS, strategy_color, variant_color

    taken = set(STRATEGY_COLORS.values())
    colours = {label: ex.method_color(label) for label in ex.VARIANTS}
    assert not taken & set(colours.values()), colours
    assert len(set(colours.values())) == len(colours)  # the ablations differ from each other
    for label, (strategy, _) in ex.VARIANTS.items():
        assert ex.method_style(label) != "-"  # and from their method's solid line
        # a shade keeps the hue: the channels keep their order (no other strategy's colour)
        base = [int(strategy_color(strategy)[i:i + 2], 16) for i in (1, 3, 5)]
        shade = [int(colours[label][i:i + 2], 16) for i in (1, 3, 5)]
        assert sorted(range(3), key=base.__getitem__) == sorted(range(3), key=shade.__getitem__) or len(set(base)) == 1
    assert variant_color("alasso", 0.5) != variant_color("alasso", -0.5)
    with pytest.raises(ValueError):
        variant_color("alasso", 1.0)
