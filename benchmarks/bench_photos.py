"""Fine-tuning on a folder of photos: tlutils' decode-once path against PyTorch's tutorial, side by side.

Both paths fine-tune the same ImageNet network (EfficientNet-Lite0, `tlutils.load_pretrained`) on
the same JPEG photos with the same preprocessing (the weights' `transforms()`), batch size,
optimizer (SGD with momentum 0.9, as the tutorial) and seed, in one process: epochs of fine-tuning
the whole network, then passes of feature extraction (the network below its classifier),
alternating the two paths; then epochs of fine-tuning only the top (blocks.6 up, as section 8.1
does) and of training a new head on the frozen network (the tutorial's "ConvNet as fixed feature
extractor"), the rest frozen, where tlutils runs the frozen bottom once and caches its outputs
(`tlutils.cached`). Each row prints its speed-up and whether it meets the target: where the
whole network trains, the network's own arithmetic is most of an epoch on both paths, so the
input pipeline and memory format alone cannot make it 3x faster.
- tlutils: `load_image_folder` decodes and preprocesses every photo once into one tensor, the model
  is channels-last (`to_device`), `TensorLoader` batches by indexing, `train_one_epoch` and
  `extract_features` run the loops.
- the tutorial's way (PyTorch's "Transfer Learning for Computer Vision Tutorial"): torchvision's
  `ImageFolder` decodes and transforms every photo again in every epoch, a `DataLoader` collates
  them (no workers by default: on a 2-core machine they compete with the model for the cores; the
  tutorial uses 4, try `--workers`), and a plain loop trains the model as it loads.
The photos are made from `tlutils.sample_photos()`: random crops and flips of one photo per class,
resized to a random long side (as varied as the tutorial's ants and bees) and written as JPEGs to a
temporary folder. `--folder` times your own folder instead (e.g. hymenoptera_data/train).

    python benchmarks/bench_photos.py                  # 96 photos, 4 classes, 3 epochs and passes
    python benchmarks/bench_photos.py --photos 256 --classes 7 --epochs 3
    python benchmarks/bench_photos.py --folder ~/data/hymenoptera_data/train --workers 4
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

import tlutils

MODEL = "tf_efficientnet_lite0"
TARGET = 3.0   # the target: tlutils at least 3x faster on a CPU


def write_photo_folder(folder: Path, photos: int, classes: int, sides: tuple[int, int],
                       seed: int) -> None:
    """`photos` JPEGs in `classes` class folders, each a random crop, flip and size of that
    class's sample photo."""
    from PIL import Image

    rng = random.Random(seed)
    sources = sorted(tlutils.sample_photos().items())[:classes]
    for i in range(photos):
        name, photo = sources[i % classes]
        w, h = photo.size
        cw, ch = round(w * rng.uniform(0.5, 1.0)), round(h * rng.uniform(0.5, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = photo.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        scale = rng.randint(*sides) / max(crop.size)
        crop = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.BICUBIC)
        (folder / name).mkdir(parents=True, exist_ok=True)
        crop.save(folder / name / f"{i:04d}.jpg", quality=90)
    return list(sources)


def tutorial_epoch(model, criterion, optimizer, loader) -> None:
    """The tutorial's training phase: decode as you go, running loss and correct counts."""
    model.train()
    running_loss, running_corrects = 0.0, 0
    for inputs, labels in loader:
        optimizer.zero_grad()
        with torch.set_grad_enabled(True):
            outputs = model(inputs)
            _, preds = torch.max(outputs, 1)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
        running_loss += loss.item() * inputs.size(0)
        running_corrects += torch.sum(preds == labels.data)


def tutorial_features(backbone, loader) -> torch.Tensor:
    """A plain feature-extraction loop: eval mode, no gradients, decode as you go."""
    backbone.eval()
    with torch.no_grad():
        return torch.cat([backbone(inputs).flatten(1) for inputs, _ in loader])


def warm_up(model: nn.Module, batch: torch.Tensor) -> None:
    """One untimed forward and backward pass, so that both paths are timed after oneDNN has made
    its kernels for this shape and memory format (the first pass of a model costs seconds)."""
    model.train()
    model(batch).sum().backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        model(batch)


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def model_and_optimizer(num_classes: int, seed: int, batch: torch.Tensor, channels_last: bool):
    tlutils.set_seed(seed)   # the same new head for both paths
    model = tlutils.load_pretrained(MODEL, weights="IMAGENET1K", num_classes=num_classes)
    model = tlutils.to_device(model, "cpu") if channels_last else model
    warm_up(model, batch)
    return model, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)


