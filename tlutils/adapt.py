"""Adapting a trained model to a new domain without labels: AdaBN, taught in
:doc:`chapter 6 </book/06_domain_shift>`.

A BatchNorm layer normalises with the running mean and variance it measured on the *source*
data. When the target's inputs have other statistics (other ink, other stroke widths), every
layer is normalised wrongly and the errors compound. AdaBN (Li et al. 2016, "Revisiting Batch
Normalization For Practical Domain Adaptation") replaces those statistics with the target's,
measured on unlabelled target images; no weight changes.
"""
from __future__ import annotations

import torch
from torch import nn

from .freezing import batch_norm_layers
from .train import resolve_device


def _inputs_of(batch) -> torch.Tensor:
    """The images of a batch: `(inputs, targets, ...)` tuples or bare tensors; labels unused."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _statistics(bn: nn.Module) -> tuple[torch.Tensor, ...]:
    return bn.running_mean, bn.running_var, bn.num_batches_tracked


def adapt_batch_norm(model: nn.Module, data_loader, device=None) -> nn.Module:
    """AdaBN (Li et al. 2016): re-estimate every BatchNorm layer's running statistics on
    `data_loader`'s images.

    Each BatchNorm layer that tracks running statistics is reset and, in one pass under
    `torch.no_grad()`, re-estimated as a cumulative average (`momentum=None`) of the batches'
    statistics, as `torch.optim.swa_utils.update_bn` does. During the pass only the BatchNorm
    layers are in train mode (dropout and the rest stay in eval); afterwards every module's mode
    and every layer's momentum are restored. No parameter changes; labels, if the loader yields
    `(inputs, targets)`, are ignored, so unlabelled target images are enough.

    BatchNorm layers frozen by `tlutils.freeze` / `freeze_batch_norm` are adapted too (the pass
    sets their mode directly, bypassing the freeze) and stay frozen afterwards, now keeping the
    target's statistics: AdaBN, then a linear probe on the adapted, frozen backbone, works.

    One batch holding all the images gives the exact statistics (over several batches, the
    variance misses the spread of the batch means). It runs where the model is (`device=None`;
    see `tlutils.resolve_device`) and returns the model, adapted in place. A model without running
    BatchNorm statistics or a loader with no batches is a ValueError; on any error the old
    statistics are put back.
    """
    bns = [m for m in batch_norm_layers(model) if m.track_running_stats]
    if not bns:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer with running statistics: "
                         "there is nothing for adapt_batch_norm to re-estimate")
    device = resolve_device(model, device)
    modes = {m: m.training for m in model.modules()}
    momenta = [bn.momentum for bn in bns]
    saved = [[buf.clone() for buf in _statistics(bn)] for bn in bns]
    try:
        model.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None          # cumulative average over all batches of the pass
            bn.training = True          # set directly: a frozen layer's train() would refuse
        batches = 0
        with torch.no_grad():
            for batch in data_loader:
                model(_inputs_of(batch).to(device))
                batches += 1
        if batches == 0:
            raise ValueError("the data loader is empty: adapt_batch_norm needs at least one "
                             "batch of target images")
    except BaseException:
        for bn, state in zip(bns, saved):   # leave the model as it was
            for buf, old in zip(_statistics(bn), state):
                buf.copy_(old)
        raise
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return model
