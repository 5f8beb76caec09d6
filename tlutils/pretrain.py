"""Reproduce the shipped source model: `python -m tlutils.pretrain` (a few minutes on a CPU).

Renders printed glyphs (the source task), trains a SmallCNN on them and writes the weights and a
metadata JSON into `tlutils/weights/` (or `--out`). Chapters never run this: they load the result.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from .data import DIGITS, FONTS, TensorLoader, load_handwritten, render_glyphs
from .models import SHIPPED, WEIGHTS_DIR, SmallCNN
from .train import evaluate, fit, set_seed

RECIPE = {"train_images": 30000, "test_images": 5000, "train_seed": 0, "test_seed": 1,
          "image_size": 16, "chars": DIGITS, "fonts": list(FONTS), "epochs": 8, "batch_size": 128,
          "lr": 3e-3, "weight_decay": 1e-4, "optimizer": "AdamW, one-cycle"}


def pretrain(seed: int = 0, out: Path = WEIGHTS_DIR, progress: bool = True) -> dict:
    """Train the source model from scratch and save it; returns the metadata it wrote."""
    set_seed(seed)
    start = time.perf_counter()
    train = render_glyphs(RECIPE["train_images"], size=RECIPE["image_size"], seed=RECIPE["train_seed"])
    test = render_glyphs(RECIPE["test_images"], size=RECIPE["image_size"], seed=RECIPE["test_seed"])
    model = SmallCNN(num_classes=len(DIGITS))
    fit(model, TensorLoader(train, RECIPE["batch_size"], shuffle=True, seed=seed),
        epochs=RECIPE["epochs"], lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"],
        progress=progress)
    seconds = time.perf_counter() - start
    model.cpu()
    _, handwritten_test = load_handwritten(RECIPE["image_size"])
    meta = {
        "name": SHIPPED,
        "architecture": {"num_classes": len(DIGITS), "in_channels": 1, "widths": list(model.widths)},
        "data_recipe": RECIPE,
        "seed": seed,
        "source_test_accuracy": evaluate(model, None, TensorLoader(test, 1024), "cpu")["accuracy"],
        "handwritten_zero_shot_accuracy":
            evaluate(model, None, TensorLoader(handwritten_test, 1024), "cpu")["accuracy"],
        "training_seconds": round(seconds, 1),
        "trained_on": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch_version": torch.__version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / f"{SHIPPED}.pt")
    (out / f"{SHIPPED}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for .pt and .json")
    args = parser.parse_args(argv)
    meta = pretrain(args.seed, args.out)
    print(json.dumps({k: v for k, v in meta.items() if k != "data_recipe"}, indent=2))


if __name__ == "__main__":
    main()
