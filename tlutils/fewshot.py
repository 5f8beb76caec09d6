"""Few-shot transfer experiments: scratch vs linear probe vs fine-tuning with k labels per class.

Chapter 4's data-efficiency curve and comparison of strategies, and the checks on the shipped
model, all run through here, so each method gets one honest recipe. Every method was tuned with the
same care: its own grid, reaching past its choice on every side, scored on a validation split
carved from the *training* pool (never the test split) by `python -m tlutils.fewshot --tune`.
Trainings are independent and seed themselves, so `run_parallel` can spread them over processes.
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing import get_context

import cloudpickle
import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from .data import RandomAffineBatch, TensorLoader, few_shot_subset, load_handwritten, train_val_split
from .freezing import freeze, unfreeze
from .models import SHIPPED, SmallCNN, get_classifier, get_stages, load_pretrained, reset_classifier
from .optim import adamw, param_groups_discriminative
from .probe import as_linear, fit_probe
from .train import History, accuracy_on, extract_features, fit, set_seed, to_device

METHODS = ("scratch", "linear probe", "fine-tune")   # the three curves of chapter 4's central plot


@dataclass(frozen=True)
class Recipe:
    """How one method trains: peak learning rate, optimizer steps, batch size, augmentation."""
    lr: float
    steps: int
    augment: bool
    batch_size: int = 16
    weight_decay: float = 1e-4
    head_lr_mult: float = 10.0   # fine-tuning only: a new head learns this much faster


# Chosen with `tune` on a validation split of the training pool (k = 1, 3 and 10, seeds 0 and 1),
# each method over its own grid (`TUNING_GRIDS`), at the batch size it trains with. A setting is
# replaced only when it scores more than half a point below the best of its grid (less is noise
# at 6 runs a setting), and then by `cheapest_near_best`. `python -m tlutils.fewshot --tune`
# re-runs the search and says, for each method, whether its setting stays.
RECIPES = {
    "scratch": Recipe(lr=1e-2, steps=600, augment=True),
    "fine-tune": Recipe(lr=3e-3, steps=300, augment=True),
    "fine-tune, new head": Recipe(lr=3e-3, steps=150, augment=True),
    "LP-FT": Recipe(lr=3e-3, steps=300, augment=True),
    "gradual unfreezing": Recipe(lr=1e-3, steps=300, augment=True),
}
PROBE_C = 0.1   # the linear probe's inverse L2 strength (tlutils.probe), chosen by the same search


# A trainer: (labelled images, seed) -> a trained model. Every trainer below has this signature
# (their other parameters are keyword-only), and so may any function a chapter writes.
Trainer = Callable[[TensorDataset, int], nn.Module]


def _loader(train: TensorDataset, recipe: Recipe, seed: int) -> TensorLoader:
    """A shuffling loader of `recipe`'s batch size (at most the whole set), augmented if asked."""
    return TensorLoader(train, min(recipe.batch_size, len(train)), shuffle=True, seed=seed,
                        transform=RandomAffineBatch() if recipe.augment else None)


def _train_all(model: nn.Module, train: TensorDataset, recipe: Recipe, seed: int,
               head_lr_mult: float) -> nn.Module:
    """Train every trainable parameter of `model` with `recipe`, the head `head_lr_mult` x faster."""
    optimizer = adamw(param_groups_discriminative(model, recipe.lr, head_lr_mult, recipe.weight_decay))
    fit(model, _loader(train, recipe, seed), steps=recipe.steps, optimizer=optimizer, progress=False)
    return model


def unfreeze_top(model: nn.Module, n_blocks: int) -> nn.Module:
    """Freeze a model's stages (`get_stages`; BatchNorm included), then let the top `n_blocks` train.

    The head always trains, even if it was frozen before, so the function can be called again with
    another `n_blocks` (gradual unfreezing does). `n_blocks=0` is a linear probe and 5 is full
    fine-tuning; in between, the blocks next to the output train and those next to the input stay
    frozen (chapter 4; problem set 4 asks you to write it).
    """
    blocks = get_stages(model)
    if not 0 <= n_blocks <= len(blocks):
        raise ValueError(f"n_blocks must be between 0 and {len(blocks)}, got {n_blocks}")
    freeze(model, blocks)
    return unfreeze(model, blocks[len(blocks) - n_blocks:] + [get_classifier(model)])


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


