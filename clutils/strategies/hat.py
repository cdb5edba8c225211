"""HAT: hard attention to the task (Serra, Suris, Miron and Karatzoglou, ICML 2018).

A network built by :mod:`clutils.models_hat` gates every layer's units with
``a_l^t = sigmoid(s e_l^t)``. The strategy trains the gates and protects what
earlier tasks use (Sections 2.2-2.6 of the paper; Dinu's report, Section 2):

* **annealing** (Eq. 3): within every epoch, batch ``b`` of ``B`` trains at
  ``s = 1/s_max + (s_max - 1/s_max) (b - 1) / (B - 1)``, and testing uses ``s_max``
  (:func:`annealed_s`). The report writes ``(b - 1)/(B - 1)``, which reaches ``s_max``
  at the last batch; the authors' code uses ``(b - 1)/B`` (the sample index over the
  number of samples) and never reaches it. ``schedule="report"`` (the default) follows
  the report, ``schedule="code"`` the code.
* **cumulative attention** (Eq. 4): after task t, ``a^{<=t} = max(a^{<=t-1}, a^t)`` with
  ``a^t`` at ``s = s_max``.
* **gradient masks** (Eq. 5): while training a later task, a weight between unit j of
  layer l-1 and unit i of layer l has its gradient multiplied by
  ``1 - min(a^{<t}_{l,i}, a^{<t}_{l-1,j})``, a bias (and a shared batch norm's scale and
  shift) by ``1 - a^{<t}_{l,i}`` (:func:`gradient_masks`); the first layer has no input gate.
* **embedding-gradient compensation** (Eq. 6): the embedding gradient ``q`` becomes
  ``s_max (cosh(clamp(s e, -50, 50)) + 1) / (s (cosh(e) + 1)) q``
  (:func:`compensation`), and after each step ``e`` is clamped to ``[-6, 6]``.
* **the attention regulariser** (Eqs. 7-8): ``c R`` is added to the loss, with
  ``R = sum_{l,i} a^t_{l,i} (1 - a^{<t}_{l,i}) / sum_{l,i} (1 - a^{<t}_{l,i})``
  (:func:`attention_regulariser`).

Defaults (``defaults``) are the paper's and the authors' code's: ``c = 0.75``,
``s_max = 400``, the clamps 50 and 6, the gradient norm clipped at 10,000. The
training recipe (plain SGD at lr 0.05, batch 64, no momentum and no weight decay:
either would move a parameter whose gradient the masks set to zero) is in
:mod:`clutils.strategies.recipes`.
"""
from __future__ import annotations

import math

import torch

from .base import Batch, Step, Strategy
from .registry import register

SCHEDULES = ("report", "code")


