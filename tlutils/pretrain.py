"""Reproduce the shipped source model: `python -m tlutils.pretrain` (a few minutes on a CPU).

Renders printed glyphs (the source task), trains a SmallCNN on them and writes the weights and a
metadata JSON into `tlutils/weights/` (or `--out`). Chapters never run this: they load the result.
`python -m tlutils.pretrain --shuffled-labels` makes chapter 6's control checkpoint instead: the
same recipe on the same images, with the training labels permuted at random (a fixed seed), so
the source task carries no information about which digit an image shows.

`torchrun --nproc_per_node=N -m tlutils.pretrain --out DIR` trains on N processes (chapter 8):
the same global batches, each process taking its share, and rank 0 alone writes the files. The
weights are not bit-identical to one process's: BatchNorm normalizes over each process's share
of a batch, not over the whole batch.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from .data import DIGITS, FONTS, TensorLoader, load_handwritten, render_glyphs
from .distributed import is_main_process, world_size
from .models import SHIPPED, SHUFFLED, WEIGHTS_DIR, SmallCNN
from .train import evaluate, fit, set_seed

RECIPE = {"train_images": 30000, "test_images": 5000, "train_seed": 0, "test_seed": 1,
          "image_size": 16, "chars": DIGITS, "fonts": list(FONTS), "epochs": 8, "batch_size": 128,
          "lr": 3e-3, "weight_decay": 1e-4, "optimizer": "AdamW, one-cycle"}
LABEL_SHUFFLE_SEED = 0   # the permutation of the control checkpoint's training labels


def pretrain(seed: int = 0, out: Path = WEIGHTS_DIR, progress: bool = True,
             shuffled_labels: bool = False) -> dict:
    """Train the source model from scratch and save it; returns the metadata it wrote.

    `shuffled_labels=True` permutes the training labels first (seed `LABEL_SHUFFLE_SEED`) and
    saves the result as the control checkpoint `SHUFFLED`; its test accuracy is still measured
    against the true labels. Under torchrun every process ends with the same model; only rank 0
    writes it and its metadata.
    """
    set_seed(seed)
    start = time.perf_counter()
    train = render_glyphs(RECIPE["train_images"], size=RECIPE["image_size"], seed=RECIPE["train_seed"])
    test = render_glyphs(RECIPE["test_images"], size=RECIPE["image_size"], seed=RECIPE["test_seed"])
    if shuffled_labels:
        images, labels = train.tensors
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(LABEL_SHUFFLE_SEED))
        train = TensorDataset(images, labels[order])   # same images, labels of random others
    model = SmallCNN(num_classes=len(DIGITS))
    history = fit(model, TensorLoader(train, RECIPE["batch_size"], shuffle=True, seed=seed),
                  epochs=RECIPE["epochs"], lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"],
                  progress=progress)
    seconds = time.perf_counter() - start
    model.cpu()
    _, handwritten_test = load_handwritten(RECIPE["image_size"])
    name = SHUFFLED if shuffled_labels else SHIPPED
    meta = {
        "name": name,
        "architecture": {"num_classes": len(DIGITS), "in_channels": 1, "widths": list(model.widths)},
        "data_recipe": RECIPE,
        "seed": seed,
        "source_test_accuracy": evaluate(model, None, TensorLoader(test, 1024), "cpu")["accuracy"],
        "handwritten_zero_shot_accuracy":
            evaluate(model, None, TensorLoader(handwritten_test, 1024), "cpu")["accuracy"],
        "training_seconds": round(seconds, 1),
        "trained_on": _trained_on(),
        "torch_version": torch.__version__,
    }
    if shuffled_labels:
        meta["labels"] = (f"shuffled: the training labels permuted at random (torch.randperm, "
                          f"seed {LABEL_SHUFFLE_SEED}), so they say nothing about the images; a "
                          "control for chapter 6. Accuracies are against the true labels.")
        meta["label_shuffle_seed"] = LABEL_SHUFFLE_SEED
        meta["final_train_accuracy_on_shuffled_labels"] = history.train_acc[-1]
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), out / f"{name}.pt")
        (out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _trained_on() -> str:
    """The machine and threads the training ran on, times the processes under torchrun."""
    where = f"{platform.machine()}, {torch.get_num_threads()} threads"
    return where if world_size() == 1 else f"{where} x {world_size()} processes"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for .pt and .json")
    parser.add_argument("--shuffled-labels", action="store_true",
                        help=f"train the control checkpoint {SHUFFLED!r} on permuted labels")
    args = parser.parse_args(argv)
    meta = pretrain(args.seed, args.out, shuffled_labels=args.shuffled_labels)
    if is_main_process():
        print(json.dumps({k: v for k, v in meta.items() if k != "data_recipe"}, indent=2))


if __name__ == "__main__":
    main()