def train_scratch(train: TensorDataset, seed: int = 0, *, recipe: Recipe = RECIPES["scratch"],
                  num_classes: int = 10) -> nn.Module:
    """A randomly initialised SmallCNN trained on `train` alone: the baseline transfer must beat."""
    set_seed(seed)
    model = SmallCNN(num_classes=num_classes)
    fit(model, _loader(train, recipe, seed), steps=recipe.steps, lr=recipe.lr,
        weight_decay=recipe.weight_decay, progress=False)
    return model


def train_fine_tune(train: TensorDataset, seed: int = 0, *, recipe: Recipe = RECIPES["fine-tune"],
                    num_classes: int = 10, source: str = SHIPPED, new_head: bool = False) -> nn.Module:
    """The pretrained model `source` with every layer trained.

    The pretrained head is kept unless `new_head`: for digits -> digits it already maps features
    to the right classes, and keeping it is what lets a single label per class work (chapter 4
    compares both). A target with other classes needs `new_head=True`. A new head learns
    `head_lr_mult` x faster than the body; a kept one at the body's rate.
    """
    set_seed(seed)
    model = load_pretrained(source)
    if not new_head and get_classifier(model).out_features != num_classes:
        raise ValueError(f"cannot keep the head of {source!r}: it has {get_classifier(model).out_features} "
                         f"outputs, the target {num_classes}; pass new_head=True")
    if new_head:
        reset_classifier(model, num_classes)
    return _train_all(model, train, recipe, seed, recipe.head_lr_mult if new_head else 1.0)


def fit_probe_head(model: nn.Module, train: TensorDataset, C: float | None = None) -> nn.Module:
    """Make `model`'s head the linear probe of `tlutils.probe` (L2-regularised logistic regression
    by L-BFGS, inverse strength `C`, by default the tuned `PROBE_C`) fitted on the features of
    `model.features`, computed once; returns `model`. Its backbone should be frozen."""
    features = extract_features(model.features, TensorLoader(train, 1024))
    head = as_linear(fit_probe(features, PROBE_C if C is None else C))
    classifier = get_classifier(model)
    if head.out_features != classifier.out_features:
        raise ValueError(f"the probe saw {head.out_features} classes, the head has {classifier.out_features}")
    classifier.load_state_dict(head.state_dict())
    return model


def train_linear_probe(train: TensorDataset, seed: int = 0, *, C: float | None = None,
                       num_classes: int = 10, source: str = SHIPPED) -> nn.Module:
    """The pretrained model `source` frozen (BatchNorm included) under a new head fitted by
    `fit_probe_head`. Convex, so `seed` changes nothing; it is taken so that the probe is a
    trainer like the others."""
    model = to_device(reset_classifier(load_pretrained(source), num_classes))  # whole, on one device
    return fit_probe_head(freeze(model, ["features"]), train, C)


def train_lp_ft(train: TensorDataset, seed: int = 0, *, recipe: Recipe = RECIPES["LP-FT"],
                num_classes: int = 10, source: str = SHIPPED) -> nn.Module:
    """Probe, then fine-tune (LP-FT): the tuned linear probe, then `recipe` on every layer.

    The probed head already fits, so, like a kept head, it trains at the body's rate.
    """
    model = train_linear_probe(train, seed=seed, num_classes=num_classes, source=source)
    set_seed(seed)
    unfreeze(model)
    return _train_all(model, train, recipe, seed, head_lr_mult=1.0)


