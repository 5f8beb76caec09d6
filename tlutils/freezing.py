"""Freezing: which parameters the optimizer may change, and what BatchNorm does while frozen.

Taught in :doc:`chapter 3 </book/03_freezing>`. Names follow timm (`freeze`, `unfreeze`); the
BatchNorm semantics are:

* `freeze(..., train_bn=False)` (the default) freezes BatchNorm completely: its affine
  parameters stop training *and* its layers stay in eval mode, using and keeping their stored
  running statistics even after `model.train()` (like timm's `FrozenBatchNorm2d`).
* `freeze(..., train_bn=True)` leaves BatchNorm layers trainable and in the model's mode, as
  Lightning's `BaseFinetuning.freeze(train_bn=True)` does: their running statistics then keep
  adapting to the new data while everything else is frozen.
"""
from __future__ import annotations

import types
from typing import Iterable

from torch import nn

BATCH_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)   # BatchNorm1d/2d/3d, SyncBatchNorm, lazy ones


def batch_norm_layers(model: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer of `model` (any dimension), in `modules()` order."""
    return [m for m in model.modules() if isinstance(m, BATCH_NORM_TYPES)]


def _resolve(model: nn.Module, submodules) -> list[nn.Module]:
    """Submodules given by name ("features.block1"), by module, or None for the whole model."""
    if submodules is None:
        return [model]
    if isinstance(submodules, (str, nn.Module)):
        submodules = [submodules]
    modules = []
    for item in submodules:
        if isinstance(item, nn.Module):
            modules.append(item)
            continue
        try:
            modules.append(model.get_submodule(item))
        except AttributeError as err:
            names = [n for n, _ in model.named_children()]
            raise ValueError(f"model has no submodule {item!r}; top-level ones are {names}") from err
    return modules


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    """Replacement `train` for a frozen BatchNorm layer: whatever is asked, it stays in eval."""
    return nn.Module.train(self, False)


def freeze_batch_norm(model: nn.Module) -> nn.Module:
    """Put every BatchNorm layer of `model` in eval mode and keep it there through `train()`."""
    for m in batch_norm_layers(model):
        m.train = types.MethodType(_stay_in_eval, m)
        nn.Module.train(m, False)
    return model


def _unfreeze_batch_norm(module: nn.Module, mode: bool) -> None:
    for m in batch_norm_layers(module):
        if "train" in m.__dict__:
            del m.train
            nn.Module.train(m, mode)


def freeze(model: nn.Module, submodules=None, *, train_bn: bool = False) -> nn.Module:
    """Stop training `submodules` (names, modules, or None for the whole model); returns `model`.

    Sets `requires_grad=False` on their parameters. With `train_bn=False` their BatchNorm layers are
    frozen too (eval mode, kept through `model.train()`); `train_bn=True` leaves BatchNorm trainable.
    """
    for module in _resolve(model, submodules):
        for m in module.modules():
            is_bn = isinstance(m, BATCH_NORM_TYPES)
            for p in m.parameters(recurse=False):
                p.requires_grad = train_bn and is_bn
        if not train_bn:
            freeze_batch_norm(module)
    return model


def unfreeze(model: nn.Module, submodules=None) -> nn.Module:
    """Undo `freeze`: parameters train again, BatchNorm layers follow the model's mode again."""
    for module in _resolve(model, submodules):
        for p in module.parameters():
            p.requires_grad = True
        _unfreeze_batch_norm(module, model.training)
    return model


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer should get: those with `requires_grad=True`."""
    return [p for p in model.parameters() if p.requires_grad]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters, all of them or only the trainable ones."""
    params: Iterable[nn.Parameter] = trainable_parameters(model) if trainable_only else model.parameters()
    return sum(p.numel() for p in params)
