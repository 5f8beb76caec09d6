"""Running under torchrun: one process per device, each training on its share of every batch.

`torchrun --nproc_per_node=N script.py` starts N copies of a script and tells each one its place
in environment variables: RANK (0 .. N-1), LOCAL_RANK (its number on this machine, hence its GPU)
and WORLD_SIZE (N). `fit` asks `is_distributed()`; when it is, it joins the process group
(`init_distributed`), gives each rank its share of every batch (`ShardedLoader`), trains a
DistributedDataParallel copy of the model (`ShardedLoader.wrap`) and turns the ranks' metrics
into the global ones (`ShardedLoader.average`). Outside torchrun, or with one process, none of
this runs. Chapter 8 ("When one machine is not enough") teaches it.
"""
from __future__ import annotations

import atexit
import os
import zlib

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def world_size() -> int:
    """How many processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    """This process's number among all of them, 0 .. world_size() - 1 (0 outside torchrun)."""
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    """This process's number on its own machine, hence the GPU it uses (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_distributed() -> bool:
    """True under torchrun with more than one process; one process runs as without torchrun."""
    return world_size() > 1


def is_main_process() -> bool:
    """True on rank 0, the one process that prints and saves (and always outside torchrun)."""
    return rank() == 0


def local_device() -> torch.device:
    """The device this process trains on: GPU number LOCAL_RANK if there are GPUs, else the CPU."""
    return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")


def init_distributed() -> torch.device:
    """Join the process group torchrun describes and return this process's device (`local_device`).

    Idempotent: only the first call joins, and only under torchrun (`is_distributed`). With GPUs
    the group sends CUDA tensors (the gradients) through NCCL and CPU tensors (the few numbers
    `ShardedLoader` compares and sums) through gloo; without, everything goes through gloo. The
    group is closed when the process exits, as torch asks.
    """
    device = local_device()
    if is_distributed() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    return device


def rank_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """The examples of a batch that `rank` trains on: contiguous, and of sizes that differ by at
    most one between the ranks (7 examples on 2 ranks: 0..2 and 3..6)."""
    if batch_size < world_size:
        raise ValueError(f"a batch of {batch_size} examples cannot be shared by {world_size} "
                         "processes: use a larger batch size, or drop_last=True")
    return slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)


def _check_same_batches(targets: torch.Tensor) -> None:
    """Refuse loaders that give the ranks different batches: compare the first batch's targets."""
    fingerprint = zlib.crc32(targets.cpu().numpy().tobytes())
    extremes = torch.tensor([fingerprint, -fingerprint])
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX)   # [max, -min]: the same everywhere iff equal
    if extremes[0] != -extremes[1]:
        raise RuntimeError("the processes' loaders yield different batches: give every "
                           "process the same loader, seeded alike (TensorLoader(..., seed=...), or "
                           "set_seed before building it), without a DistributedSampler: fit shares "
                           "out each batch itself")


def _allreduce_by_share(shards: ShardedLoader, bucket):
    """DDP's gradient all-reduce, with each rank's gradient weighted by its share of the batch;
    it returns a Future of the bucket's summed gradients, as DDP's communication hooks do.

    DDP's own hook averages the ranks' gradients with equal weights, 1/N each; each rank's is the
    gradient of its mean loss, so that is the whole batch's gradient only when the slices are the
    same size. Weighting by n_rank / n makes it exact for any batch, the last one included.
    (No return annotation: DDP compares it with the type itself, and here it would be a string.)
    """
    gradients = bucket.buffer().mul_(shards.share)
    return dist.all_reduce(gradients, async_op=True).get_future().then(lambda fut: fut.value()[0])


class ShardedLoader:
    """This rank's share of every batch of `loader`: the slice `rank_slice` gives.

    Every rank iterates the same loader, seeded alike, so all of them see the batches one process
    would see, in the same order; each trains on its slice, and DDP sums the slices' gradients
    weighted by their sizes (`wrap`). One step is then one process's step on the same global
    batch, whatever the batch size, up to float rounding, for a loss that is a mean over examples
    and a model that treats each example alone. BatchNorm does not: in training it normalizes
    over each rank's slice (SyncBatchNorm, which would not, runs only on GPUs).
    A DistributedSampler would not keep the global batch: it gives every rank batches of
    `batch_size` (a global batch N times larger), pads the data with repeated examples to a
    multiple of N, and needs a DataLoader. The price of slicing is that every rank draws the
    whole batch (and runs its `transform`): nothing for in-memory tensors, N times the decoding
    for a DataLoader that reads image files.
    """

    def __init__(self, loader):
        self.loader = loader
        self.examples = 0                  # examples this rank has had in the current pass
        self.share = 1 / world_size()      # this rank's fraction of the current batch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.examples = 0
        for index, (inputs, targets) in enumerate(self.loader):
            if index == 0:
                _check_same_batches(targets)
            part = rank_slice(len(targets), rank(), world_size())
            self.share = (part.stop - part.start) / len(targets)
            self.examples += part.stop - part.start
            yield inputs[part], targets[part]

    def wrap(self, model: nn.Module) -> DistributedDataParallel:
        """`model` in DistributedDataParallel, its gradients summed over the ranks by their shares.

        DDP copies rank 0's weights to every rank when it is built, and all-reduces the gradients
        of the parameters that train at that moment; it also copies rank 0's buffers (BatchNorm's
        running statistics) at every forward pass, so that the ranks' models stay the same.
        """
        ddp = DistributedDataParallel(model)
        ddp.register_comm_hook(self, _allreduce_by_share)
        return ddp

    def average(self, metrics: dict[str, float]) -> dict[str, float]:
        """Each rank's means over its examples of the last pass -> the means over all the ranks'
        examples, the same on every rank (one all-reduce of sums, in float64)."""
        sums = torch.tensor([value * self.examples for value in metrics.values()] + [self.examples],
                            dtype=torch.float64)
        dist.all_reduce(sums)
        return {name: (total / sums[-1]).item() for name, total in zip(metrics, sums[:-1])}