def train_gradual_unfreezing(train: TensorDataset, seed: int = 0, *,
                             recipe: Recipe = RECIPES["gradual unfreezing"], num_classes: int = 10,
                             source: str = SHIPPED) -> nn.Module:
    """ULMFiT's gradual unfreezing: a new head first, then one more block per stage, top down.

    One optimizer and one one-cycle schedule span the whole run (ULMFiT runs one per stage, with
    learning rates divided by 2.6 per layer). The epochs, about `recipe.steps` steps and at least
    one per stage, are split into equal stages, and at the start of each the next block down is
    unfrozen. A frozen parameter has no gradient, so AdamW
    leaves it alone (weight decay included) until its stage.
    """
    set_seed(seed)
    model = to_device(reset_classifier(load_pretrained(source), num_classes))
    n_stages = 1 + len(get_stages(model))
    loader = _loader(train, recipe, seed)
    epochs = max(math.ceil(recipe.steps / len(loader)), n_stages)
    optimizer = adamw(param_groups_discriminative(   # every parameter, frozen later
        model, recipe.lr, recipe.head_lr_mult, recipe.weight_decay))

    def unfreeze_stage(epoch):   # stages 0, 0, ..., 1, 1, ..., n_stages - 1 (unfreeze_top is idempotent)
        unfreeze_top(model, (epoch - 1) * n_stages // epochs)

    fit(model, loader, epochs=epochs, optimizer=optimizer, progress=False, before_epoch=unfreeze_stage)
    return model.eval()


TRAINERS: dict[str, Trainer] = {
    "scratch": train_scratch,
    "linear probe": train_linear_probe,
    "fine-tune": train_fine_tune,
    "fine-tune, new head": partial(train_fine_tune, new_head=True, recipe=RECIPES["fine-tune, new head"]),
    "LP-FT": train_lp_ft,
    "gradual unfreezing": train_gradual_unfreezing,
}


def trainers_for(methods: Iterable[str] | Mapping[str, Trainer]) -> dict[str, Trainer]:
    """{name: trainer} for `methods`: names of TRAINERS, or a mapping of names to any trainers
    (functions of (train, seed), e.g. lambdas written in a notebook), used as given."""
    if isinstance(methods, Mapping):
        return dict(methods)
    unknown = [m for m in methods if m not in TRAINERS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {tuple(TRAINERS)}, or pass "
                         "a dict of names to trainer functions")
    return {m: TRAINERS[m] for m in methods}


def accuracy_of(trainer: str | Trainer, train: TensorDataset, test: TensorDataset,
                seed: int = 0) -> float:
    """Train with `trainer` (a TRAINERS name or a trainer function) on `train`; its accuracy on `test`."""
    if isinstance(trainer, str):
        trainer = trainers_for([trainer])[trainer]
    return accuracy_on(trainer(train, seed), test)


def few_shot_accuracy(trainer: str | Trainer, k: int, seed: int) -> float:
    """Handwritten test accuracy of `trainer` trained on `k` labels per class (seed `seed`)."""
    train_pool, test = load_handwritten()
    return accuracy_of(trainer, few_shot_subset(train_pool, k, seed), test, seed)


def _few_shot_accuracy_by_name(trainers: dict[str, Trainer], method: str, k: int, seed: int) -> float:
    return few_shot_accuracy(trainers[method], k, seed)


def _few_shot_state(trainers: dict[str, Trainer], method: str, k: int, seed: int) -> dict:
    """The state_dict of `method` trained on `k` handwritten labels per class: plain tensors,
    cheap to send back from the processes of `run_parallel`."""
    train_pool, _ = load_handwritten()
    model = trainers[method](few_shot_subset(train_pool, k, seed), seed)
    return {name: t.cpu() for name, t in model.state_dict().items()}


def _small_cnn(state: dict) -> SmallCNN:
    """A SmallCNN holding `state`, its shape read from the state itself (any widths and
    classes), in eval mode (frozen or not, as any fresh model)."""
    convs = [state[f"{stage}.0.weight"] for stage in SmallCNN.stages]
    model = SmallCNN(num_classes=state["classifier.weight"].shape[0],
                     in_channels=convs[0].shape[1], widths=tuple(w.shape[0] for w in convs))
    model.load_state_dict(state)
    return model.eval()


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _call_pickled(fn_bytes: bytes, args: tuple):
    """Run a cloudpickled function in a worker process (see `run_parallel`)."""
    return cloudpickle.loads(fn_bytes)(*args)


def run_parallel(fn, jobs, workers: int | None = 1, progress: bool = True, desc: str = "runs"):
    """`[fn(*job) for job in jobs]`, spread over `workers` processes (None: one per core).

    Each process runs one torch thread: the networks are small, so two processes on two cores do
    more work than one process with two threads. `fn` travels by cloudpickle, so it may be defined
    in a notebook. Trainings seed themselves, so a result does not depend on which process ran it;
    with `workers=1` everything runs here, in this process's thread count, which can change
    results in the last bits.
    """
    jobs = [tuple(job) for job in jobs]
    workers = usable_cores() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1 (or None for one per core), got {workers}")
    if workers == 1 or len(jobs) <= 1:
        return [fn(*job) for job in tqdm(jobs, desc=desc, disable=not progress)]
    fn_bytes = cloudpickle.dumps(fn)
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = [pool.submit(_call_pickled, fn_bytes, job) for job in jobs]
        return [f.result() for f in tqdm(futures, desc=desc, disable=not progress)]


def few_shot_models(jobs, methods=TRAINERS, workers: int | None = 1,
                    progress: bool = True) -> dict[tuple, nn.Module]:
    """Train every `(method, k, seed)` of `jobs` on `k` handwritten labels per class.

    Returns {job: model}, the models on the CPU in eval mode. The same k-per-class subset of the
    training split is used by every method for a given k and seed; `methods` as in
    `trainers_for`, `workers` as in `run_parallel`.
    """
    jobs = [tuple(job) for job in jobs]
    trainers = trainers_for(methods)
    states = run_parallel(partial(_few_shot_state, trainers), jobs, workers, progress)
    return {job: _small_cnn(state) for job, state in zip(jobs, states)}


def grid_jobs(ks, seeds, methods: Iterable[str] = METHODS) -> list[tuple[str, int, int]]:
    """Every (method, k, seed), largest k first: the longest trainings start first, so that
    parallel processes finish together."""
    return [(m, k, s) for k in sorted(ks, reverse=True) for s in seeds for m in methods]


def data_efficiency(ks=(1, 2, 5, 10, 20, 50), seeds=(0, 1, 2), methods=METHODS,
                    progress: bool = True, workers: int | None = 1) -> dict[str, dict[int, list[float]]]:
    """Handwritten-digit test accuracy for each method, labels per class k and seed.

    `methods`: names of TRAINERS, or a dict of names to trainer functions (`trainers_for`).
    Returns {method: {k: [accuracy per seed]}}, ready for `plot_data_efficiency`. Each process
    scores its own models, so only the accuracies travel back.
    """
    trainers = trainers_for(methods)
    jobs = grid_jobs(ks, seeds, trainers)
    scores = run_parallel(partial(_few_shot_accuracy_by_name, trainers), jobs, workers, progress)
    accuracy = dict(zip(jobs, scores))
    return {m: {k: [accuracy[m, k, s] for s in seeds] for k in ks} for m in trainers}


def tuning_split() -> tuple[TensorDataset, TensorDataset]:
    """The two halves of the handwritten training pool that `tune` draws labels from and scores
    on (the test split is never seen)."""
    train_pool, _ = load_handwritten()
    return train_val_split(train_pool, val_fraction=0.5, seed=0)


def _recipe_grid(method: str, lrs, steps) -> list[dict]:
    return [{"recipe": replace(RECIPES[method], lr=lr, steps=n)} for lr, n in itertools.product(lrs, steps)]


# What `tune` tries for each method: learning rates and steps for the trained ones (augmentation
# on, which an earlier search over both preferred for scratch and fine-tuning alike), the strength
# of the L2 penalty for the probe. Each grid reaches past its method's choice on every side.
TUNING_GRIDS = {
    "linear probe": [{"C": C} for C in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)],
    "scratch": _recipe_grid("scratch", lrs=(3e-3, 1e-2, 3e-2, 1e-1), steps=(300, 600, 1200)),
    **{method: _recipe_grid(method, lrs=(1e-3, 3e-3, 1e-2), steps=(150, 300, 600))
       for method in ("fine-tune", "fine-tune, new head", "LP-FT")},
    "gradual unfreezing": _recipe_grid("gradual unfreezing", lrs=(3e-4, 1e-3, 3e-3, 1e-2),
                                       steps=(150, 300, 600)),
}