def time_both_paths(photos, folder_dataset, args) -> dict[str, tuple[list, list]]:
    """Seconds of each epoch and feature pass, (tutorial, tlutils), the two paths alternating so
    that a busy machine slows both alike; "loading" is the tutorial's DataLoader alone."""
    criterion = nn.CrossEntropyLoss()
    batch = photos.tensors[0][:args.batch_size]
    ours, our_opt = model_and_optimizer(len(photos.classes), args.seed, batch, channels_last=True)
    theirs, their_opt = model_and_optimizer(len(photos.classes), args.seed, batch, channels_last=False)
    our_train = tlutils.TensorLoader(photos, args.batch_size, shuffle=True, seed=args.seed)
    our_features = tlutils.TensorLoader(photos, args.batch_size)
    their_train = DataLoader(folder_dataset, args.batch_size, shuffle=True, num_workers=args.workers)
    their_features = DataLoader(folder_dataset, args.batch_size, num_workers=args.workers)
    our_backbone, their_backbone = (tlutils.split_model(m, "classifier")[0] for m in (ours, theirs))
    times = {"train": ([], []), "features": ([], [])}
    for _ in range(args.epochs):
        times["train"][0].append(timed(lambda: tutorial_epoch(theirs, criterion, their_opt, their_train)))
        times["train"][1].append(timed(lambda: tlutils.train_one_epoch(
            ours, criterion, our_opt, our_train, progress=False)))
    for _ in range(args.epochs):
        times["features"][0].append(timed(lambda: tutorial_features(their_backbone, their_features)))
        times["features"][1].append(timed(lambda: tlutils.extract_features(our_backbone, our_features)))
    for task, cut in (("top", "blocks.6"), ("frozen", "classifier")):
        times[task] = time_cached_bottom(photos, their_train, cut, criterion, args)
    times["loading"] = ([timed(lambda: [None for _ in their_features])], [])
    return times


def time_cached_bottom(photos, their_train, cut: str, criterion, args) -> tuple[list, list]:
    """Epochs of training only the layers from `cut` up, the rest frozen with BatchNorm in eval
    mode: "classifier" is the tutorial's "ConvNet as fixed feature extractor" (a new head on the
    frozen network), "blocks.6" what section 8.1 fine-tunes. The tutorial's way runs the whole
    network forward in every epoch; tlutils runs the frozen bottom once (`cached_outputs`, timed
    in its first epoch) and trains the top on its cached outputs. Both train the same parameters
    from the same values, with the same optimizer."""
    from tlutils.cached import cached_outputs

    batch = photos.tensors[0][:args.batch_size]
    models = [model_and_optimizer(len(photos.classes), args.seed, batch, channels_last=cl)[0]
              for cl in (False, True)]
    theirs, (bottom, top) = models[0], tlutils.split_model(models[1], cut)
    tlutils.freeze(theirs)
    tlutils.unfreeze(theirs, list(tlutils.split_model(theirs, cut)[1]))
    for model in (theirs, top):
        tlutils.freeze_batch_norm(model)
    their_opt, our_opt = (torch.optim.SGD(tlutils.trainable_parameters(m), lr=1e-3, momentum=0.9)
                          for m in (theirs, top))
    times = ([], [])
    for epoch in range(args.epochs):
        times[0].append(timed(lambda: tutorial_epoch(theirs, criterion, their_opt, their_train)))
        start = time.perf_counter()
        if epoch == 0:
            cache = cached_outputs(bottom, photos)
        tlutils.train_one_epoch(top, criterion, our_opt, tlutils.TensorLoader(
            cache, args.batch_size, shuffle=True, seed=args.seed + epoch), progress=False)
        times[1].append(time.perf_counter() - start)
    return times


