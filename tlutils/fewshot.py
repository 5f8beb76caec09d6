"""Few-shot transfer experiments: scratch vs linear probe vs fine-tuning with k labels per class.

Chapter 4's data-efficiency curve and the checks on the shipped model both run through here, so
each method gets one honest recipe. Every method was tuned with the same effort: the same grid
of learning rates, steps and augmentation, scored on a validation split carved from the
*training* pool (never the test split) by `python -m tlutils.fewshot --tune`.
"""
from __future__ import annotations

import argparse
import itertools
import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from .data import RandomAffineBatch, TensorLoader, few_shot_subset, load_handwritten, train_val_split
from .freezing import freeze
from .models import SmallCNN, get_classifier, load_pretrained, reset_classifier
from .optim import param_groups_discriminative
from .train import evaluate, extract_features, fit, set_seed

METHODS = ("scratch", "linear probe", "fine-tune")


@dataclass(frozen=True)
class Recipe:
    """How one method trains: peak learning rate, optimizer steps, batch size, augmentation."""
    lr: float
    steps: int
    augment: bool
    batch_size: int = 32
    weight_decay: float = 1e-4
    head_lr_mult: float = 10.0   # fine-tuning only: a new head learns this much faster


# Chosen by `python -m tlutils.fewshot --tune` (validation split of the training pool, k = 1, 3
# and 10, seeds 0 and 1): the best mean validation accuracy of each method's grid.
RECIPES = {
    "scratch": Recipe(lr=1e-2, steps=300, augment=True),
    "linear probe": Recipe(lr=3e-3, steps=300, augment=False, batch_size=64),
    "fine-tune": Recipe(lr=3e-3, steps=300, augment=True),
}


def _loader(train: TensorDataset, recipe: Recipe, seed: int) -> tuple[TensorLoader, int]:
    """A shuffling loader and the number of epochs that gives about `recipe.steps` steps."""
    batch = min(recipe.batch_size, len(train))
    loader = TensorLoader(train, batch, shuffle=True, seed=seed,
                          transform=RandomAffineBatch() if recipe.augment else None)
    return loader, max(1, math.ceil(recipe.steps / len(loader)))


def train_scratch(train: TensorDataset, recipe: Recipe = RECIPES["scratch"], seed: int = 0,
                  num_classes: int = 10) -> nn.Module:
    """A randomly initialised SmallCNN trained on `train` alone: the baseline transfer must beat."""
    set_seed(seed)
    model = SmallCNN(num_classes=num_classes)
    loader, epochs = _loader(train, recipe, seed)
    fit(model, loader, epochs=epochs, lr=recipe.lr, weight_decay=recipe.weight_decay,
        progress=False)
    return model


def train_fine_tune(train: TensorDataset, recipe: Recipe = RECIPES["fine-tune"], seed: int = 0,
                    num_classes: int = 10) -> nn.Module:
    """The shipped model with every layer trained (head at `head_lr_mult` x lr).

    The head is replaced only when the target's classes differ from the source's: for digits ->
    digits the pretrained head already maps features to the right classes, and keeping it is
    what lets a single label per class work (chapter 4 compares both).
    """
    set_seed(seed)
    model = load_pretrained()
    new_head = get_classifier(model).out_features != num_classes
    if new_head:
        reset_classifier(model, num_classes)
    loader, epochs = _loader(train, recipe, seed)
    optimizer = torch.optim.AdamW(param_groups_discriminative(
        model, recipe.lr, recipe.head_lr_mult if new_head else 1.0, recipe.weight_decay))
    fit(model, loader, epochs=epochs, optimizer=optimizer, progress=False)
    return model


def train_linear_probe(train: TensorDataset, recipe: Recipe = RECIPES["linear probe"],
                       seed: int = 0, num_classes: int = 10) -> nn.Module:
    """The shipped model frozen (BatchNorm included); only a new head learns, on cached features."""
    set_seed(seed)
    model = reset_classifier(load_pretrained(), num_classes)
    freeze(model, ["features"])
    features = extract_features(model.features, TensorLoader(train, 1024))
    loader, epochs = _loader(features, replace(recipe, augment=False), seed)
    fit(get_classifier(model), loader, epochs=epochs, lr=recipe.lr,
        weight_decay=recipe.weight_decay, progress=False)
    return model


TRAINERS = {"scratch": train_scratch, "linear probe": train_linear_probe,
            "fine-tune": train_fine_tune}


def accuracy_of(method: str, train: TensorDataset, test: TensorDataset, seed: int = 0,
                recipe: Recipe | None = None) -> float:
    """Train with `method` on `train` and return its accuracy on `test`."""
    if method not in TRAINERS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    model = TRAINERS[method](train, recipe or RECIPES[method], seed)
    return evaluate(model, None, TensorLoader(test, 1024))["accuracy"]


def data_efficiency(ks=(1, 2, 5, 10, 20, 50), seeds=(0, 1, 2), methods=METHODS,
                    progress: bool = True) -> dict[str, dict[int, list[float]]]:
    """Handwritten-digit test accuracy for each method, labels per class k and seed.

    Returns {method: {k: [accuracy per seed]}}, ready for `plot_data_efficiency`. The same
    k-per-class subset of the training split is used by every method for a given seed.
    """
    train_pool, test = load_handwritten()
    results = {m: {k: [] for k in ks} for m in methods}
    runs = list(itertools.product(ks, seeds, methods))
    for k, seed, method in tqdm(runs, desc="runs", disable=not progress):
        train = few_shot_subset(train_pool, k, seed)
        results[method][k].append(accuracy_of(method, train, test, seed))
    return results


def tune(method: str, ks=(1, 3, 10), seeds=(0, 1), lrs=(3e-4, 1e-3, 3e-3, 1e-2),
         steps=(150, 300), augments=(False, True)) -> tuple[Recipe, dict]:
    """Grid-search a recipe on a validation split of the training pool; returns (best, scores).

    The k labels per class come from the tuning half of the pool and are scored on the other
    half, so the test split is never seen.
    """
    train_pool, _ = load_handwritten()
    fit_pool, val = train_val_split(train_pool, val_fraction=0.5, seed=0)
    base = RECIPES[method]
    scores = {}
    for lr, n_steps, augment in itertools.product(lrs, steps, augments):
        recipe = replace(base, lr=lr, steps=n_steps, augment=augment)
        accs = [accuracy_of(method, few_shot_subset(fit_pool, k, s), val, s, recipe)
                for k in ks for s in seeds]
        scores[recipe] = sum(accs) / len(accs)
    return max(scores, key=scores.get), scores


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tune", action="store_true", help="re-run the recipe search")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3, 5, 10, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    if args.tune:
        for method in METHODS:
            best, scores = tune(method)
            print(f"{method}: best {best} (validation accuracy {scores[best]:.3f})")
        return
    results = data_efficiency(args.ks, args.seeds)
    print("k   " + "".join(f"{m:>15}" for m in METHODS))
    for k in args.ks:
        print(f"{k:<4}" + "".join(f"{sum(results[m][k]) / len(results[m][k]):>15.3f}"
                                  for m in METHODS))


if __name__ == "__main__":
    main()
