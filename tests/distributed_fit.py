"""What tests/test_distributed.py runs under torchrun: `python -m torch.distributed.run
--standalone --nproc_per_node=2 tests/distributed_fit.py OUT` writes OUT/rank<r>.pt, one report
per process, and a tiny pretraining's checkpoint into OUT/weights<r> (rank 0's only). The test
also calls `train()` in its own process, to compare with one process.
"""
import contextlib
import io
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import tlutils.pretrain
from tlutils.data import TensorLoader
from tlutils.distributed import rank
from tlutils.freezing import freeze, unfreeze
from tlutils.train import fit, set_seed


class Mlp(nn.Module):
    """A `features` body and a `classifier` head without BatchNorm: nothing in it depends on how
    a batch is split, so two processes must compute what one does."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(2, 16), nn.ReLU())
        self.classifier = nn.Linear(16, 2)

    def forward(self, x):
        return self.classifier(self.features(x))


def points(n: int, seed: int) -> TensorDataset:
    """2-D points labelled by the side of the line x + y = 0 they fall on."""
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(x, (x.sum(1) > 0).long())


def train(progress: bool = False) -> tuple[nn.Module, dict]:
    """Three epochs of gradual unfreezing (the head, then everything) on uneven batches: 203
    training examples in batches of 32 end with 11 (5 + 6 on two processes), 99 validation
    examples with 3 (1 + 2)."""
    set_seed(0)
    model = freeze(Mlp(), "features")
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.02)   # every parameter, frozen or not

    def unfreeze_from_epoch_2(epoch):
        if epoch == 2:
            unfreeze(model)

    history = fit(model, TensorLoader(points(203, 1), 32, shuffle=True, seed=0), epochs=3,
                  optimizer=optimizer, val_loader=TensorLoader(points(99, 2), 32), device="cpu",
                  progress=progress, before_epoch=unfreeze_from_epoch_2)
    return model, history.as_dict()


def pretrain_tiny(out: Path) -> None:
    """`python -m tlutils.pretrain --out OUT` on a recipe small enough for a test."""
    tlutils.pretrain.RECIPE.update(train_images=512, test_images=128, epochs=1)
    tlutils.pretrain.main(["--out", str(out)])


def refusal_of_unlike_loaders() -> str:
    """fit's error when each process shuffles with its own seed (as forgetting to seed can do)."""
    try:
        fit(Mlp(), TensorLoader(points(64, 1), 16, shuffle=True, seed=rank()), epochs=1,
            device="cpu", progress=False)
    except RuntimeError as error:
        return str(error)
    return "no error"


def main(out: Path) -> None:
    printed = io.StringIO()   # what this process prints, progress bars included
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        model, history = train(progress=True)
        pretrain_tiny(out / f"weights{rank()}")
    torch.save({"state": model.state_dict(), "history": history, "printed": printed.getvalue(),
                "refusal": refusal_of_unlike_loaders()}, out / f"rank{rank()}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
