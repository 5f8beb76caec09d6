"""Training and evaluation loops, shaped like torchvision's reference scripts, plus feature caching.

`train_one_epoch` and `evaluate` are the two loops every chapter uses; `fit` runs them for a
number of epochs or of optimizer steps and returns a `History`; `extract_features` caches a
frozen backbone's outputs (chapter 3). Works on CPU, and on CUDA with bf16 autocast when a GPU
is present (`device="auto"`).
"""
from __future__ import annotations

import itertools
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from .data import TensorLoader
from .distributed import (ShardedLoader, init_distributed, is_distributed, is_main_process,
                          local_device)
from .optim import adamw, param_groups_weight_decay


def get_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` picks CUDA, then Apple's MPS, then the CPU; anything else is passed to torch.

    Under torchrun, `"auto"` is this process's own device: GPU number LOCAL_RANK, or the CPU.
    """
    if str(device) != "auto":
        return torch.device(device)
    if is_distributed():
        return local_device()
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


SEED_SET_VARIABLE = "TLUTILS_SEED_SET"
SEED_SET_STRIDE = 1000


def seeds(n: int) -> list[int]:
    """The `n` seeds a chapter's experiments run with: 0 .. n-1, or another disjoint block.

    A claim that compares methods must hold for other seeds than the ones it was written on.
    `TLUTILS_SEED_SET=j` (j >= 1) gives the seeds 1000 j .. 1000 j + n - 1 instead, so that
    `benchmarks/claims.py` can re-run every chapter on sets that share no seed with the default.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    value = os.environ.get(SEED_SET_VARIABLE, "0")
    if not value.isdigit():
        raise ValueError(f"{SEED_SET_VARIABLE} must be a non-negative integer, got {value!r}")
    start = int(value) * SEED_SET_STRIDE
    if n > SEED_SET_STRIDE:
        raise ValueError(f"at most {SEED_SET_STRIDE} seeds per set, got {n}")
    return list(range(start, start + n))


def to_device(model: nn.Module, device="auto") -> nn.Module:
    """Move `model` to `device`, its convolution weights in channels-last memory format.

    Channels-last is what oneDNN (CPU) and cuDNN (GPU) convolutions and pooling run fastest on:
    for the course's small CNN it makes a training step about twice as fast on a CPU. Only the
    layout changes, not the values; inputs need no conversion.
    """
    return model.to(get_device(device), memory_format=torch.channels_last)


def model_device(model: nn.Module) -> torch.device:
    """The one device that holds all of `model`'s parameters and buffers (the CPU if it has none).

    A model split over two devices fails at its first forward pass with an error that names
    neither the module nor the fix, so it is refused here instead.
    """
    devices = {t.device for t in itertools.chain(model.parameters(), model.buffers())}
    if len(devices) > 1:
        raise ValueError(f"the model's parameters and buffers are split over {sorted(map(str, devices))}: "
                         "move the whole model with tlutils.to_device(model, device)")
    return devices.pop() if devices else torch.device("cpu")


def resolve_device(model: nn.Module, device) -> torch.device:
    """The device a loop over an existing model runs on: where the model is (`device=None`), or
    `device` (`"auto"`: the best one, as everywhere), which must then be where the model is."""
    here = model_device(model)
    if device is None:
        return here
    wanted = get_device(device)
    if (wanted.type, wanted.index or 0) != (here.type, here.index or 0):
        raise ValueError(f"the model is on {here}, not on {wanted}: move it first with "
                         f"tlutils.to_device(model, {str(wanted)!r}), or pass device=None to run "
                         "where it is")
    return here


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


def train_one_epoch(model: nn.Module, criterion, optimizer, data_loader, device=None,
                    epoch: int | None = None, *, scheduler=None, progress: bool = True) -> dict:
    """One pass over `data_loader`; returns {"loss", "accuracy"} averaged over examples.

    It runs where the model is (`device=None`). `scheduler` (if any) steps after every batch, as one-cycle schedules expect. A NaN or
    infinite loss stops training with a FloatingPointError instead of silently ruining the weights.
    """
    device = resolve_device(model, device)
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
def predict(model: nn.Module, data_loader, device=None, *,
            progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets for a whole loader, in eval mode; the model's mode is restored after.

    It runs where the model is (`device=None`); the outputs come back on the CPU.
    """
    device = resolve_device(model, device)
    _check_loader(data_loader)
    was_training = model.training
    model.eval()
    try:
        outs, ys = [], []
        for inputs, targets in tqdm(data_loader, desc="predict", leave=False,
                                    disable=not progress):
            with _autocast(device):
                outs.append(model(inputs.to(device)).float().cpu())
            ys.append(targets)
        return torch.cat(outs), torch.cat(ys)
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, criterion, data_loader, device=None) -> dict:
    """Loss and accuracy on `data_loader` in eval mode, without gradients: {"loss", "accuracy"}."""
    logits, targets = predict(model, data_loader, device)
    _check_targets(targets, logits)
    loss = criterion(logits, targets).item() if criterion is not None else float("nan")
    return {"loss": loss, "accuracy": (logits.argmax(1) == targets).float().mean().item()}


def accuracy_on(model: nn.Module, dataset: TensorDataset, batch_size: int = 1024) -> float:
    """Accuracy of `model` on a whole in-memory dataset, where the model is (eval mode, no
    gradients): the one-line score every chapter needs."""
    return evaluate(model, None, TensorLoader(dataset, batch_size))["accuracy"]


def make_optimizer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4):
    """AdamW (fused) over the trainable parameters, without decay on biases and norm layers."""
    return adamw(param_groups_weight_decay(model, lr, weight_decay))


class _FirstBatches:
    """The first `n` batches of a loader: the last, partial epoch of a budget of steps."""

    def __init__(self, loader, n: int):
        self.loader, self.n = loader, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return itertools.islice(self.loader, self.n)


def fit(model: nn.Module, train_loader, *, epochs: int | None = None, steps: int | None = None,
        optimizer=None, lr: float | None = None, weight_decay: float | None = None,
        criterion=None, val_loader=None, one_cycle: bool = True, device="auto",
        progress: bool = True, before_epoch=None) -> History:
    """Train for `epochs`, or for exactly `steps` optimizer steps (one per batch, the last epoch
    cut short, as nanoGPT counts iterations), and return a History (per-epoch loss, accuracy and
    seconds).

    Defaults: cross-entropy, AdamW (`make_optimizer`, lr 1e-3, weight decay 1e-4) and a one-cycle
    schedule peaking at each group's own `lr`. An `optimizer` brings its own learning rates and
    decay, so passing `lr` or `weight_decay` with it is an error, not silently ignored. The whole
    model is moved to `device` (`"auto"`: CUDA, then MPS, then the CPU; `to_device`) and left
    there, in the mode it had.
    `before_epoch(epoch)`, if given, runs before each epoch (numbered from 1), e.g. to unfreeze
    the next block while optimizer and schedule carry on (gradual unfreezing, chapter 4).

    Under `torchrun --nproc_per_node=N` (chapter 8) the same call trains with
    DistributedDataParallel: each process takes its share of every batch of the loaders, which
    must be the same on every process (`tlutils.distributed.ShardedLoader`), so one step is still
    one step on the whole batch; the History holds the global metrics, the same on every process,
    and only rank 0 shows progress. `model` itself is trained, as without torchrun.
    """
    budget = {name: n for name, n in (("epochs", epochs), ("steps", steps)) if n is not None}
    if len(budget) != 1:
        raise ValueError("give fit either epochs or steps (optimizer steps, one per batch)")
    [(name, n)] = budget.items()
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    if optimizer is not None and (lr is not None or weight_decay is not None):
        raise ValueError("pass either an optimizer or lr/weight_decay, not both: an optimizer "
                         "already holds its learning rates and weight decay")
    _check_loader(train_loader)
    distributed = is_distributed()
    if distributed:
        init_distributed()
        train_loader = ShardedLoader(train_loader)
        val_loader = ShardedLoader(val_loader) if val_loader is not None else None
    per_epoch = len(train_loader)
    total_steps = steps if epochs is None else epochs * per_epoch
    epochs = math.ceil(total_steps / per_epoch)
    device = get_device(device)
    to_device(model, device)
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    if optimizer is None:
        optimizer = make_optimizer(model, 1e-3 if lr is None else lr,
                                   1e-4 if weight_decay is None else weight_decay)
    scheduler = None
    if one_cycle:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=total_steps)
    was_training, history = model.training, History()
    try:
        show = progress and is_main_process()   # under torchrun, rank 0 speaks for all
        for epoch in tqdm(range(1, epochs + 1), desc="fit", disable=not show):
            if before_epoch is not None:
                before_epoch(epoch)
            start = time.perf_counter()
            left = total_steps - (epoch - 1) * per_epoch
            batches = train_loader if left >= per_epoch else _FirstBatches(train_loader, left)
            # built each epoch, after before_epoch: DDP syncs the parameters that train when built
            trainee = train_loader.wrap(model) if distributed else model
            train = train_one_epoch(trainee, criterion, optimizer, batches, device, epoch,
                                    scheduler=scheduler, progress=False)
            val = evaluate(model, criterion, val_loader, device) if val_loader is not None else {}
            if distributed:   # each rank's means over its shares -> the means over all examples
                train = train_loader.average(train)
                val = val_loader.average(val) if val_loader is not None else {}
            history.epoch.append(epoch)
            history.train_loss.append(train["loss"])
            history.train_acc.append(train["accuracy"])
            history.val_loss.append(val.get("loss", math.nan))
            history.val_acc.append(val.get("accuracy", math.nan))
            history.time.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return history


def extract_features(backbone: nn.Module, data_loader, device=None) -> TensorDataset:
    """Run a (frozen) backbone once over a loader, in eval mode: a TensorDataset of
    (features, targets) to train a head on many times without touching the backbone again."""
    features, targets = predict(backbone, data_loader, device)
    return TensorDataset(features.flatten(1), targets)