def _tuning_score(method: str, setting: tuple, k: int, seed: int) -> float:
    """Validation accuracy of `method` with `setting` ((name, value) pairs of its trainer's
    keywords) trained on k labels per class of the tuning half of the pool."""
    fit_pool, val = tuning_split()
    trainer = partial(TRAINERS[method], **dict(setting))
    return accuracy_of(trainer, few_shot_subset(fit_pool, k, seed), val, seed)


def _cost(setting: dict) -> int:
    """A setting's training steps (none for the probe)."""
    return _knobs(setting).get("steps", 0)


NOISE = 0.005   # half a point of validation accuracy: smaller differences between settings are noise


def cheapest_near_best(scores: dict, tolerance: float = NOISE):
    """The setting with the least training (fewest steps) among those within `tolerance` (half a
    point) of the best validation score: differences that small are noise, and compute is not.
    `scores` maps settings, tuples of (name, value) pairs (a recipe, or knobs such as lr, steps
    and C), to scores."""
    best = max(scores.values())
    return min((key for key, score in scores.items() if score >= best - tolerance),
               key=lambda key: (_cost(dict(key)), -scores[key]))


def _knobs(setting: dict) -> dict:
    """A setting's tuned values by name: lr and steps of a recipe, or the setting itself."""
    if "recipe" in setting:
        return {"lr": setting["recipe"].lr, "steps": setting["recipe"].steps}
    return dict(setting)


