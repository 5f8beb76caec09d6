"""What a training step costs: the memory it holds, and the time it takes.

Taught in :doc:`section 9.1 </book/09_fine_tuning_text>`, where full fine-tuning, LoRA, BitFit and
a head alone are compared on more than accuracy. How many parameters train is
`tlutils.count_parameters(model, trainable_only=True)` (chapter 3); this module measures what that
does, and does not, save. The memory of a training step has four parts:

* **parameters**: every weight, trainable or frozen, is in memory (4 bytes each in float32);
* **gradients**: one number per *trainable* parameter, written by `backward()`;
* **optimizer state**: AdamW keeps two running moments per trainable parameter (plus a step
  count per tensor), twice the gradients' bytes;
* **activations**: what autograd saves during the forward pass for the backward pass (inputs of
  layers whose weights train, softmax outputs, dropout masks, ...). They grow with the batch and
  the sequence length, not with the number of trainable parameters: freezing a layer's weights
  spares the input that only the weight's gradient needs, but the gradient must still flow down
  through every layer above the lowest one that trains, and that needs most of them.

`step_memory` measures the four on one real step; `step_time` times steps. Both run the step as
`tlutils.train_one_epoch` does (train mode, bf16 autocast on CUDA, `zero_grad(set_to_none=True)`,
`backward`, `step`), where the model is, and both really train it: pass a copy to keep the model.
"""
from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .train import _autocast, make_optimizer, resolve_device

MIB = 2 ** 20


@dataclass(frozen=True)
class StepMemory:
    """Bytes held by one training step, by kind (see the module's docstring), and on CUDA the
    peak that the allocator reached during the step (`cuda_peak`, None elsewhere)."""
    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    cuda_peak: int | None = None

    @property
    def total(self) -> int:
        """Parameters + gradients + optimizer state + saved activations, in bytes."""
        return self.parameters + self.gradients + self.optimizer_state + self.activations

    def mib(self) -> dict[str, float]:
        """Every field and the total in MiB (2**20 bytes), for a table or a plot."""
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        return {k: v / MIB for k, v in {**fields, "total": self.total}.items()}


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class SavedActivations:
    """A context manager that records the tensors autograd saves for backward inside it.

    `bytes` is the size of the distinct storages saved (a tensor and its views count once),
    leaving out the model's own parameters, which autograd saves too (e.g. a frozen Linear layer's
    weight, to send the gradient to its input) but which are in memory anyway. Under autocast
    the low-precision copies of the weights that autograd saves are counted: they are extra
    memory that lives until the backward pass.
    """

    def __init__(self, model: nn.Module | None = None):
        self._parameters = ({p.untyped_storage().data_ptr() for p in model.parameters()}
                            if model is not None else set())
        self._storages: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):   # sparse or other storage-less tensors
            return tensor
        if storage.data_ptr() not in self._parameters:
            self._storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def bytes(self) -> int:
        return sum(self._storages.values())

    def __enter__(self) -> "SavedActivations":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def _prepare(model, batch, criterion, optimizer, device):
    device = resolve_device(model, device)
    inputs, targets = (t.to(device) for t in batch)
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    optimizer = optimizer if optimizer is not None else make_optimizer(model)
    return device, inputs, targets, criterion, optimizer


def _step(model, inputs, targets, criterion, optimizer, device, saved=None) -> None:
    optimizer.zero_grad(set_to_none=True)
    with _autocast(device), (saved if saved is not None else nullcontext()):
        loss = criterion(model(inputs), targets)
    loss.backward()


def step_memory(model: nn.Module, batch, criterion=None, optimizer=None,
                device=None) -> StepMemory:
    """Measure one real training step of `model` on `batch` = (inputs, targets): the bytes of
    its parameters, of the gradients of its trainable ones, of the optimizer's state after the
    step, and of the activations autograd saved for backward (`SavedActivations`).

    Defaults: cross-entropy and `tlutils.make_optimizer` (AdamW over the trainable parameters, as
    `fit` uses). The step changes the weights and fills the optimizer's state, as any step does.
    It runs where the model is (`device=None`); on CUDA `cuda_peak` is the allocator's peak
    during the step (`torch.cuda.max_memory_allocated`), which also counts temporaries that
    live and die inside the forward or backward pass.
    """
    device, inputs, targets, criterion, optimizer = _prepare(model, batch, criterion, optimizer,
                                                             device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    was_training = model.training
    model.train()
    try:
        saved = SavedActivations(model)
        _step(model, inputs, targets, criterion, optimizer, device, saved)
        trainable = [p for p in model.parameters() if p.requires_grad]
        gradients = _nbytes(p.grad for p in trainable if p.grad is not None)
        optimizer.step()
        state = _nbytes(v for s in optimizer.state.values() for v in s.values()
                        if isinstance(v, torch.Tensor))
        peak = None
        if cuda:
            torch.cuda.synchronize(device)
            peak = int(torch.cuda.max_memory_allocated(device))
    finally:
        model.train(was_training)
    return StepMemory(parameters=_nbytes(model.parameters()), gradients=gradients,
                      optimizer_state=state, activations=saved.bytes, cuda_peak=peak)


def step_time(model: nn.Module, batch, criterion=None, optimizer=None, *, steps: int = 5,
              warmup: int = 1, device=None) -> float:
    """The median wall-clock seconds of `steps` training steps of `model` on `batch`, after
    `warmup` steps that are not timed (the first steps allocate memory and pick kernels).

    Same step and defaults as `step_memory`. The median, not the mean: one step slowed by another
    process on the machine should not move it. Wall-clock times depend on the machine and on what
    else runs on it: compare methods measured in the same run, never assert on them.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps} and {warmup}")
    device, inputs, targets, criterion, optimizer = _prepare(model, batch, criterion, optimizer,
                                                             device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    was_training = model.training
    model.train()
    times = []
    try:
        for i in range(warmup + steps):
            sync(device)
            start = time.perf_counter()
            _step(model, inputs, targets, criterion, optimizer, device)
            optimizer.step()
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times)
