"""The search behind section 8.1's recipes: fine-tuning the top of EfficientNet-Lite0 and training
the SmallCNN from scratch on Fashion-MNIST, each over its own grid and for each number of labels
per class the section trains at (k = 1 and 10), scored on the validation photos (never the test
split), 3 seeds; the trainings run in one single-thread process per core.

    .venv/bin/python benchmarks/tune_photos.py            # about 25 minutes on 2 cores

It prints every score and, for each method and k, its choice (the fewest steps within half a
point of the best score); section 8.1 uses those settings. At k = 10 scratch's best lies at the
most steps tried (1,200, about half a minute of CPU per training): too slow for the section's
budget, so the section trains scratch at k = 1 only, and says so.
"""
from __future__ import annotations

import argparse
import itertools
from dataclasses import replace

import numpy as np

import tlutils
from tlutils.cached import cached_outputs, fine_tune_top
from tlutils.fewshot import RECIPES, cheapest_near_best, on_edge, run_parallel, train_scratch, usable_cores

CUT = "blocks.6"   # fine-tuning trains this stage and everything above it (section 8.1)
# (lr, steps) settings tried, per method, and for fine-tuning the points beyond the grid's edge
# where a k's first choice lay on it (none scored higher: they bracket it)
FT_GRID = list(itertools.product((1e-4, 3e-4, 1e-3, 3e-3), (30, 60, 120, 240)))
FT_BEYOND = {1: [(1e-2, 60), (1e-2, 120), (1e-2, 240), (3e-3, 480)],
             10: [(3e-5, 120), (3e-5, 240), (3e-5, 480), (1e-4, 480)]}
SCRATCH_GRID = list(itertools.product((1e-2, 3e-2, 1e-1, 3e-1), (150, 300, 600, 1200)))


def splits():
    """Section 8.1's draw pool and validation photos (50 and 20 per class, disjoint)."""
    train, _ = tlutils.load_fashion_mnist()
    return tlutils.train_val_split(tlutils.few_shot_subset(train, 70, seed=0), val_fraction=2 / 7, seed=0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--methods", nargs="+", default=["fine-tune top", "scratch"],
                        choices=["fine-tune top", "scratch"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    pool, val = splits()
    model = tlutils.load_pretrained("tf_efficientnet_lite0", weights="IMAGENET1K")
    bottom, top = tlutils.split_model(model, CUT)
    prepare = tlutils.get_weights("tf_efficientnet_lite0").transforms(64)
    lower_pool, lower_val = (cached_outputs(bottom, d, prepare) for d in (pool, val))

    def score(method, k, seed, lr, steps):
        """Validation accuracy of one training (every job seeds itself, so any process may run it)."""
        if method == "fine-tune top":
            net = fine_tune_top(top, tlutils.few_shot_subset(lower_pool, k, seed), seed,
                                num_classes=10, lr=lr, steps=steps)
            return tlutils.accuracy_on(net, lower_val)
        recipe = replace(RECIPES["scratch"], lr=lr, steps=steps)
        return tlutils.accuracy_on(train_scratch(tlutils.few_shot_subset(pool, k, seed), seed,
                                                 recipe=recipe), val)

    grids = {(m, k): grid + (FT_BEYOND.get(k, []) if m == "fine-tune top" else [])
             for m, grid in (("fine-tune top", FT_GRID), ("scratch", SCRATCH_GRID))
             if m in args.methods for k in args.ks}
    jobs = [(method, k, seed, lr, steps) for (method, k), grid in grids.items()
            for lr, steps in grid for seed in args.seeds]
    jobs.sort(key=lambda job: -job[4])   # the longest first, so that the processes end together
    results = dict(zip(jobs, run_parallel(score, jobs, workers=usable_cores(), desc="trainings")))
    for (method, k), grid in grids.items():
        scores = {(("lr", lr), ("steps", steps)): float(np.mean([results[method, k, s, lr, steps]
                                                                  for s in args.seeds]))
                  for lr, steps in grid}
        for ((_, lr), (_, steps)), value in scores.items():
            print(f"{method:14s} k {k:2d} lr {lr:g} steps {steps:4d}: validation accuracy "
                  f"{100 * value:.1f}%")
        choice = dict(cheapest_near_best(scores))
        edges = on_edge(choice, [{"lr": lr, "steps": steps} for lr, steps in grid])
        print(f"{method}, k = {k}: best lr {choice['lr']:g}, steps {choice['steps']}"
              + (f" (on the grid's edge in {', '.join(edges)}: extend the grid)" if edges else "")
              + "\n", flush=True)


if __name__ == "__main__":
    main()
