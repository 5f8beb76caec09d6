"""The search behind section 9.1's recipes: a learning rate for each way of fine-tuning MiniLM on the
reviews (a head alone on cached embeddings; LoRA, BitFit or every weight of the top two layers,
on the cached output of the frozen bottom four), scored on movie-grouped validation reviews, never
on the test split.

    .venv/bin/python benchmarks/tune_text.py            # a few minutes on 2 idle cores

The head's rate is chosen first (head alone); the three others then train their part at their own
rate, with the head at that rate. It prints every score and each method's choice, and says when a
choice lies on the edge of its grid; section 9.1 uses the choices.
"""
from __future__ import annotations

import argparse
import copy
import time
import warnings
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import tlutils
from tlutils import text
from tlutils.cached import fine_tune_top

# The setting of section 9.1 (keep the two in step)
MAX_LENGTH, CUT, K, STEPS, BATCH = 32, 4, 64, 20, 16
VAL_FRACTION, VAL_PER_CLASS = 0.2, 200
GRIDS = {
    "head only": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    "BitFit": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    "LoRA": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "full (top 2 layers)": (3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
}


def splits():
    """Section 9.1's pool to draw labels from and its validation reviews (other movies)."""
    rest, _ = text.split_by_group(text.load_reviews())
    pool, val = text.split_by_group(rest, VAL_FRACTION, seed=1)
    return pool, text.few_shot_texts(val, VAL_PER_CLASS, seed=0)


def tops(encoder) -> dict[str, nn.Module]:
    """Each method's trainable top, as section 9.1 builds it."""
    from peft import LoraConfig, get_peft_model

    top = text.TopClassifier(encoder, CUT, num_classes=2)
    bitfit = copy.deepcopy(top)
    for name, p in bitfit.named_parameters():
        p.requires_grad = name.endswith("bias") or name.startswith("head")
    lora = get_peft_model(copy.deepcopy(encoder), LoraConfig(
        r=8, lora_alpha=16, target_modules=["query", "value"], lora_dropout=0.0))
    head = nn.Sequential(OrderedDict(head=nn.Linear(encoder.config.hidden_size, 2)))
    return {"head only": head, "BitFit": bitfit,
            "LoRA": text.TopClassifier(lora, CUT, num_classes=2),
            "full (top 2 layers)": top}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", default=list(GRIDS))
    parser.add_argument("--head-lr", type=float, help="skip the head's search")
    args = parser.parse_args(argv)
    # peft 0.21 reads a transformers property that transformers 5 renamed: harmless
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)
    pool, val = splits()
    tokenizer, encoder = text.load_encoder()
    encoder.requires_grad_(True)
    print(f"{len(pool)} reviews to draw from, {len(val)} validation reviews (other movies); "
          f"k = {K} per class, {STEPS} steps of {BATCH}, max {MAX_LENGTH} tokens", flush=True)
    draws = {s: text.few_shot_texts(pool, K, seed=s) for s in args.seeds}
    frozen = text.TopClassifier(encoder, CUT, num_classes=2).eval()
    cache = {}
    with torch.no_grad():
        for key, data in [*((s, d) for s, d in draws.items()), ("val", val)]:
            hidden = text.hidden_states(encoder, tokenizer, data.texts, CUT, max_length=MAX_LENGTH)
            cache[key] = {"hidden": TensorDataset(hidden, data.labels),
                          "pooled": TensorDataset(frozen.embed(hidden), data.labels)}
    models = tops(encoder)
    head_lr = args.head_lr
    for name in args.methods:
        scores = {}
        feature = "pooled" if name == "head only" else "hidden"
        for lr in GRIDS[name]:
            start, accs = time.perf_counter(), []
            for s in args.seeds:
                mult = 1.0 if name == "head only" else head_lr / lr
                net = fine_tune_top(models[name], cache[s][feature], s, num_classes=2, lr=lr,
                                    steps=STEPS, head_lr_mult=mult, batch_size=BATCH)
                accs.append(tlutils.accuracy_on(net, cache["val"][feature], batch_size=256))
            scores[lr] = float(np.mean(accs))
            print(f"{name:20s} lr {lr:g}: validation accuracy {100 * scores[lr]:.1f}% "
                  f"({' '.join(f'{100 * a:.1f}' for a in accs)}; {time.perf_counter() - start:.0f} s)",
                  flush=True)
        best = max(scores, key=scores.get)
        edge = best in (min(GRIDS[name]), max(GRIDS[name]))
        print(f"{name}: best lr {best:g}" + (" (on the grid's edge: extend the grid)" if edge else "")
              + "\n", flush=True)
        if name == "head only":
            head_lr = best
        if head_lr is None:
            raise SystemExit("tune the head first, or pass --head-lr")


if __name__ == "__main__":
    main()
