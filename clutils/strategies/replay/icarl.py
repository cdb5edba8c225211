"""iCaRL: incremental classifier and representation learning (Rebuffi, Kolesnikov, Sperl and Lampert, CVPR 2017).

Three parts, each a function below with its equation:

* **Exemplars by herding** (Algorithm 4, :func:`herding`): with the L2-normalised features
  ``phi(x)`` of a class's ``n`` images and their mean ``mu``, the ``k``-th exemplar is the image that
  brings the mean of the exemplars chosen so far closest to ``mu``::

      p_k = argmin_x || mu - (1/k) (phi(x) + sum_{j<k} phi(p_j)) ||      (x not chosen yet)

  A fixed total memory ``M`` (``buffer_size``) is shared by every class seen so far: ``m = M // s``
  exemplars per class after ``s`` classes (Algorithm 5 reduces each old set to its first ``m``,
  which herding ordered by priority).
* **Nearest mean of exemplars** (Algorithm 1, :func:`nearest_mean`): a test image takes the class
  whose exemplars' mean feature (normalised) is nearest to its own normalised feature.
* **Representation learning** (Algorithm 3, :func:`icarl_targets` and :meth:`ICaRL.loss`): the
  current task's data and the exemplars, a sigmoid binary cross-entropy per output; the targets
  of the new classes are one-hot, those of the classes met before are the previous network's
  sigmoids (distillation)::

      L = - sum_{y in new} [d_y log s_y(x) + (1 - d_y) log(1 - s_y(x))]
          - sum_{y in old} [q_y log s_y(x) + (1 - q_y) log(1 - s_y(x))],   q_y = sigmoid(h_old(x))_y

  as a mean over the outputs of the classes seen so far (the DER authors' ``mammoth`` code).

Class-IL: one maximal head, the outputs are the dataset's classes. Task-IL (the DER paper's
table reports iCaRL there too): one head per task; a sample's outputs are its task's head, old
if its task came before the current one, and nearest-mean classification is among its task's
classes. The paper augments each exemplar mean with flipped images; the book's MLP on
28x28 images does not.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ...data.tensors import TensorData
from ...models import MASKED_LOGIT
from ..base import TrainingData
from ..registry import register
from .common import ReplayStrategy


def normalise(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (iCaRL's feature normalisation)."""
    return F.normalize(features, dim=1)


def herding(features: torch.Tensor, m: int) -> torch.Tensor:
    """Algorithm 4: the indices of ``m`` exemplars (in priority order) of one class's ``features``.

    ``features``: ``n x d``, already normalised. Step ``k`` (from 1) picks, among the rows not
    chosen yet, the one whose addition brings the running mean closest to the class mean.
    """
    n = len(features)
    if n == 0:
        raise ValueError("herding needs at least one sample of the class")
    m = min(int(m), n)
    mu = features.mean(0)
    running = torch.zeros_like(mu)
    free = torch.ones(n, dtype=torch.bool, device=features.device)
    chosen = torch.empty(m, dtype=torch.long, device=features.device)
    for k in range(1, m + 1):
        distance = (mu - (running + features) / k).norm(dim=1)
        distance = distance.masked_fill(~free, float("inf"))
        i = distance.argmin()
        chosen[k - 1] = i
        running += features[i]
        free[i] = False
    return chosen