def print_report(times: dict, decode: float, epochs: int) -> None:
    """Side by side: the first epoch (tlutils' with its one-time decode), then the later ones."""
    loading, last_epoch = times["loading"][0][0], times["train"][0][-1]
    print(f"  tlutils.load_image_folder decodes and preprocesses them once: {decode:.2f} s; the "
          f"tutorial's DataLoader alone takes {loading:.2f} s a pass ({100 * loading / last_epoch:.0f}% "
          f"of its last epoch: the rest is the model, in the default memory format)")
    print(f"  {'':<72}{'tutorial':>10}{'tlutils':>10}{'speed-up':>10}")
    met, missed = [], []
    for task, label in (("train", "epoch, whole network trained"), ("features", "feature-extraction pass"),
                        ("top", "epoch, blocks.6 up trained (8.1)"), ("frozen", "epoch, new head only")):
        theirs, ours = times[task]
        rows = [(f"first {label}", ", tlutils incl. decode" + (" and cache" if task in ("top", "frozen") else ""),
                 theirs[0], decode + ours[0])]
        if epochs > 1:
            rows.append((f"later {label}", f" (mean of {epochs - 1})",
                         sum(theirs[1:]) / (epochs - 1), sum(ours[1:]) / (epochs - 1)))
        for name, note, a, b in rows:
            (met if a / b >= TARGET else missed).append(f"{name} ({a / b:.2f}x)")
            print(f"  {name + note:<72}{a:9.2f}s{b:9.2f}s{a / b:9.2f}x")
    print(f"  target, at least {TARGET:.0f}x on a CPU: met by {'; '.join(met) or 'none'}")
    print(f"  not met by {'; '.join(missed) or 'none'}")


def compare(folder: Path, args) -> None:
    """Decode the folder once for tlutils, check both paths see the same tensors, time, report."""
    preprocess = tlutils.get_weights(MODEL).transforms(args.resolution)
    decode = time.perf_counter()
    photos = tlutils.load_image_folder(folder, transform=preprocess)
    decode = time.perf_counter() - decode
    folder_dataset = ImageFolder(str(folder), transform=preprocess)
    if [Path(f) for f, _ in folder_dataset.samples] != photos.files or \
            not torch.equal(folder_dataset[0][0], photos.tensors[0][0]):
        raise RuntimeError("the two paths do not see the same photos in the same order")
    print(f"{len(photos)} photos in {len(photos.classes)} classes ({', '.join(photos.classes)}), "
          f"{MODEL} at {args.resolution}x{args.resolution}, batch {args.batch_size}, "
          f"{args.workers} DataLoader workers")
    print_report(time_both_paths(photos, folder_dataset, args), decode, args.epochs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=96, help="photos to write (without --folder)")
    parser.add_argument("--classes", type=int, default=4, choices=range(2, 8),
                        help="classes, one per sample photo (without --folder)")
    parser.add_argument("--sides", type=int, nargs=2, default=(240, 640), metavar=("MIN", "MAX"),
                        help="range of the photos' long side in pixels (without --folder)")
    parser.add_argument("--folder", type=Path, help="time this ImageFolder-style folder instead")
    parser.add_argument("--epochs", type=int, default=3, help="epochs, and feature passes, per path")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--workers", type=int, default=0, help="the tutorial's DataLoader workers")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.photos < args.classes:
        parser.error("--epochs must be >= 1 and --photos at least --classes")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu, load average "
          f"{os.getloadavg()[0]:.1f} (other processes on the cores make every time longer)")
    if args.folder is not None:
        compare(args.folder, args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_photo_folder(Path(tmp), args.photos, args.classes, tuple(args.sides), args.seed)
        print(f"photo folder: {args.photos} JPEGs of random crops, flips and sizes (long side "
              f"{args.sides[0]}-{args.sides[1]} px) of tlutils.sample_photos(), written to {tmp}")
        compare(Path(tmp), args)


if __name__ == "__main__":
    main()
