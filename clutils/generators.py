"""A small variational autoencoder: the generator of deep generative replay on a CPU.

Shin et al. (2017) pair the solver with a GAN (WGAN-GP); van de Ven and Tolias
(2018, 2019) replace it with a variational autoencoder, which trains in far fewer
steps and without the GAN's instabilities. The book follows van de Ven and
Tolias, with the smaller network of Kingma and Welling's MNIST experiments
(2014, Appendix C: one hidden layer of 400 units, a 20-dimensional code), so
that a generator trains in seconds on one CPU thread.

The encoder maps an input ``x`` (any shape, flattened) to the mean ``mu`` and
log-variance ``log s^2`` of a Gaussian code ``q(z | x)``; the decoder maps a
code to the logits of Bernoulli pixels. The loss of one sample is the negative
evidence lower bound (Kingma and Welling, Eq. 10 with a Bernoulli decoder)::

    L(x) = BCE(decoder(z), x01) + KL(q(z | x) || N(0, I)),   z = mu + s * eps,  eps ~ N(0, I)
    KL   = -1/2 * sum_j (1 + log s_j^2 - mu_j^2 - s_j^2)

where ``x01 = (x - low) / (high - low)`` are the inputs rescaled to [0, 1]
(the book's datasets are standardised; ``low`` and ``high`` are the range of the
data the generator was fitted to, stored as buffers). Samples are decoded from
``z ~ N(0, I)`` and mapped back to the data's scale.

:func:`train_vae` trains a generator on real data, on another generator's
samples, or on both mixed with the ratio ``r`` of deep generative replay:
``r * L(current data) + (1 - r) * L(previous generator's samples)``.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class VAE(nn.Module):
    """MLP variational autoencoder with a Bernoulli decoder (see the module docstring).

    ``input_shape``: the shape of one input (e.g. ``(1, 28, 28)``); ``hidden``: the width of
    the encoder's and the decoder's hidden layer; ``z_dim``: the size of the code.
    """

    def __init__(self, input_shape: Sequence[int], hidden: int = 400, z_dim: int = 20):
        super().__init__()
        if hidden < 1 or z_dim < 1:
            raise ValueError(f"hidden and z_dim must be positive, got {hidden} and {z_dim}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.z_dim = int(z_dim)
        features = math.prod(self.input_shape)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, z_dim)
        self.log_var = nn.Linear(hidden, z_dim)
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, features))
        # The range of the data, so that inputs map to [0, 1] (set by ``fit_range``).
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.ones(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # -- scaling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def fit_range(self, x: torch.Tensor) -> None:
        """Widen ``[low, high]`` to cover ``x`` (the first call sets it)."""
        low, high = x.min().to(self.low), x.max().to(self.high)
        if bool(self.fitted):
            low, high = torch.minimum(self.low, low), torch.maximum(self.high, high)
        if not bool(high > low):
            raise ValueError("the generator's data are constant: nothing to model")
        self.low.copy_(low)
        self.high.copy_(high)
        self.fitted.fill_(True)

    @torch.no_grad()
    def copy_range(self, other: "VAE") -> None:
        """Take ``other``'s data range (a generator that learns from ``other``'s samples alone)."""
        self.low.copy_(other.low)
        self.high.copy_(other.high)
        self.fitted.copy_(other.fitted)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs rescaled to [0, 1], flattened."""
        return ((x.flatten(1) - self.low) / (self.high - self.low)).clamp(0, 1)

    def from_unit(self, p: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities in [0, 1] back to the data's scale and shape."""
        return (self.low + p * (self.high - self.low)).reshape(len(p), *self.input_shape)

    # -- the model -------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self.to_unit(x))
        return self.mu(h), self.log_var(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The negative ELBO of each sample (a vector): reconstruction BCE + KL to N(0, I)."""
        target = self.to_unit(x)
        mu, log_var = self.encode(x)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        bce = F.binary_cross_entropy_with_logits(self.decode_logits(z), target, reduction="none").sum(1)
        kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(1)
        return bce + kl

    @torch.no_grad()
    def reconstruction_loss(self, x: torch.Tensor) -> float:
        """Mean BCE of reconstructing ``x`` from its code's mean (no sampling): a deterministic measure."""
        mu, _ = self.encode(x)
        logits = self.decode_logits(mu)
        return F.binary_cross_entropy_with_logits(logits, self.to_unit(x), reduction="none").sum(1).mean().item()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples in the data's scale: the decoder's pixel probabilities at ``z ~ N(0, I)``.

        ``generator`` (a CPU ``torch.Generator``) draws the codes apart from the global random
        state (for figures); without it the global state is used, as training does.
        """
        device = self.low.device
        if generator is None:
            z = torch.randn(n, self.z_dim, device=device)
        else:
            z = torch.randn(n, self.z_dim, generator=generator).to(device)
        return self.from_unit(torch.sigmoid(self.decode_logits(z)))


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` in eval mode whose parameters take no gradient."""
    import copy

    clone = copy.deepcopy(module)
    clone.eval()
    for p in clone.parameters():
        p.requires_grad_(False)
        p.grad = None
    return clone


def adam(parameters, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this PyTorch has one (the same steps, fewer passes over memory)."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr=lr)


def train_vae(vae: VAE, x: torch.Tensor | None, *, steps: int, batch_size: int = 128, lr: float = 1e-3,
              replay: Callable[[int], torch.Tensor] | None = None, r: float = 1.0,
              windows: int = 10) -> list[float]:
    """Train ``vae`` for ``steps`` Adam steps; returns the mean loss over each of ``windows`` equal spans.

    Each step takes a batch of ``x`` (in shuffled passes over ``x``) and, when ``replay`` is
    given, as many inputs drawn from ``replay(n)`` (the previous generator's samples), and
    minimises::

        r * mean L(batch of x) + (1 - r) * mean L(replayed batch)

    (deep generative replay's mixing, van de Ven and Tolias: ``r = 1/t`` at task ``t``).
    With ``x = None`` the generator learns from ``replay`` alone, ``batch_size`` samples a step
    (the chain of scholars of Shin et al., Section 4.1); ``r`` is ignored then. Training by a
    number of steps rather than epochs follows van de Ven and Tolias (iterations per task): a
    generator needs its steps whatever the size of the task.
    """
    if x is None and replay is None:
        raise ValueError("train_vae needs data x, or replay to learn from another generator's samples")
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"the ratio r must lie in [0, 1], got {r}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    if x is not None:
        if len(x) == 0:
            raise ValueError("train_vae got no data")
        vae.fit_range(x)
    optimizer = adam(vae.parameters(), lr)
    vae.train()
    order, position = None, 0
    sums = torch.zeros(steps, device=vae.low.device)
    for step in range(steps):
        if x is None:
            loss = vae.loss(replay(batch_size)).mean()
        else:
            if order is None or position >= len(x):
                order, position = torch.randperm(len(x), device=x.device), 0
            batch = x[order[position:position + batch_size]]
            position += batch_size
            loss = vae.loss(batch).mean()
            if replay is not None and r < 1.0:
                loss = r * loss + (1 - r) * vae.loss(replay(len(batch))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums[step] = loss.detach()
    vae.eval()
    return [chunk.mean().item() for chunk in torch.tensor_split(sums.cpu(), min(windows, steps))]
