"""Per-sample gradient statistics: the diagonal Fisher of EWC and the importance of MAS.

Both are means over samples of a power of the *per-sample* gradient,

    F_k     = 1/N sum_i | d log p(y_i | x_i) / d theta_k |^2          (EWC, power 2)
    Omega_k = 1/N sum_i | d ||f(x_i)||_2^2   / d theta_k |            (MAS, power 1)

(the mean of the squared or absolute *per-sample* gradients, not the square of
a batch gradient). They are computed chunk by chunk (``chunk_size`` samples at
a time, which bounds the memory) without a Python loop over samples:

* parameters of ``nn.Linear`` layers applied once to a ``batch x features``
  input (every layer of the book's MLPs and the classifier of CifarNet): the
  per-sample gradient of the weight is the outer product ``delta_i a_i^T`` of
  the gradient at the layer's output and the layer's input, so
  ``sum_i |delta_i a_i^T|^p = (|delta|^p)^T |a|^p`` exactly: one matrix product
  per layer and chunk, from one batched forward and backward pass. No
  per-sample gradient is materialised, which makes the Fisher over 60,000
  MNIST images about as fast as a training epoch.
* every other parameter (convolutions, shared or tied layers, ...): per-sample
  gradients with ``torch.func`` (``functional_call`` + ``vmap`` + ``grad``),
  ``chunk_size x (their number)`` floats at a time.

``fast_linear=False`` sends every parameter through ``torch.func`` (the
reference the tests compare with). The model is put in eval mode for the
computation (no dropout noise, batch norm with its running statistics; samples
must not interact) and restored afterwards; its ``.grad`` fields are left alone.
Linear weights are assumed to be used only by their own module's forward.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..data.benchmarks import Benchmark, Task
from .base import parameters_of

FISHER_KINDS = ("empirical", "true")

# (logits of one sample, its label) -> the scalar whose gradient is taken
SampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def model_task(benchmark: Benchmark | None, task: Task) -> int | None:
    """The ``task`` argument of the model's forward for ``task``: its index for multi-head models."""
    return task.index if benchmark is not None and benchmark.scenario == "task" else None


def _power(g: torch.Tensor, power: int) -> torch.Tensor:
    return g.square() if power == 2 else g.abs().pow(power)


def _linear_layers(model: nn.Module, params: dict[str, torch.Tensor]) -> dict[str, nn.Linear]:
    """Linear modules whose trainable weight (and bias) belong to them alone, by module name."""
    uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    layers = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        own = [p for p in (module.weight, module.bias) if p is not None]
        prefix = f"{name}." if name else ""
        if all(uses[id(p)] == 1 for p in own) and f"{prefix}weight" in params and (
                module.bias is None or f"{prefix}bias" in params):
            layers[name] = module
    return layers