def annealed_s(step: int, steps: int, s_max: float, schedule: str = "report") -> float:
    """``s`` at batch ``step`` (from 1) of ``steps`` (Eq. 3).

    report: ``1/s_max + (s_max - 1/s_max) (b - 1)/(B - 1)`` (``s_max`` when ``B = 1``);
    code:   ``1/s_max + (s_max - 1/s_max) (b - 1)/B``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not 1 <= step <= steps:
        raise ValueError(f"step {step} outside 1..{steps}")
    if schedule == "report":
        fraction = (step - 1) / (steps - 1) if steps > 1 else 1.0
    else:
        fraction = (step - 1) / steps
    return 1 / s_max + (s_max - 1 / s_max) * fraction


def compensation(e: torch.Tensor, s: float, s_max: float, clamp: float = 50.0) -> torch.Tensor:
    """The factor of Eq. 6: ``s_max (cosh(clamp(s e)) + 1) / (s (cosh(e) + 1))``.

    Since ``sigmoid'(x) = 1 / (2 (cosh x + 1))``, it is the ratio
    ``s_max sigmoid'(e) / (s sigmoid'(s e))``: the gradient through ``sigmoid(s e)`` is
    replaced by the one through ``s_max sigmoid(e)``, whatever ``s`` the batch used.
    """
    num = torch.cosh(torch.clamp(s * e, -clamp, clamp)) + 1
    den = torch.cosh(e) + 1
    return s_max / s * num / den


def attention_regulariser(current: dict[str, torch.Tensor],
                          cumulative: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """``R = sum a^t (1 - a^{<t}) / sum (1 - a^{<t})`` over every gated unit (Eq. 8).

    Before the first task (``cumulative`` None) nothing is claimed: ``R`` is the mean attention.
    """
    reg = count = 0
    for name, a in current.items():
        free = 1 - cumulative[name] if cumulative is not None else torch.ones_like(a)
        reg = reg + (a * free).sum()
        count = count + free.sum()
    return reg / count


def gradient_masks(model, cumulative: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per parameter name, the factor its gradient is multiplied by (Eq. 5).

    weight: ``1 - min(a^{<t}_{out}, a^{<t}_{in})`` (the input gate repeated over the spatial
    positions of a flattened map; only ``1 - a^{<t}_{out}`` for a layer reading the input);
    bias and shared batch norm: ``1 - a^{<t}_{out}``. Parameters outside the map (the task
    heads, per-task batch norms, the embeddings) are not masked.
    """
    params = dict(model.named_parameters())
    masks = {}
    for name, gates in model.gradient_map().items():
        p = params[name]
        out = cumulative[gates.out]
        if p.dim() == 1:
            masks[name] = 1 - out
            continue
        post = out.view(-1, *([1] * (p.dim() - 1))).expand_as(p)
        if gates.into is None:
            masks[name] = 1 - post
            continue
        into = cumulative[gates.into].repeat_interleave(gates.repeat)
        pre = into.view(1, -1, *([1] * (p.dim() - 2))).expand_as(p)
        masks[name] = 1 - torch.minimum(post, pre)
    return masks


