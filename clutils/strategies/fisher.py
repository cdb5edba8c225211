"""Per-sample gradient statistics: the diagonal Fisher of EWC and the importance of MAS.

Both are means over samples of an element-wise function of a *per-sample*
gradient,

    F_k     = 1/N sum_i ( d log p(y_i | x_i) / d theta_k )^2          (EWC)
    Omega_k = 1/N sum_i | d ||f(x_i)||_2^2   / d theta_k |            (MAS)

The per-sample gradients are computed in one vectorised pass per chunk with
``torch.func`` (``functional_call`` + ``vmap`` + ``grad``) rather than a Python
loop over samples; ``chunk_size`` bounds the memory, which is
``chunk_size x (number of parameters)`` floats for the stacked gradients.
The model is put in eval mode for the computation (no dropout noise, batch norm
with its running statistics) and restored afterwards.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from ..data.benchmarks import Benchmark, Task
from .base import parameters_of

FISHER_KINDS = ("empirical", "true")

SampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits of one sample, its label) -> scalar


def model_task(benchmark: Benchmark | None, task: Task) -> int | None:
    """The ``task`` argument the model's forward takes for ``task``: its index for multi-head models."""
    return task.index if benchmark is not None and benchmark.scenario == "task" else None


def per_sample_gradient_sum(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                            task: int | None, sample_loss: SampleLoss,
                            transform: Callable[[torch.Tensor], torch.Tensor],
                            chunk_size: int = 256,
                            labels: Callable[[torch.Tensor], torch.Tensor] | None = None
                            ) -> dict[str, torch.Tensor]:
    """``sum_i transform(d sample_loss(f(x_i), y_i) / d theta)`` over all samples, per parameter name.

    ``transform`` acts element-wise on the stacked gradients of a chunk (it may work
    in place). ``labels`` (optional) maps the logits of a chunk to the labels used
    instead of ``y`` (the sampled labels of the true Fisher).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    params = {n: p.detach() for n, p in parameters_of(model).items()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    total = {n: torch.zeros_like(p) for n, p in params.items()}

    def one_sample(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0), task))
        return sample_loss(logits.squeeze(0), yi)

    per_sample = vmap(grad(one_sample), in_dims=(None, 0, 0))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(x), chunk_size):
            xc = x[start:start + chunk_size]
            if labels is not None:
                with torch.no_grad():
                    yc = labels(model(xc, task))
            elif y is not None:
                yc = y[start:start + chunk_size]
            else:  # unsupervised: a dummy label per sample keeps one vmap signature
                yc = torch.zeros(len(xc), dtype=torch.int64, device=xc.device)
            grads = per_sample(params, xc, yc)
            for n, g in grads.items():
                total[n] += transform(g).sum(0)
    finally:
        model.train(was_training)
    return total


def _log_likelihood(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def _square_(g: torch.Tensor) -> torch.Tensor:
    return g.square_()


def diagonal_fisher(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                    task: int | None = None, kind: str = "empirical", chunk_size: int = 256,
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The diagonal of the Fisher information, ``F_k = 1/N sum_i (d log p(y_i|x_i) / d theta_k)^2``.

    * ``kind="empirical"``: ``y_i`` are the true labels ``y``;
    * ``kind="true"``: ``y_i`` is drawn from the model's own predictive distribution
      ``p(. | x_i)`` (one sample per input, drawn with ``generator``; ``y`` is ignored).
      Its expectation over the draws is the Fisher of Kirkpatrick et al. (2017).

    ``task`` is passed to the model's forward (the head of a multi-head model).
    Returns one tensor per trainable parameter name, shaped like the parameter.
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"unknown Fisher kind {kind!r}; choose one of: {', '.join(FISHER_KINDS)}")
    if len(x) == 0:
        raise ValueError("the Fisher needs at least one sample")
    labels = None
    if kind == "true":
        def labels(logits: torch.Tensor) -> torch.Tensor:
            probs = torch.softmax(logits.float(), dim=-1)
            if generator is not None and generator.device != probs.device:
                return torch.multinomial(probs.to(generator.device), 1, generator=generator
                                         ).squeeze(1).to(probs.device)
            return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    elif y is None:
        raise ValueError("the empirical Fisher needs the labels y")
    total = per_sample_gradient_sum(model, x, y, task, _log_likelihood, _square_, chunk_size, labels)
    return {n: t / len(x) for n, t in total.items()}
