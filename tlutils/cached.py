"""Cache what is frozen: run a network's frozen bottom once, then train only its top.

Taught in :doc:`section 8.1 </book/08_few_shot_photos>`. On a CPU, an ImageNet network is too slow
to run forward at every training step; but when its lower blocks are frozen (and their BatchNorm
in eval mode), their outputs never change, so they can be computed once per image
(`cached_outputs`) and the top trained on them (`fine_tune_top`). `tlutils.split_model` makes
the bottom and the top.
"""
from __future__ import annotations

import copy

from torch import nn
from torch.utils.data import TensorDataset

from .data import TensorLoader
from .freezing import freeze_batch_norm
from .models import reset_classifier
from .optim import adamw, param_groups_discriminative
from .train import fit, predict, set_seed


def cached_outputs(module: nn.Module, dataset: TensorDataset, transform=None,
                   batch_size: int = 100) -> TensorDataset:
    """(outputs of `module`, labels) for a whole dataset, computed once in eval mode without
    gradients, where the module is; `transform` (e.g. the weights' preprocessing) is applied to
    the images first, in batches."""
    x, y = dataset.tensors[:2]
    if transform is not None:
        x = transform(x)
    outputs, labels = predict(module, TensorLoader(TensorDataset(x, y), batch_size))
    return TensorDataset(outputs, labels)


def fine_tune_top(top: nn.Module, train: TensorDataset, seed: int, *, num_classes: int,
                  lr: float, steps: int, head_lr_mult: float = 10.0, weight_decay: float = 1e-4,
                  batch_size: int = 32, train_bn: bool = False) -> nn.Module:
    """A copy of `top` (the model above a cut, ending in its head) with a new `num_classes` head,
    trained on `train`, cached inputs to the top, for `steps` AdamW steps (one-cycle); the new
    head learns `head_lr_mult` x faster than the blocks (discriminative rates, chapter 4).

    BatchNorm stays in eval mode unless `train_bn`: with a few images per batch, batch statistics
    are noise, and they would overwrite the pretrained running statistics (chapter 8 measures
    it). `top` itself is left untouched, so one cache serves every seed.
    """
    set_seed(seed)
    net = reset_classifier(copy.deepcopy(top), num_classes)
    if not train_bn:
        freeze_batch_norm(net)
    optimizer = adamw(param_groups_discriminative(net, lr, head_lr_mult, weight_decay))
    loader = TensorLoader(train, min(batch_size, len(train)), shuffle=True, seed=seed)
    fit(net, loader, steps=steps, optimizer=optimizer, progress=False)
    return net.eval()
