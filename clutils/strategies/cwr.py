"""CWR and CWR+ (Lomonaco & Maltoni 2017; Maltoni & Lomonaco 2019, section 3).

Both keep two copies of the output layer: temporary weights ``tw`` that are
trained on the current batch and thrown away, and consolidated weights ``cw``
that are used for inference. The shared weights below the output layer are
learned on the first batch only.

**CWR** (Algorithm 1)::

    cw = 0
    for each training batch B_i:
        re-initialise tw at random (every output neuron)
        train with SGD on B_i: the shared weights and tw if i = 1, else tw only
        for each class j of B_i: cw[j] = w_i * tw[j]
        test with the shared weights and cw

**CWR+** (Algorithm 2) changes two lines: ``tw = 0`` (*zero init*, Appendix E:
the output layer can start at zero because its gradient
``(y_hat_b - t_b) * out_a`` does not vanish) and ``cw[j] = tw[j] - avg(tw)``
(*mean-shift*, replacing ``w_i``), the average taken over the weights of the
batch's classes as in the authors' code.

Here the model's output layer holds ``tw`` while a batch is trained and ``cw``
from the end of the batch on, so evaluation (and any later use of the model)
sees ``cw``. From the second batch on the shared weights get no gradient (and
batch-norm layers keep their statistics). Our output layer has a bias, the authors' has none: a class's
bias is treated as one more of its weights (scaled by ``w_i``), and mean-shift
centres the batch's biases on their own mean. The head may be maximal (all
classes from the start, the paper's choice for CWR) or expanding (Appendix A):
that is a model option (``build_model(expanding_head=...)``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import MASKED_LOGIT
from .base import Strategy
from .registry import register

_NORMS = (nn.modules.batchnorm._BatchNorm,)


def output_layer(model: nn.Module) -> nn.Linear:
    """The single output layer of a class-incremental model."""
    layers = model.output_layers() if hasattr(model, "output_layers") else []
    if len(layers) != 1:
        raise ValueError("CWR needs a model with one output layer (a single head); "
                         f"this one has {len(layers)}")
    return layers[0]


def shared_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The shared weights (the paper's Theta-bar): every parameter but the output layer's."""
    head = {id(p) for p in output_layer(model).parameters()}
    return {n: p for n, p in model.named_parameters() if id(p) not in head}


def normalisation_parameters(model: nn.Module) -> set[str]:
    """Names of the parameters (gamma, beta) of the model's batch-norm layers."""
    return {f"{name}.{p}" if name else p for name, module in model.named_modules()
            if isinstance(module, _NORMS) for p, _ in module.named_parameters(recurse=False)}


def _keep_in_eval(module: nn.Module, inputs) -> None:
    if module.training:
        module.train(False)


def freeze_batch_norm(model: nn.Module) -> None:
    """Keep the batch-norm layers below the output layer in eval mode (frozen statistics).

    The training loop puts the model in train mode before every batch; a forward
    pre-hook on each batch-norm layer switches it back.
    """
    head = output_layer(model)
    for module in model.modules():
        if isinstance(module, _NORMS) and module is not head and not getattr(module, "_cwr_frozen", False):
            module.register_forward_pre_hook(_keep_in_eval)
            module._cwr_frozen = True


def check_class_incremental(benchmark) -> None:
    if benchmark.scenario != "class":
        raise ValueError(f"CWR, CWR+ and AR1 are class-incremental strategies (one head over all classes); "
                         f"{benchmark.name} is {benchmark.scenario}-incremental")