def on_edge(choice: dict, grid: list[dict]) -> list[str]:
    """The knobs (lr, steps, C) at which `choice` lies on `grid`'s edge: the smallest or largest
    value tried (for steps, only the most), where the optimum may lie beyond the grid."""
    tried = [_knobs(setting) for setting in grid]
    edges = []
    for name, value in _knobs(choice).items():
        values = {knobs[name] for knobs in tried}
        if len(values) > 1 and (value == max(values) or (name != "steps" and value == min(values))):
            edges.append(name)
    return edges


def current_setting(method: str) -> tuple:
    """The setting the book trains `method` with, in `tune`'s form."""
    return (("C", PROBE_C),) if method == "linear probe" else (("recipe", RECIPES[method]),)


def verdict_on_current(method: str, scores: dict, tolerance: float = NOISE) -> str:
    """Whether the book's setting for `method` stays: it does unless it scores more than
    `tolerance` (half a point) below the best of `tune`'s scores, since smaller differences are
    noise; a setting that is replaced gives way to `cheapest_near_best`."""
    current, best = current_setting(method), max(scores.values())
    if current not in scores:
        return f"the book's setting {_knobs(dict(current))} is not in the grid"
    gap = best - scores[current]
    return (f"the book's setting {_knobs(dict(current))} scores {100 * scores[current]:.2f}%, "
            f"{100 * gap:.2f} points below the best: " + ("keep it" if gap <= tolerance else "replace it"))


def tune(methods: Iterable[str] = tuple(TUNING_GRIDS), ks=(1, 3, 10), seeds=(0, 1),
         grids: Mapping[str, list[dict]] = TUNING_GRIDS, workers: int | None = 1,
         progress: bool = True) -> dict[str, tuple[dict, dict]]:
    """Grid-search each method's settings on a validation split of the training pool.

    The k labels per class come from the tuning half of the pool and are scored on the other
    half, so the test split is never seen. Every (setting, k, seed) is one job of `run_parallel`.
    Returns {method: (choice, {setting: mean validation accuracy})}, settings as tuples of
    (keyword, value) pairs of the method's trainer, the choice by `cheapest_near_best`.
    """
    methods = list(methods)
    unknown = [m for m in methods if m not in grids]
    if unknown:
        raise ValueError(f"no tuning grid for {unknown}; grids exist for {tuple(grids)}")
    settings = {m: [tuple(sorted(setting.items())) for setting in grids[m]] for m in methods}
    jobs = [(m, setting, k, seed) for m in methods for setting in settings[m]
            for k in ks for seed in seeds]
    jobs.sort(key=lambda job: -_cost(dict(job[1])))   # the longest first, to finish together
    accuracy = dict(zip(jobs, run_parallel(_tuning_score, jobs, workers, progress, "tuning runs")))
    results = {}
    for m in methods:
        scores = {setting: sum(accuracy[m, setting, k, s] for k in ks for s in seeds) / (len(ks) * len(seeds))
                  for setting in settings[m]}
        results[m] = (dict(cheapest_near_best(scores)), scores)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tune", action="store_true", help="re-run the recipe search")
    parser.add_argument("--methods", nargs="+", default=None, help="methods (default: all)")
    parser.add_argument("--ks", type=int, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    args = parser.parse_args(argv)
    if args.tune:
        given = {name: value for name, value in (("ks", args.ks), ("seeds", args.seeds)) if value}
        results = tune(args.methods or tuple(TUNING_GRIDS), workers=args.workers, **given)
        for method, (choice, scores) in results.items():
            for setting, score in sorted(scores.items(), key=lambda item: -item[1]):
                print(f"{method}: {_knobs(dict(setting))} validation accuracy {100 * score:.2f}%")
            edges = on_edge(choice, TUNING_GRIDS[method])
            print(f"{method}: choice {_knobs(choice)}"
                  + (f" (on the grid's edge in {', '.join(edges)}: extend the grid)" if edges else ""))
            print(f"{method}: {verdict_on_current(method, scores)}\n", flush=True)
        return
    methods, ks = args.methods or METHODS, args.ks or [1, 2, 3, 5, 10, 20]
    results = data_efficiency(ks, args.seeds or [0, 1, 2], methods=methods, workers=args.workers)
    print("k   " + "".join(f"{m:>15}" for m in methods))
    for k in ks:
        print(f"{k:<4}" + "".join(f"{sum(results[m][k]) / len(results[m][k]):>15.3f}"
                                  for m in methods))


if __name__ == "__main__":
    main()