def nearest_mean(features: torch.Tensor, means: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Algorithm 1: for each normalised feature row, the index of the nearest of the ``allowed`` means.

    ``means``: ``K x d`` (one per class key, normalised); ``allowed``: ``K`` booleans (a class
    without exemplars, or outside the task, cannot be predicted).
    """
    distance = torch.cdist(normalise(features), means)
    return distance.masked_fill(~allowed, float("inf")).argmin(1)


def icarl_targets(y: torch.Tensor, width: int, old_logits: torch.Tensor | None, old: torch.Tensor) -> torch.Tensor:
    """Algorithm 3's targets: one-hot ``y`` where ``old`` is False, the previous network's sigmoids where True.

    ``old`` broadcasts to ``len(y) x width`` (a column mask in Class-IL, a row mask in Task-IL).
    """
    onehot = F.one_hot(y, width).to(torch.float32)
    if old_logits is None:
        return onehot
    return torch.where(old, torch.sigmoid(old_logits), onehot)


@register
class ICaRL(ReplayStrategy):
    """iCaRL: herding exemplars (fixed total memory), sigmoid BCE with distillation, nearest-mean-of-exemplars."""

    name = "icarl"
    defaults = {"buffer_size": 2000}
    positive = frozenset({"buffer_size"})
    scenarios = ("class", "task")

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        if not hasattr(model, "body"):
            raise TypeError("iCaRL needs a model with a feature extractor ``body`` (clutils.models.ContinualModel)")
        sizes = [len(t.classes) for t in benchmark.tasks]
        # One key per class: the dataset's class id (Class-IL) or task offset + local label (Task-IL).
        self.offsets = [sum(sizes[:k]) for k in range(len(sizes))] if self.multi_head else [0] * len(sizes)
        self.n_keys = sum(sizes) if self.multi_head else benchmark.n_classes
        self.exemplars: TensorData | None = None
        self.exemplar_task = torch.zeros(0, dtype=torch.long)
        self.rank = torch.zeros(0, dtype=torch.long)  # herding order within its class
        self.means: torch.Tensor | None = None  # n_keys x d, normalised; rows of unseen classes are 0
        self.seen = torch.zeros(self.n_keys, dtype=torch.bool)
        self.old_state: dict[str, torch.Tensor] | None = None
        self.old_model: torch.nn.Module | None = None
        self.model = model

    # -- which class a sample is -------------------------------------------------------------------
    def keys(self, y: torch.Tensor, task: torch.Tensor | int) -> torch.Tensor:
        if not self.multi_head:
            return y
        offsets = torch.tensor(self.offsets, device=y.device)
        return offsets[task] + y if isinstance(task, torch.Tensor) else self.offsets[task] + y

    def per_class(self) -> int:
        """``m = M // s``: exemplars per class with ``s`` classes seen (at least one)."""
        return max(1, int(self.hp["buffer_size"]) // max(1, int(self.seen.sum())))

    # -- training ----------------------------------------------------------------------------------
    def training_data(self, task) -> TrainingData:
        if self.exemplars is None or len(self.exemplars) == 0:
            return TrainingData(task.train)
        x = torch.cat([task.train.x, self.exemplars.x])
        y = torch.cat([task.train.y, self.exemplars.y])
        ids = torch.cat([torch.full((len(task.train),), task.index, dtype=torch.long, device=y.device),
                         self.exemplar_task.to(y.device)])
        return TrainingData(TensorData(x, y), ids)

    def previous_model(self) -> torch.nn.Module | None:
        """The network as it was after the last task (frozen), rebuilt after a resume."""
        if self.old_state is None:
            return None
        if self.old_model is None:
            self.old_model = copy.deepcopy(self.model)
            self.old_model.load_state_dict(self.old_state)
            self.old_model.requires_grad_(False)
        self.old_model.eval()
        return self.old_model

    def loss(self, model, batch):
        logits = batch.logits
        old_model = self.previous_model()
        with torch.no_grad():
            old_logits = old_model(batch.x, batch.task) if old_model is not None else None
        if self.multi_head:
            task = batch.task if isinstance(batch.task, torch.Tensor) else torch.full_like(batch.y, int(batch.task))
            old = (task < self.current)[:, None]
            active = logits > MASKED_LOGIT / 2
        else:
            seen_before = self.seen.to(logits.device)  # classes of the tasks before this one
            current = torch.zeros_like(seen_before)
            current[list(self.benchmark.tasks[self.current].classes)] = True
            old = seen_before[None, :]
            active = (seen_before | current)[None, :].expand_as(logits)
        targets = icarl_targets(batch.y, logits.shape[1], old_logits, old)
        return F.binary_cross_entropy_with_logits(logits[active], targets.expand_as(logits)[active])

    # -- after a task: reduce, construct, means, snapshot -----------------------------------------
    @torch.no_grad()
    def features(self, model, x: torch.Tensor) -> torch.Tensor:
        was = model.training
        model.eval()
        out = torch.cat([normalise(model.body(x[i:i + 1024])) for i in range(0, len(x), 1024)])
        model.train(was)
        return out

    @torch.no_grad()
    def after_task(self, model, task, data) -> None:
        train = task.train
        keys = self.keys(train.y, task.index)
        new = torch.unique(keys)
        self.seen[new.cpu()] = True
        m = self.per_class()
        parts_x, parts_y, parts_t, parts_r = [], [], [], []
        if self.exemplars is not None:  # Algorithm 5: keep the first m of each old class
            keep = self.rank < m
            parts_x.append(self.exemplars.x[keep.to(self.exemplars.x.device)])
            parts_y.append(self.exemplars.y[keep.to(self.exemplars.y.device)])
            parts_t.append(self.exemplar_task[keep])
            parts_r.append(self.rank[keep])
        phi = self.features(model, train.x)
        for key in new.tolist():  # Algorithm 4 on the new classes
            rows = torch.nonzero(keys == key).flatten()
            chosen = rows[herding(phi[rows], m)]
            parts_x.append(train.x[chosen])
            parts_y.append(train.y[chosen])
            parts_t.append(torch.full((len(chosen),), task.index, dtype=torch.long))
            parts_r.append(torch.arange(len(chosen)))
        self.exemplars = TensorData(torch.cat(parts_x), torch.cat(parts_y))
        self.exemplar_task = torch.cat(parts_t)
        self.rank = torch.cat(parts_r)
        self.update_means(model)
        self.old_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.old_model = None

    @torch.no_grad()
    def update_means(self, model) -> None:
        """The normalised mean of each class's exemplar features (Algorithm 1's mu_y)."""
        phi = self.features(model, self.exemplars.x)
        keys = self.keys(self.exemplars.y, self.exemplar_task.to(phi.device))
        sums = torch.zeros((self.n_keys, phi.shape[1]), device=phi.device).index_add_(0, keys, phi)
        self.means = normalise(sums)

    # -- evaluation --------------------------------------------------------------------------------
    def predict(self, model, x, task):
        if self.means is None:  # before the first task: no exemplars yet
            return model(x, task).argmax(1)
        allowed = self.seen.to(x.device).clone()
        if self.multi_head:
            size = len(self.benchmark.tasks[task].classes)
            inside = torch.zeros_like(allowed)
            inside[self.offsets[task]:self.offsets[task] + size] = True
            if not bool((allowed & inside).any()):  # a task not trained yet: its own head
                return model(x, task).argmax(1)
            allowed &= inside
        key = nearest_mean(model.body(x), self.means.to(x.device), allowed)
        return key - self.offsets[task] if self.multi_head else key

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self):
        state = {"current": int(self.current), "seen": self.seen.clone()}
        if self.exemplars is not None:
            state.update(x=self.exemplars.x, y=self.exemplars.y, task=self.exemplar_task, rank=self.rank,
                         means=self.means, old=self.old_state)
        return state

    def load_state_dict(self, state) -> None:
        self.current = int(state["current"])
        self.seen = state["seen"].cpu().clone()
        if "x" in state:
            self.exemplars = TensorData(state["x"], state["y"])
            self.exemplar_task, self.rank = state["task"].cpu(), state["rank"].cpu()
            self.means, self.old_state, self.old_model = state["means"], dict(state["old"]), None