@register
class HAT(Strategy):
    """Hard attention to the task: task gates, gradient masks, compensation, regulariser.

    Needs a network of :mod:`clutils.models_hat` (``build_hat_model(..., masked=True)``)
    and a task-incremental benchmark.
    """

    name = "hat"
    defaults = {"c": 0.75, "s_max": 400.0, "clamp_se": 50.0, "clamp_e": 6.0, "clipgrad": 10000.0,
                "schedule": "report"}
    positive = frozenset({"s_max", "clamp_se", "clamp_e", "clipgrad"})
    scenarios = ("task",)
    #: The architecture the strategy matrix test builds for it (see clutils.models_hat).
    model_arch = "hat-mlp"
    #: Gates ``sigmoid(s e)`` at a large ``s`` are often below float32's smallest normal number
    #: (1.2e-38); these denormal values, carried into the backward pass, make the CPU's matrix
    #: products several times slower (2.4x a whole step on the 784-256-256 MLP). While a task trains,
    #: HAT flushes them to zero (``torch.set_flush_denormal``: only values below 1.2e-38 change) and
    #: restores PyTorch's default (off) after the task. It applies to the calling thread's CPU
    #: arithmetic (GPUs are unaffected).
    flush_denormal = True

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        if self.hp["schedule"] not in SCHEDULES:
            raise ValueError(f"hat: schedule must be one of {SCHEDULES}, got {self.hp['schedule']!r}")
        self.cumulative: dict[str, torch.Tensor] | None = None
        self.per_task: dict[int, dict[str, torch.Tensor]] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self._masked: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        self._embeddings: list[torch.nn.Parameter] = []
        self.s = 1.0
        self.model = None

    def setup(self, model, benchmark) -> None:
        if not hasattr(model, "gradient_map") or not getattr(model, "masked", False):
            raise TypeError("HAT needs a gated network: clutils.models_hat.build_hat_model(benchmark, masked=True) "
                            "(or --arch hat-mlp on the command line)")
        if benchmark.scenario != "task":
            raise ValueError(f"HAT is task-incremental; the benchmark is {benchmark.scenario}")
        super().setup(model, benchmark)
        self.model = model  # a resumed run's gates use the restored s (load_state_dict)

    def before_task(self, model, task) -> None:
        if self.flush_denormal:
            torch.set_flush_denormal(True)
        self.masks = gradient_masks(model, self.cumulative) if self.cumulative is not None else {}
        params = dict(model.named_parameters())
        self._masked = [(params[name], mask) for name, mask in self.masks.items()]
        self._embeddings = list(model.embeddings().values())

    def before_step(self, model, step: Step) -> None:
        self.s = annealed_s(step.step, step.steps, self.hp["s_max"], self.hp["schedule"])
        model.s = self.s

    def penalty(self, model, batch: Batch) -> torch.Tensor:
        return self.hp["c"] * attention_regulariser(model.last_gates, self.cumulative)

    def after_backward(self, model) -> None:
        with torch.no_grad():
            pairs = [(p.grad, mask) for p, mask in self._masked if p.grad is not None]
            if pairs:  # every masked gradient in one fused call
                torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])
            for p in self._embeddings:
                if p.grad is not None:
                    p.grad.mul_(compensation(p, self.s, self.hp["s_max"], self.hp["clamp_se"]))
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.hp["clipgrad"], foreach=True)

    def after_step(self, model) -> None:
        with torch.no_grad():
            for p in self._embeddings:
                p.clamp_(-self.hp["clamp_e"], self.hp["clamp_e"])

    def after_task(self, model, task, data) -> None:
        if self.flush_denormal:
            torch.set_flush_denormal(False)
        with torch.no_grad():
            a = {k: v.detach().clone() for k, v in model.attention(task.index, self.hp["s_max"]).items()}
        self.per_task[task.index] = a
        self.cumulative = a if self.cumulative is None else \
            {k: torch.maximum(self.cumulative[k], v) for k, v in a.items()}

    def before_eval(self, model) -> None:
        model.s = self.hp["s_max"]

    def after_eval(self, model) -> None:
        model.s = self.s

    def state_dict(self):
        state = {f"task{t}.{k}": v for t, masks in self.per_task.items() for k, v in masks.items()}
        state["s"] = self.s  # where the annealing stood: the gates (and so the penalty) depend on it
        return state

    def load_state_dict(self, state) -> None:
        state = dict(state)
        self.s = float(state.pop("s", self.s))
        if self.model is not None:
            self.model.s = self.s
        self.per_task, self.cumulative = {}, None
        for key, value in state.items():
            prefix, name = key.split(".", 1)
            self.per_task.setdefault(int(prefix[4:]), {})[name] = value
        for t in sorted(self.per_task):
            a = self.per_task[t]
            self.cumulative = dict(a) if self.cumulative is None else \
                {k: torch.maximum(self.cumulative[k], v) for k, v in a.items()}


def capacity_used(cumulative: dict[str, torch.Tensor], threshold: float = 0.5) -> dict[str, float]:
    """Per gate, the fraction of units whose cumulative attention is above ``threshold``."""
    return {name: float((a > threshold).float().mean()) for name, a in cumulative.items()}


def mask_overlap(per_task: dict[int, dict[str, torch.Tensor]], threshold: float = 0.5) -> torch.Tensor:
    """``O[i, j]``: the fraction of the units task ``j`` uses (attention above ``threshold``, all
    gates together) that task ``i`` uses too (``O[j, j] = 1``; a task using no unit gives NaN)."""
    tasks = sorted(per_task)
    used = [torch.cat([(per_task[t][k] > threshold).flatten() for k in sorted(per_task[t])]).float()
            for t in tasks]
    O = torch.full((len(tasks), len(tasks)), math.nan)
    for j, uj in enumerate(used):
        n = uj.sum()
        if n > 0:
            for i, ui in enumerate(used):
                O[i, j] = (ui * uj).sum() / n
    return O
