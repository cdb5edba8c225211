"""A stand-in for Figure 5 of the SPP paper (Peng et al., Section 4.2.4): SPP on a VAE's decoder.

The paper trains a convolutional VAE on CelebA faces, then on anime faces, "with separate latent
variable[s]" per task, and shows that the faces it generates after the second task survive with SPP
and not without. CelebA and the anime set are not on this machine, so the stand-in is small: the
MLP VAE of :mod:`clutils.generators` (the generator of deep generative replay) learns one group of
Fashion-MNIST classes, then another, and the first group's **reconstruction error** after the
second task is the measure (lower: less forgotten).

* **Separate latent variables.** Each task has its own encoder (and so its own code); the
  decoder is shared. After task 1 its encoder is kept frozen; task 2 trains a fresh encoder and
  the shared decoder.
* **The importance.** The paper does not say how SPP's importance (Eq. 2-3, the change of the
  output *entropy* of a classifier) carries over to the VAE. The decoder's output is a
  distribution too: independent Bernoulli pixels with probabilities ``p = sigmoid(decoder(z))``.
  The stand-in uses its entropy, summed over pixels and over a batch of codes ``z = mu(x)`` of the
  task's training inputs (the encoder's means, no sampling)::

      g_B = d [ sum_{x in B} sum_pixels h(p(x)) ] / dw,      h(p) = -p log p - (1 - p) log(1 - p)

      Omega_B = max(0, g_B w + 1/2 g_B^2 w^2)        (the same clipped expansion as the classifier's)

  averaged over the batches, on the decoder's parameters only.
* **The penalty** is Eq. 5 on the decoder: ``lam * sum_k Omega_k (w_k - w*_k)^2``, added to the
  negative ELBO of task 2's batch.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..data import benchmarks as bm
from ..data.named import make_benchmark
from ..generators import VAE, adam
from ..strategies.spp import pruning_importance


def group_benchmark(settings: Mapping[str, Any], dataset: str | None = None, seed: int = 0) -> bm.Benchmark:
    """The classes in two groups (two tasks of half the classes each), the first group first."""
    return make_benchmark("split-mnist", dataset=dataset or settings.get("dataset"), n_tasks=2, classes_per_task=5,
                          seed=seed, train_per_class=settings.get("train_per_class"),
                          test_per_class=settings.get("test_per_class"))


def bernoulli_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``sum`` over every pixel of a batch of ``h(p) = -p log p - (1-p) log(1-p)``, ``p = sigmoid(logits)``."""
    p = torch.sigmoid(logits)
    # -p log p - (1-p) log(1-p) = softplus(l) - p * l, written stably for any logit l
    return (F.softplus(logits) - p * logits).sum()


OBJECTIVES = ("entropy", "reconstruction")


