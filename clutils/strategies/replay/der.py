"""Dark experience replay: DER and DER++ (Buzzega et al., NeurIPS 2020, Section 3-4).

A reservoir buffer (:class:`clutils.buffers.ReservoirBuffer`) keeps, for each stored sample, the
input ``x``, its label ``y`` and the logits ``z`` the network gave it **when it was inserted**
(the step's own forward pass; they are never refreshed). Each step adds two replay terms to
the cross-entropy of the current batch, on two independent buffer draws ``(x', z')`` and
``(x'', y'')``::

    L = CE(h(x_B), y_B) + alpha * MSE(h(x'), z') + beta * CE(h(x''), y'')     (Eq. 2 and 6)

DER is ``beta = 0``; DER++ adds the label term. Both draws ride along in the step's one
forward pass: the loop's cross-entropy ignores them (their targets are ``IGNORE``) and
:meth:`DER.penalty` adds the two terms.

Logits comparable across tasks: with a maximal class-incremental head (the DER code's
choice, the book's) every output exists from the start and the MSE runs over all of them;
an output that was closed when a sample was stored (an expanding head; a smaller task head
of a task-incremental model, stored padded) holds ``MASKED_LOGIT`` and is left out of the
MSE, which is the mean over the outputs open at insertion.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...buffers import ReservoirBuffer
from ...models import MASKED_LOGIT
from ..registry import register
from .common import IGNORE, ReplayStrategy


def open_outputs(stored: torch.Tensor) -> torch.Tensor:
    """The outputs that were open when the logits were stored (closed ones hold MASKED_LOGIT)."""
    return stored > MASKED_LOGIT / 2


def logit_matching(outputs: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
    """DER's ``MSE(h(x'), z')``: the mean squared difference over the outputs open at insertion."""
    mask = open_outputs(stored)
    squared = torch.where(mask, outputs - stored, torch.zeros_like(outputs)).pow(2)
    return squared.sum() / mask.sum().clamp(min=1)


@register
class DER(ReplayStrategy):
    """DER: CE on the current batch + alpha * MSE to the logits stored at insertion."""

    name = "der"
    # Buzzega et al., Appendix (seq-MNIST, buffer 200): DER alpha 0.2.
    defaults = {"buffer_size": 200, "alpha": 0.2, "beta": 0.0, "replay_batch": None}
    positive = frozenset({"buffer_size"})

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self.buffer = ReservoirBuffer(int(self.hp["buffer_size"]), seed=self.seed)
        self.width = max(benchmark.head_sizes) if benchmark.scenario == "task" else benchmark.head_sizes[0]
        self._draws: tuple[int, torch.Tensor, torch.Tensor | None] | None = None

    def extend_batch(self, x, y, task):
        self._draws = None
        if len(self.buffer) == 0:
            return x, y, task
        buf, k = self.buffer, self.replay_size(len(y))
        logit_draw = buf.sample(k)  # (x', z')
        label_draw = buf.sample(k) if self.hp["beta"] > 0 else None  # (x'', y''), independent of x'
        draws = [logit_draw] if label_draw is None else [logit_draw, label_draw]
        index = torch.cat(draws)
        self._draws = (len(y), logit_draw, label_draw)
        ignored = torch.full((len(index),), IGNORE, dtype=torch.long, device=y.device)
        tasks = self.joined_tasks(task, len(y), buf.task[index], y.device)
        return torch.cat([x, buf.x[index]]), torch.cat([y, ignored]), tasks

    def penalty(self, model, batch):
        if self._draws is None:
            return None
        b, logit_draw, label_draw = self._draws
        k = len(logit_draw)
        stored = self.buffer.logits[logit_draw]
        outputs = batch.logits[b:b + k]
        loss = self.hp["alpha"] * logit_matching(outputs[:, :stored.shape[1]], stored)
        if label_draw is not None:
            loss = loss + self.hp["beta"] * F.cross_entropy(batch.logits[b + k:], self.buffer.y[label_draw])
        return loss

    def observe(self, model, batch) -> None:
        self._draws = None  # this step's draws are spent
        logits = batch.logits
        if logits.shape[1] < self.width:  # a task head narrower than the widest: pad as closed outputs
            logits = F.pad(logits, (0, self.width - logits.shape[1]), value=MASKED_LOGIT)
        self.buffer.add(batch.x, batch.y, self.task_ids(batch.task), logits=logits)

    def state_dict(self):
        return {"current": int(self.current), "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state) -> None:
        self.current = int(state["current"])
        self.buffer.load_state_dict(state["buffer"])


@register
class DERPlusPlus(DER):
    """DER++: DER plus beta * CE on a second, independent buffer draw with its stored labels."""

    name = "der++"
    # Buzzega et al., Appendix (seq-MNIST, buffer 200): DER++ alpha 0.2, beta 1.
    defaults = {"buffer_size": 200, "alpha": 0.2, "beta": 1.0, "replay_batch": None}
