"""Fine-tuning MiniLM on the reviews with tlutils' loop against Hugging Face's Trainer: training
throughput (examples per second) and peak memory, for full fine-tuning, LoRA (peft) and the head
alone.

    .venv/bin/python benchmarks/bench_text.py                 # about 3 minutes on 2 idle cores
    .venv/bin/python benchmarks/bench_text.py --steps 64 --max-length 64

Both train the same model (`tlutils.text.TextClassifier` on the packaged MiniLM, whose forward
Trainer gets through a thin wrapper that returns the cross-entropy loss) on the same balanced
reviews, for the same number of steps of the same batch size, texts cut at the same length, with
the same peak learning rate and AdamW (fused). Trainer keeps its defaults otherwise (linear decay,
no weight decay, batches drawn at random and padded to their longest text, full precision),
with `report_to="none"` and no checkpoints. tlutils runs `tlutils.fit` on `TokenLoader` batches
(grouped by length, so they pad little; one-cycle schedule; bf16 autocast on CUDA). Its head
alone trains on embeddings computed once (`tlutils.text.embed_texts`, counted in its time), where
Trainer runs the frozen encoder at every step.

Each configuration runs in its own process. Throughput is steps x batch / seconds of training
(model loaded, data tokenized). Memory is the growth of the process's peak resident memory
(`ru_maxrss`) over its value just before training, or, on a GPU, the allocator's peak during
training (`torch.cuda.max_memory_allocated`).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

CONFIGS = [(loop, method) for method in ("full", "LoRA", "head only")
           for loop in ("tlutils", "Trainer")]
LR = {"full": 5e-5, "LoRA": 1e-3, "head only": 1e-2}
MIB = 2 ** 20


def data(n_per_class: int, max_length: int, tokenizer):
    from tlutils import text

    train, _ = text.split_by_group(text.load_reviews())
    reviews = text.few_shot_texts(train, n_per_class, seed=0)
    return reviews, text.tokenize(tokenizer, reviews.texts, max_length)


def model_for(method: str, encoder):
    """The classifier each method trains, with its trainable parameters set."""
    from tlutils import text

    encoder = copy.deepcopy(encoder)
    if method == "LoRA":
        from peft import LoraConfig, get_peft_model

        encoder = get_peft_model(encoder, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                     target_modules=["query", "value"]))
    elif method == "head only":
        encoder.requires_grad_(False)
    encoder.pooler.requires_grad_(False)   # BERT's [CLS] layer: mean pooling never uses it
    return text.TextClassifier(encoder, num_classes=2)


def run_tlutils(method, model, reviews, ids, tokenizer, args, device) -> None:
    import torch
    from torch.utils.data import TensorDataset

    import tlutils
    from tlutils import text

    if method == "head only":   # what a practitioner does: embed once, train the head on that
        features = text.embed_texts(model.encoder.to(device), tokenizer, reviews.texts,
                                    max_length=args.max_length, progress=False)
        loader = tlutils.TensorLoader(TensorDataset(features, reviews.labels), args.batch_size,
                                      shuffle=True, seed=0)
        model = model.head
    else:
        loader = text.TokenLoader(ids, reviews.labels, args.batch_size, shuffle=True, seed=0)
    tlutils.fit(model, loader, steps=args.steps, lr=LR[method], weight_decay=0.0,
                device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_trainer(method, model, reviews, ids, tokenizer, args, device) -> None:
    import torch
    from torch import nn
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    class WithLoss(nn.Module):
        """The classifier, taking Trainer's batches and returning the loss Trainer minimises."""

        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, input_ids, labels=None, attention_mask=None):
            logits = self.classifier(input_ids)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = nn.functional.cross_entropy(logits, labels)
            return out

    dataset = [{"input_ids": i, "labels": int(y)} for i, y in zip(ids, reviews.labels.tolist())]
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
            learning_rate=LR[method], report_to="none", save_strategy="no",
            logging_strategy="no", disable_tqdm=True, use_cpu=device.type == "cpu")
        trainer = Trainer(model=WithLoss(model), args=training_args, train_dataset=dataset,
                          data_collator=DataCollatorWithPadding(tokenizer))
        trainer.train()
    if device.type == "cuda":
        torch.cuda.synchronize()


def child(loop: str, method: str, args) -> dict:
    """One configuration, in this process: load, measure the baseline, train, measure."""
    import torch
    from transformers.utils import logging as hf_logging

    import tlutils
    from tlutils import text

    # peft 0.21 reads a transformers property that transformers 5 renamed: harmless
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)
    hf_logging.set_verbosity_error()
    device = tlutils.get_device(args.device)
    tokenizer, encoder = text.load_encoder()
    reviews, ids = data(args.per_class, args.max_length, tokenizer)
    tlutils.set_seed(0)
    model = model_for(method, encoder)
    del encoder
    trainable = tlutils.count_parameters(model, trainable_only=True)
    if device.type == "cuda":
        model.to(device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux
    start = time.perf_counter()
    (run_tlutils if loop == "tlutils" else run_trainer)(method, model, reviews, ids, tokenizer,
                                                        args, device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        memory, memory_kind = torch.cuda.max_memory_allocated(), "CUDA max allocated"
    else:
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        memory, memory_kind = after - before, "peak RSS growth"
    return {"loop": loop, "method": method, "seconds": seconds, "trainable": trainable,
            "examples_per_s": args.steps * args.batch_size / seconds, "memory": memory,
            "memory_kind": memory_kind, "device": str(device), "threads": torch.get_num_threads()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--per-class", type=int, default=128, help="training reviews per class")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--run", nargs=2, metavar=("LOOP", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        print(json.dumps(child(*args.run, args)))
        return
    passed = [a for a in (argv if argv is not None else sys.argv[1:])]
    results = {}
    for loop, method in CONFIGS:
        proc = subprocess.run([sys.executable, __file__, *passed, "--run", loop, method],
                              capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            raise SystemExit(f"{loop} / {method} failed:\n{proc.stderr}")
        results[loop, method] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[loop, method]
        print(f"  ran {loop} / {method}: {r['seconds']:.1f} s", file=sys.stderr, flush=True)
    first = next(iter(results.values()))
    print(f"MiniLM on {args.per_class * 2} reviews, {args.steps} steps of {args.batch_size}, "
          f"max {args.max_length} tokens, {first['device']}, {first['threads']} threads; "
          f"memory = {first['memory_kind']}")
    print(f"{'method':<10} {'trainable':>11} {'loop':<8} {'examples/s':>10} {'memory MiB':>10}")
    for (loop, method), r in results.items():
        print(f"{method:<10} {r['trainable']:>11,} {loop:<8} {r['examples_per_s']:>10.1f} "
              f"{r['memory'] / MIB:>10.1f}")
    print("ratios tlutils / Trainer:")
    for method in LR:
        a, b = results["tlutils", method], results["Trainer", method]
        memory = f"{a['memory'] / b['memory']:.2f}x" if b["memory"] > 0 else "n/a"
        print(f"  {method:<10} throughput {a['examples_per_s'] / b['examples_per_s']:.2f}x, "
              f"memory {memory}")


if __name__ == "__main__":
    main()