def decoder_importance(vae: VAE, x: torch.Tensor, batch_size: int = 100,
                       objective: str = "entropy") -> dict[str, torch.Tensor]:
    """Omega of the decoder's parameters (module docstring): the clipped second-order change of the decoder's
    output entropy (``objective="entropy"``) or of its reconstruction error (``"reconstruction"``: the BCE of
    ``x`` from its code mean, also label-free) when a weight is pruned, averaged over batches of
    ``batch_size`` inputs of ``x``."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    if len(x) == 0:
        raise ValueError("the importance needs at least one input")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    params = dict(vae.decoder.named_parameters())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    batches = 0
    with torch.no_grad():
        codes = vae.encode(x)[0]
    for start in range(0, len(x), batch_size):
        logits = vae.decode_logits(codes[start:start + batch_size])
        if objective == "entropy":
            value = bernoulli_entropy(logits)
        else:
            value = F.binary_cross_entropy_with_logits(logits, vae.to_unit(x[start:start + batch_size]), reduction="sum")
        grads = torch.autograd.grad(value, list(params.values()))
        for (n, p), g in zip(params.items(), grads):
            total[n] += pruning_importance(g, p.detach())
        batches += 1
    return {n: t / batches for n, t in total.items()}


def fresh_encoder(vae: VAE, seed: int) -> VAE:
    """A copy of ``vae`` sharing nothing, with a newly initialised encoder (a separate latent variable) and
    the same decoder weights."""
    torch.manual_seed(seed)
    new = copy.deepcopy(vae)
    for module in (new.encoder, new.mu, new.log_var):
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
    return new


def train(vae: VAE, x: torch.Tensor, *, steps: int, batch_size: int, lr: float, seed: int,
          importance: Mapping[str, torch.Tensor] | None = None, anchor: Mapping[str, torch.Tensor] | None = None,
          lam: float = 0.0) -> list[float]:
    """Adam on the negative ELBO of ``x``, plus ``lam * sum Omega (w - w*)^2`` on the decoder when ``lam > 0``."""
    if lam < 0:
        raise ValueError(f"lam must be non-negative, got {lam}")
    if lam > 0 and (importance is None or anchor is None):
        raise ValueError("a penalty needs the importance and the anchor weights")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = adam(vae.parameters(), lr)
    decoder = dict(vae.decoder.named_parameters())
    vae.train()
    losses = []
    for step in range(steps):
        index = torch.randint(len(x), (batch_size,), generator=generator).to(x.device)
        loss = vae.loss(x[index]).mean()
        if lam > 0:
            loss = loss + lam * sum((importance[n] * (p - anchor[n]).square()).sum() for n, p in decoder.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    vae.eval()
    return losses


def run_sequence(bench: bm.Benchmark, settings: Mapping[str, Any], *, lam: float, seed: int = 0,
                 first: VAE | None = None) -> dict[str, Any]:
    """Task 1 (unless ``first``, a VAE already trained on it, is given), then task 2 with a fresh encoder and
    the shared decoder under SPP's penalty of strength ``lam`` (0: plain training).

    Returns the VAE after task 1 (``first``), after task 2 (``second``; its encoder is task 2's) and the
    first group's and second group's test reconstruction error (mean BCE per image, nats) at each point.
    """
    x1, x2 = bench.tasks[0].train.x, bench.tasks[1].train.x
    t1, t2 = bench.tasks[0].test.x, bench.tasks[1].test.x
    steps, batch, lr = settings["steps"], settings["vae_batch_size"], settings["vae_lr"]
    if first is None:
        torch.manual_seed(seed)
        first = VAE(bench.input_shape, hidden=settings["vae_hidden"], z_dim=settings["z_dim"])
        first.fit_range(torch.cat([x1, x2]))  # one data range for both groups: a preprocessing constant
        train(first, x1, steps=steps, batch_size=batch, lr=lr, seed=seed)
    importance = (decoder_importance(first, x1, settings["importance_batch_size"], settings.get("objective", "entropy"))
                  if lam > 0 else None)
    anchor = {n: p.detach().clone() for n, p in first.decoder.named_parameters()}
    second = fresh_encoder(first, seed + 1)
    train(second, x2, steps=steps, batch_size=batch, lr=lr, seed=seed + 1, importance=importance, anchor=anchor,
          lam=lam)
    return {"first": first, "second": second, "error_1_after_1": reconstruction_error(first, first, t1),
            "error_1_after_2": reconstruction_error(first, second, t1),
            "error_2_after_2": reconstruction_error(second, second, t2)}


def with_decoder(encoder_of: VAE, decoder_of: VAE) -> VAE:
    """``encoder_of``'s encoder (a task's own latent variable) with ``decoder_of``'s decoder."""
    out = copy.deepcopy(encoder_of)
    out.decoder.load_state_dict(decoder_of.decoder.state_dict())
    return out


@torch.no_grad()
def reconstruction_error(encoder_of: VAE, decoder_of: VAE, x: torch.Tensor) -> float:
    """Mean BCE (nats per image) of reconstructing ``x`` through ``encoder_of``'s code mean and ``decoder_of``'s decoder."""
    return with_decoder(encoder_of, decoder_of).reconstruction_loss(x)


@torch.no_grad()
def reconstructions(encoder_of: VAE, decoder_of: VAE, x: torch.Tensor) -> torch.Tensor:
    """``x`` reconstructed from its code mean, in the data's scale (for figures)."""
    vae = with_decoder(encoder_of, decoder_of)
    return vae.from_unit(torch.sigmoid(vae.decode_logits(vae.encode(x)[0])))
