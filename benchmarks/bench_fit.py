"""tlutils.fit against a training loop written the way the seed articles write it, side by side.

Both train the same model on the same in-memory images for the same epochs, batch size and seed,
in one process. The seed-style loop keeps images as uint8 arrays in a per-sample Dataset that
applies torchvision's ToTensor and Normalize to each image (as the seeds' MNIST/ImageFolder code
does), batches them with the default DataLoader collate and moves every batch with `.to(device)`.
`tlutils.fit` normalises once, keeps the tensors in memory and batches by indexing.

    python benchmarks/bench_fit.py            # the seed 002 MLP on 28x28 and the SmallCNN on 16x16
    python benchmarks/bench_fit.py --epochs 3
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import transforms

import tlutils

MEAN, STD = 0.2, 0.3


class SeedStyleDataset(Dataset):
    """One uint8 image at a time through ToTensor + Normalize, like torchvision's MNIST dataset."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), int(self.labels[i])


def seed_style_fit(model, images, labels, epochs, batch_size, lr, device) -> None:
    """The seeds' loop: DataLoader(shuffle=True), per-batch .to(device), Adam, running loss.item()."""
    loader = DataLoader(SeedStyleDataset(images, labels), batch_size=batch_size, shuffle=True)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.to(device).train()
    for _ in range(epochs):
        running_loss = 0.0
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()


def tlutils_fit(model, images, labels, epochs, batch_size, lr, device) -> None:
    x = (torch.from_numpy(images).float().div_(255).unsqueeze(1) - MEAN) / STD
    loader = tlutils.TensorLoader(TensorDataset(x, torch.from_numpy(labels)), batch_size, shuffle=True)
    tlutils.fit(model, loader, epochs=epochs, lr=lr, weight_decay=0.0, one_cycle=False,
                device=device, progress=False)


def test_accuracy(model, images, labels, device) -> float:
    x = (torch.from_numpy(images).float().div_(255).unsqueeze(1) - MEAN) / STD
    return tlutils.evaluate(model, None, tlutils.TensorLoader(TensorDataset(x, torch.from_numpy(labels)), 1024),
                            device)["accuracy"]


def glyph_arrays(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = tlutils.render_glyphs(n, size=size, seed=seed).tensors
    return (images[:, 0] * 255).round().to(torch.uint8).numpy(), labels.numpy()


def mlp_28() -> nn.Module:
    """Seed 002's network: Flatten, Dense(128, relu), Dense(10)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 128), nn.ReLU(), nn.Linear(128, 10))


def compare(name, make_model, size, args, device) -> None:
    train = glyph_arrays(args.train, size, seed=0)
    test = glyph_arrays(args.test, size, seed=1)
    results = {}
    for label, run in (("seed-style loop", seed_style_fit), ("tlutils.fit", tlutils_fit)):
        tlutils.set_seed(args.seed)
        model = make_model()
        start = time.perf_counter()
        run(model, *train, args.epochs, args.batch_size, args.lr, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        results[label] = (time.perf_counter() - start, test_accuracy(model, *test, device))
    (t_seed, a_seed), (t_tl, a_tl) = results["seed-style loop"], results["tlutils.fit"]
    print(f"{name}: {args.train} images {size}x{size}, {args.epochs} epochs, batch {args.batch_size}, {device}")
    for label, (seconds, acc) in results.items():
        print(f"  {label:<16} {seconds:7.2f} s   test accuracy {acc:.4f}")
    print(f"  speed-up {t_seed / t_tl:.2f}x   accuracy difference {100 * (a_tl - a_seed):+.2f} points")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--test", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = tlutils.get_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    compare("seed 002 MLP", mlp_28, 28, args, device)
    compare("SmallCNN", tlutils.SmallCNN, 16, args, device)


if __name__ == "__main__":
    main()