def per_sample_gradient_power_sum(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                                  task: int | None, sample_loss: SampleLoss, power: int = 2,
                                  chunk_size: int = 256,
                                  labels: Callable[[torch.Tensor], torch.Tensor] | None = None,
                                  fast_linear: bool = True) -> dict[str, torch.Tensor]:
    """``sum_i |d sample_loss(f(x_i, task), y_i) / d theta|^power`` per trainable parameter name.

    ``y`` may be None for a label-free ``sample_loss``. ``labels`` (optional) maps the
    logits of a chunk to the labels used instead of ``y`` (the sampled labels of the
    true Fisher); it is called once per chunk.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2, got {power}")
    params = {n: p.detach() for n, p in parameters_of(model).items()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    linears = _linear_layers(model, params) if fast_linear else {}

    def one_sample(free: dict[str, torch.Tensor], fixed: dict[str, torch.Tensor],
                   xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, ({**fixed, **free}, buffers), (xi.unsqueeze(0), task))
        return sample_loss(logits.squeeze(0), yi)

    per_sample_grads = vmap(grad(one_sample), in_dims=(None, None, 0, 0))
    batched_loss = vmap(sample_loss)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(x), chunk_size):
            xc = x[start:start + chunk_size]
            yc = None if y is None or labels is not None else y[start:start + chunk_size]
            covered: set[str] = set()
            if linears:
                covered, yc = _linear_pass(model, linears, xc, yc, task, batched_loss, labels, power, total)
            elif labels is not None:
                with torch.no_grad():
                    yc = labels(model(xc, task))
            if yc is None:  # label-free loss: a dummy label per sample keeps one vmap signature
                yc = torch.zeros(len(xc), dtype=torch.int64, device=xc.device)
            free = {n: p for n, p in params.items() if n not in covered}
            if free:
                fixed = {n: p for n, p in params.items() if n in covered}
                for n, g in per_sample_grads(free, fixed, xc, yc).items():
                    total[n] += _power(g, power).sum(0)
    finally:
        model.train(was_training)
    return total


def _linear_pass(model, linears, xc, yc, task, batched_loss, labels, power, total):
    """One batched forward/backward: add ``(|delta|^p)^T |a|^p`` of each linear layer to ``total``.

    Returns the names of the parameters it handled and the labels it used.
    """
    records: dict[str, list] = {}

    def recorder(name):
        def hook(module, inputs, output):
            records.setdefault(name, []).append((inputs[0].detach(), output))
            return output.clone()  # later in-place ops change the copy, not the recorded output
        return hook

    handles = [m.register_forward_hook(recorder(n)) for n, m in linears.items()]
    try:
        with torch.enable_grad():
            logits = model(xc, task)
    finally:
        for h in handles:
            h.remove()
    if labels is not None:
        yc = labels(logits.detach())
    targets = yc if yc is not None else torch.zeros(len(xc), dtype=torch.int64, device=xc.device)
    losses = batched_loss(logits, targets)
    # Layers called once on a 2-D input factorise; the others go through torch.func.
    clean = {n: rec[0] for n, rec in records.items() if len(rec) == 1 and rec[0][0].dim() == 2}
    names = list(clean)
    outputs = [clean[n][1] for n in names]
    deltas = torch.autograd.grad(losses.sum(), outputs, allow_unused=True) if outputs else []
    covered: set[str] = set()
    for name, delta in zip(names, deltas):
        a = clean[name][0]
        prefix = f"{name}." if name else ""
        module = linears[name]
        covered.add(f"{prefix}weight")
        if module.bias is not None:
            covered.add(f"{prefix}bias")
        if delta is None:
            continue
        d = _power(delta.detach(), power)
        total[f"{prefix}weight"].addmm_(d.T, _power(a, power))
        if module.bias is not None:
            total[f"{prefix}bias"] += d.sum(0)
    # Linear layers never called in this forward (another task's head) get no gradient.
    for name, module in linears.items():
        if name not in records:
            prefix = f"{name}." if name else ""
            covered.add(f"{prefix}weight")
            if module.bias is not None:
                covered.add(f"{prefix}bias")
    return covered, yc


def _log_likelihood(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def diagonal_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                    task: int | None = None, kind: str = "empirical", chunk_size: int = 256,
                    generator: torch.Generator | None = None,
                    fast_linear: bool = True) -> dict[str, torch.Tensor]:
    """The diagonal of the Fisher information, ``F_k = 1/N sum_i (d log p(y_i|x_i) / d theta_k)^2``.

    * ``kind="empirical"``: ``y_i`` are the given labels ``y``;
    * ``kind="true"``: ``y_i`` is drawn from the model's own predictive distribution
      ``p(. | x_i)``, one draw per input from uniforms drawn with ``generator`` (the
      global generator when None), so the draws do not depend on ``chunk_size``;
      ``y`` is ignored. In expectation over the draws this is the
      Fisher information of Kirkpatrick et al. (2017).

    ``task`` is passed to the model's forward (an int selects the head of a
    multi-head model; None for a single head). Returns one tensor per trainable
    parameter name, shaped like the parameter, on the parameter's device.
    See the module docstring for how it is vectorised and ``fast_linear``.
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"unknown Fisher kind {kind!r}; choose one of: {', '.join(FISHER_KINDS)}")
    if len(x) == 0:
        raise ValueError("the Fisher needs at least one sample")
    labels = None
    if kind == "true":
        # One uniform draw per sample, made up front: the sampled labels do not depend on chunk_size.
        device = generator.device if generator is not None else torch.device("cpu")
        uniforms = torch.rand(len(x), generator=generator, device=device, dtype=torch.float64).to(x.device)
        drawn = 0

        def labels(logits: torch.Tensor) -> torch.Tensor:  # inverse-CDF sampling from p(. | x)
            nonlocal drawn
            cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1)
            u = uniforms[drawn:drawn + len(logits)]
            drawn += len(logits)
            return (cdf < u.unsqueeze(1)).sum(-1).clamp_(max=logits.shape[-1] - 1)
    elif y is None:
        raise ValueError("the empirical Fisher needs the labels y")
    total = per_sample_gradient_power_sum(model, x, y, task, _log_likelihood, 2, chunk_size, labels,
                                          fast_linear)
    return {n: t / len(x) for n, t in total.items()}
