"""Parameter groups for fine-tuning: weight decay where it belongs, and per-layer learning rates;
and `decay_toward`, weight decay toward the pretrained weights (decoupled L2-SP).

`decay_toward` is taught in :doc:`section 2.1 </book/02_weight_decay>`, parameter groups in
:doc:`chapter 4 </book/04_fine_tuning>`. Every group carries a real `lr` (not timm's `lr_scale`),
so any plain `torch.optim` optimizer and scheduler works with them. Frozen parameters are left out.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .models import get_classifier, get_stages


def _no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases and normalisation weights (1-D tensors) are not decayed, as in timm and nanoGPT."""
    return param.ndim <= 1 or name.endswith(".bias")


def _groups(named_params, lr: float, weight_decay: float) -> list[dict]:
    if not weight_decay >= 0:   # torch's optimizers check their default, not each group's
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    decay = [p for n, p in named_params if not _no_decay(n, p)]
    no_decay = [p for n, p in named_params if _no_decay(n, p)]
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay},
              {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters (is everything frozen?)")
    return named


def param_groups_weight_decay(model: nn.Module, lr: float = 1e-3,
                              weight_decay: float = 1e-4) -> list[dict]:
    """Two groups: weights with `weight_decay`, biases and norm parameters without it."""
    return _groups(_trainable(model), lr, weight_decay)


def param_groups_discriminative(model: nn.Module, lr: float, head_lr_mult: float = 10.0,
                                weight_decay: float = 0.0) -> list[dict]:
    """The head learns at `lr * head_lr_mult`, the (pretrained) body at `lr` (ULMFiT's idea)."""
    head_ids = {id(p) for p in get_classifier(model).parameters()}
    named = _trainable(model)
    body = [(n, p) for n, p in named if id(p) not in head_ids]
    head = [(n, p) for n, p in named if id(p) in head_ids]
    return _groups(body, lr, weight_decay) + _groups(head, lr * head_lr_mult, weight_decay)


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The model's stages from input to output (`get_stages`), then its head."""
    return [model.get_submodule(name) for name in get_stages(model)] + [get_classifier(model)]


def param_groups_layer_decay(model: nn.Module, lr: float, decay: float = 0.75,
                             weight_decay: float = 0.0) -> list[dict]:
    """Layer-wise learning rates: the head gets `lr`, each stage below it `decay` times less.

    With stages s_0 (input) .. s_L (head), stage i learns at `lr * decay ** (L - i)`.
    """
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    stages = _blocks(model)
    trainable = {id(p) for _, p in _trainable(model)}
    head_ids = {id(p) for p in stages[-1].parameters()}
    groups = []
    for i, stage in enumerate(stages):
        named = [(n, p) for n, p in stage.named_parameters() if id(p) in trainable
                 and (i == len(stages) - 1 or id(p) not in head_ids)]
        groups += _groups(named, lr * decay ** (len(stages) - 1 - i), weight_decay)
    covered = {id(p) for g in groups for p in g["params"]}
    if covered != trainable:
        raise ValueError("some trainable parameters belong to no stage; use "
                         "param_groups_discriminative for this model")
    return groups


def adamw(param_groups, **kwargs) -> torch.optim.AdamW:
    """`torch.optim.AdamW` with PyTorch's fused kernel: the same update as the default loop over
    tensors, done in one kernel per step, which makes a small network's step much cheaper on CPU."""
    return torch.optim.AdamW(param_groups, fused=True, **kwargs)


def decay_toward(optimizer: torch.optim.Optimizer, model: nn.Module,
                 centre: dict[str, torch.Tensor], alpha: float) -> RemovableHandle:
    """Decoupled L2-SP: before each `optimizer.step()`, pull the parameters of `model` named in
    `centre` toward their centre, `w <- w - lr * alpha * (w - centre[name])`, where `lr` is the
    current learning rate of the parameter's group (so the pull follows the scheduler).

    This is AdamW's decoupled weight decay with a centre `w0` instead of 0; a centre of zeros gives
    exactly AdamW's `weight_decay=alpha` on those parameters. Adding `alpha/2 ||w - w0||^2` to the
    loss instead would send the pull through Adam's normalisation: that is Adam + L2, which is not
    weight decay. As in AdamW, a parameter without a gradient is left alone for that step. Only
    the parameters named in `centre` are pulled; each must be optimised by `optimizer`. Returns
    the hook's handle: `handle.remove()` stops the pull. Taught in section 2.1.
    """
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if not centre:
        raise ValueError("the centre names no parameter, so nothing would be pulled")
    params = dict(model.named_parameters())
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    pulled = []
    for name, c in centre.items():
        if name not in params:
            raise ValueError(f"the centre names {name!r}, which is not a parameter of the model")
        p = params[name]
        if c.shape != p.shape:
            raise ValueError(f"the centre of {name!r} has shape {tuple(c.shape)}, the parameter "
                             f"{tuple(p.shape)}")
        if c.data_ptr() == p.data_ptr():
            raise ValueError(f"the centre of {name!r} is the parameter itself: pass a copy, "
                             "e.g. p.detach().clone()")
        if id(p) not in group_of:
            raise ValueError(f"{name!r} is not optimised by the optimizer (is it frozen?)")
        pulled.append((p, c.detach(), group_of[id(p)]))

    @torch.no_grad()
    def pull(opt, args, kwargs):
        for p, c, group in pulled:
            if p.grad is not None:   # lerp_: p + weight * (c - p), in place
                p.lerp_(c.to(p.device, p.dtype), float(group["lr"]) * alpha)

    return optimizer.register_step_pre_hook(pull)
