"""Training and evaluation loops, shaped like torchvision's reference scripts, plus feature caching.

`train_one_epoch` and `evaluate` are the two loops every chapter uses; `fit` runs them for some
epochs and returns a `History`; `fine_tune` is fastai's recipe (train the head, then everything);
`extract_features` caches a frozen backbone's outputs (chapter 3). Works on CPU, and on CUDA with
bf16 autocast when a GPU is present (`device="auto"`).
"""
from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from .freezing import freeze, unfreeze
from .models import get_classifier
from .optim import adamw, param_groups_discriminative, param_groups_weight_decay


def get_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` picks CUDA, then Apple's MPS, then the CPU; anything else is passed to torch."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run can be repeated exactly on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)   # also seeds every CUDA device


def to_device(model: nn.Module, device="auto") -> nn.Module:
    """Move `model` to `device`, its convolution weights in channels-last memory format.

    Channels-last is what oneDNN (CPU) and cuDNN (GPU) convolutions and pooling run fastest on:
    for the course's small CNN it makes a training step about twice as fast on a CPU. Only the
    layout changes, not the values; inputs need no conversion.
    """
    return model.to(get_device(device), memory_format=torch.channels_last)


def _device_of(model: nn.Module, device) -> torch.device:
    """For loops over an existing model, "auto" means wherever the model's weights already are."""
    if str(device) == "auto":
        param = next(model.parameters(), None)
        return param.device if param is not None else get_device("auto")
    return torch.device(device)


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (no GradScaler needed for bf16); full precision elsewhere."""
    if device.type == "cuda":
        return torch.amp.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _check_loader(data_loader) -> None:
    if len(data_loader) == 0:
        raise ValueError("the data loader is empty: it yields no batches (empty dataset, or "
                         "drop_last with fewer examples than batch_size)")


def _check_targets(targets: torch.Tensor, logits: torch.Tensor) -> None:
    if targets.dtype.is_floating_point or targets.ndim != 1:
        return   # soft or multi-label targets: the criterion checks them
    lo, hi = int(targets.min()), int(targets.max())
    if lo < 0 or hi >= logits.shape[1]:
        raise ValueError(f"labels must be in [0, {logits.shape[1] - 1}] for a head with "
                         f"{logits.shape[1]} outputs, got labels from {lo} to {hi}")


@dataclass
class History:
    """Per-epoch results of `fit`; `as_dict()` gives plain lists for plotting or a DataFrame."""
    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    time: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def train_one_epoch(model: nn.Module, criterion, optimizer, data_loader, device="auto",
                    epoch: int | None = None, *, scheduler=None, progress: bool = True) -> dict:
    """One pass over `data_loader`; returns {"loss", "accuracy"} averaged over examples.

    `scheduler` (if any) steps after every batch, as one-cycle schedules expect. A NaN or
    infinite loss stops training with a FloatingPointError instead of silently ruining the weights.
    """
    device = _device_of(model, device)
    _check_loader(data_loader)
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    desc = f"epoch {epoch}" if epoch is not None else "train"
    for inputs, targets in tqdm(data_loader, desc=desc, leave=False, disable=not progress):
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with _autocast(device):
            logits = model(inputs)
            _check_targets(targets, logits)
            loss = criterion(logits, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} in {desc}: lower the learning "
                                     "rate, or check the inputs for NaN/inf values")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = targets.shape[0]
        total_loss += loss.item() * n
        correct += (logits.argmax(1) == targets).sum().item() if targets.ndim == 1 else 0
        seen += n
    return {"loss": total_loss / seen, "accuracy": correct / seen}


@torch.no_grad()   # not inference_mode: its tensors could not be used to train a head later
def predict(model: nn.Module, data_loader, device="auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets for a whole loader, in eval mode; the model's mode is restored after.

    `device="auto"` runs where the model is; the outputs come back on the CPU.
    """
    device = _device_of(model, device)
    _check_loader(data_loader)
    was_training = model.training
    model.eval()
    try:
        outs, ys = [], []
        for inputs, targets in data_loader:
            with _autocast(device):
                outs.append(model(inputs.to(device)).float().cpu())
            ys.append(targets)
        return torch.cat(outs), torch.cat(ys)
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, criterion, data_loader, device="auto") -> dict:
    """Loss and accuracy on `data_loader` in eval mode, without gradients: {"loss", "accuracy"}."""
    logits, targets = predict(model, data_loader, device)
    _check_targets(targets, logits)
    loss = criterion(logits, targets).item() if criterion is not None else float("nan")
    return {"loss": loss, "accuracy": (logits.argmax(1) == targets).float().mean().item()}


def make_optimizer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4):
    """AdamW (fused) over the trainable parameters, without decay on biases and norm layers."""
    return adamw(param_groups_weight_decay(model, lr, weight_decay))


def fit(model: nn.Module, train_loader, *, epochs: int, optimizer=None, lr: float = 1e-3,
        weight_decay: float = 1e-4, criterion=None, val_loader=None, one_cycle: bool = True,
        device="auto", progress: bool = True, before_epoch=None) -> History:
    """Train for `epochs` and return a History (per-epoch loss, accuracy and seconds).

    Defaults: cross-entropy, AdamW (`make_optimizer`) and a one-cycle schedule peaking at each
    group's own `lr`. The model is moved to `device` (`to_device`) and left in the mode it had.
    `before_epoch(epoch)`, if given, runs before each epoch (numbered from 1), e.g. to unfreeze
    the next block while optimizer and schedule carry on (gradual unfreezing, chapter 4).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    _check_loader(train_loader)
    device = get_device(device)
    to_device(model, device)
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    optimizer = optimizer if optimizer is not None else make_optimizer(model, lr, weight_decay)
    scheduler = None
    if one_cycle:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=epochs * len(train_loader))
    was_training, history = model.training, History()
    try:
        for epoch in tqdm(range(1, epochs + 1), desc="fit", disable=not progress):
            if before_epoch is not None:
                before_epoch(epoch)
            start = time.perf_counter()
            train = train_one_epoch(model, criterion, optimizer, train_loader, device, epoch,
                                    scheduler=scheduler, progress=False)
            val = evaluate(model, criterion, val_loader, device) if val_loader is not None else {}
            history.epoch.append(epoch)
            history.train_loss.append(train["loss"])
            history.train_acc.append(train["accuracy"])
            history.val_loss.append(val.get("loss", math.nan))
            history.val_acc.append(val.get("accuracy", math.nan))
            history.time.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return history


def fine_tune(model: nn.Module, train_loader, *, head_epochs: int, epochs: int, lr: float = 1e-3,
              head_lr_mult: float = 10.0, weight_decay: float = 1e-4, val_loader=None,
              device="auto", progress: bool = True) -> tuple[History, History]:
    """fastai's recipe: train the head on a frozen body, then unfreeze and train everything.

    The second stage uses discriminative learning rates: body at `lr`, head at `lr * head_lr_mult`.
    Returns the two stages' histories.
    """
    freeze(model)                               # the body: everything but the head's Linear,
    unfreeze(model, [get_classifier(model)])    # even when the head sits inside a Sequential
    head_history = fit(model, train_loader, epochs=head_epochs, lr=lr * head_lr_mult,
                       weight_decay=weight_decay, val_loader=val_loader, device=device,
                       progress=progress)
    unfreeze(model)
    optimizer = adamw(param_groups_discriminative(model, lr, head_lr_mult, weight_decay))
    full_history = fit(model, train_loader, epochs=epochs, optimizer=optimizer,
                       val_loader=val_loader, device=device, progress=progress)
    return head_history, full_history


def extract_features(backbone: nn.Module, data_loader, device="auto") -> TensorDataset:
    """Run a (frozen) backbone once over a loader, in eval mode: a TensorDataset of
    (features, targets) to train a head on many times without touching the backbone again."""
    features, targets = predict(backbone, data_loader, device)
    return TensorDataset(features.flatten(1), targets)