class ConsolidatedHead:
    """The ``cw`` of CWR / CWR+ / AR1 and the operations on the output layer.

    ``trained`` marks the classes whose ``cw`` has been consolidated. With
    ``mask_unseen`` a forward hook on the head keeps the other classes out of
    the predictions in eval mode (their ``cw`` is the initial 0, which would
    otherwise beat every negative logit); training is unaffected.
    """

    def __init__(self, layer: nn.Linear, head: nn.Module | None = None, mask_unseen: bool = True):
        self.layer = layer
        self.cw = torch.zeros_like(layer.weight, requires_grad=False)
        self.cb = torch.zeros_like(layer.bias) if layer.bias is not None else None
        self.trained = torch.zeros(layer.out_features, dtype=torch.bool, device=layer.weight.device)
        self.handle = None
        if mask_unseen and head is not None:
            self.handle = head.register_forward_hook(self._mask)

    def _mask(self, module, inputs, logits):
        if module.training or bool(self.trained.all()) or not bool(self.trained.any()):
            return None
        return logits.masked_fill(~self.trained, MASKED_LOGIT)

    def remove_hook(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    @torch.no_grad()
    def reset_temporary(self, zero_init: bool, init_std: float | None) -> None:
        """``tw = 0`` (zero init), Gaussian(0, ``init_std``), or the layer's default initialisation."""
        layer = self.layer
        if zero_init:
            layer.weight.zero_()
        elif init_std is None:
            layer.reset_parameters()
            return
        else:
            layer.weight.normal_(0.0, float(init_std))
        if layer.bias is not None:
            layer.bias.zero_()

    @torch.no_grad()
    def consolidate(self, classes, mean_shift: bool, scale: float = 1.0) -> None:
        """``cw[j] = tw[j] - avg(tw)`` (mean-shift) or ``scale * tw[j]`` for the batch's classes; load ``cw``."""
        rows = torch.as_tensor(list(classes), device=self.cw.device)
        tw = self.layer.weight[rows]
        tb = self.layer.bias[rows] if self.cb is not None else None
        if mean_shift:
            tw = tw - tw.mean()
            tb = tb - tb.mean() if tb is not None else None
        else:
            tw = scale * tw
            tb = scale * tb if tb is not None else None
        self.cw[rows] = tw
        if tb is not None:
            self.cb[rows] = tb
        self.trained[rows] = True
        self.load()

    @torch.no_grad()
    def load(self) -> None:
        """Put ``cw`` in the output layer (what inference uses)."""
        self.layer.weight.copy_(self.cw)
        if self.cb is not None:
            self.layer.bias.copy_(self.cb)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"cw": self.cw, "trained": self.trained}
        if self.cb is not None:
            state["cb"] = self.cb
        return state

    def load_state_dict(self, state) -> None:
        self.cw = state["cw"].clone()
        self.trained = state["trained"].clone()
        if "cb" in state:
            self.cb = state["cb"].clone()


def attach_consolidated_head(strategy, model: nn.Module, benchmark) -> None:
    """Check the scenario and give ``strategy`` a fresh consolidated head on ``model`` (CWR, CWR+, AR1)."""
    check_class_incremental(benchmark)
    if getattr(strategy, "head", None) is not None:
        strategy.head.remove_hook()
    strategy.head = ConsolidatedHead(output_layer(model), model.head, strategy.hp["mask_unseen"])


@register
class CWR(Strategy):
    """CopyWeights with Re-init (Algorithm 1; see the module docstring).

    Hyperparameters: ``w_first``/``w_rest`` the scale ``w_i`` of the copied weights
    for the first / later batches (Table 4: 1.25 / 1 for CaffeNet, else 1 / 1);
    ``init_std`` the Gaussian of the re-initialisation (None: the layer's default,
    PyTorch's Kaiming-uniform); ``zero_init`` and ``mean_shift`` turn on CWR+'s two
    changes one at a time (for the ablation); ``freeze_shared`` False keeps training
    the shared weights after the first batch (not CWR any more, for experiments);
    ``mask_unseen`` keeps classes not trained yet out of the predictions (see
    :class:`ConsolidatedHead`; False is Algorithm 1 to the letter with a maximal head).
    """

    name = "cwr"
    scenarios = ("class",)
    defaults = {"w_first": 1.0, "w_rest": 1.0, "init_std": None, "zero_init": False, "mean_shift": False,
                "freeze_shared": True, "mask_unseen": True}

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        attach_consolidated_head(self, model, benchmark)
        self.shared = list(shared_parameters(model).values())
        self.frozen = False

    def before_task(self, model, task) -> None:
        if task.index > 0 and self.hp["freeze_shared"]:
            self.frozen = True
            freeze_batch_norm(model)
        self.head.reset_temporary(self.hp["zero_init"], self.hp["init_std"])

    def after_backward(self, model) -> None:
        """After the first batch the shared weights get no gradient, so no optimiser moves them.

        (Dropping the gradient rather than setting ``requires_grad=False`` keeps the optimiser's
        parameter list, hence a checkpoint's optimiser state, the same in every batch.)
        """
        if self.frozen:
            for p in self.shared:
                p.grad = None

    def after_task(self, model, task, data) -> None:
        scale = self.hp["w_first"] if task.index == 0 else self.hp["w_rest"]
        self.head.consolidate(task.classes, self.hp["mean_shift"], scale)

    def state_dict(self):
        return self.head.state_dict()

    def load_state_dict(self, state) -> None:
        self.head.load_state_dict(state)
        self.head.load()


@register
class CWRPlus(CWR):
    """CWR+ (Algorithm 2): CWR with zero init of ``tw`` and mean-shift instead of ``w_i``."""

    name = "cwr+"
    defaults = {**CWR.defaults, "zero_init": True, "mean_shift": True}
