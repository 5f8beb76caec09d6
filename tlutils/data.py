"""The course's data, made offline: printed glyphs (source task), handwritten digits (target task),
few-shot splits, and a loader that batches in-memory tensors by indexing (real photos: `photos`).

Chapter 1 introduces the two tasks; chapter 4 uses `few_shot_subset`; chapter 6 studies the gap
between the two domains. Nothing here downloads anything: the glyphs are rendered from the fonts
that matplotlib ships and the handwriting comes with scikit-learn.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

DIGITS = "0123456789"
IMAGE_SIZE = 16

# matplotlib's TrueType fonts that have digit glyphs (COURSE.md section 4): no *Display, STIXNonUni*,
# STIXSiz*, cmsy10, cmex10, cmmi10 or LastResortHE, which lack ordinary digits.
FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf", "cmss10.ttf",
    "cmti10.ttf", "cmtt10.ttf",
)
STROKES = (0, 1, 2)    # extra stroke width in template pixels: thin, regular and heavy ink
_TEMPLATE = 64          # glyphs are drawn at 64x64 and then warped and shrunk in one batch
_HANDWRITTEN_TEST_FRACTION = 0.4
_HANDWRITTEN_SPLIT_SEED = 0   # the test split is fixed: every chapter and exercise sees the same one


def font_dir() -> Path:
    """The folder of the TrueType fonts that matplotlib ships (the source task's typefaces)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def draw_glyph(font, char: str, stroke: int) -> np.ndarray:
    """One glyph, white on black, scaled to fill a square canvas like a handwritten digit does."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(canvas).text((48, 48), char, fill=255, font=font, anchor="mm",
                                stroke_width=stroke, stroke_fill=255)
    glyph = canvas.crop(canvas.getbbox())
    scale = (_TEMPLATE - 8) / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                         Image.BILINEAR)
    out = Image.new("L", (_TEMPLATE, _TEMPLATE), 0)
    out.paste(glyph, ((_TEMPLATE - glyph.width) // 2, (_TEMPLATE - glyph.height) // 2))
    return np.asarray(out, dtype=np.float32) / 255.0


@lru_cache(maxsize=4)
def glyph_templates(chars: str = DIGITS) -> tuple[torch.Tensor, torch.Tensor]:
    """All (font, character, stroke) templates at 64x64: images (T, 1, 64, 64) and labels (T,)."""
    from PIL import ImageFont

    images, labels = [], []
    for name in FONTS:
        font = ImageFont.truetype(str(font_dir() / name), 64)
        for label, char in enumerate(chars):
            for stroke in STROKES:
                images.append(draw_glyph(font, char, stroke))
                labels.append(label)
    return torch.from_numpy(np.stack(images)).unsqueeze(1), torch.tensor(labels)


def _random_affine(n: int, g: torch.Generator, degrees: float, translate: float,
                   scale: tuple[float, float], shear: float) -> torch.Tensor:
    """n random 2x3 affine matrices for `F.affine_grid` (output -> input coordinates)."""
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)  # noqa: E731
    angle = torch.deg2rad(u(-degrees, degrees))
    shear_x = torch.deg2rad(u(-shear, shear))
    sx = u(*scale) * u(0.85, 1.15)   # independent aspect jitter: narrow and wide writing
    sy = u(*scale)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos / sx
    theta[:, 0, 1] = (-sin + torch.tan(shear_x) * cos) / sx
    theta[:, 1, 0] = sin / sy
    theta[:, 1, 1] = cos / sy
    theta[:, 0, 2] = u(-translate, translate)
    theta[:, 1, 2] = u(-translate, translate)
    return theta


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of a batch with its own sigma (separable 5-tap kernels)."""
    taps = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-taps[None] ** 2 / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    k = k / k.sum(1, keepdim=True)
    n = x.shape[0]
    y = F.conv2d(x.transpose(0, 1), k.view(n, 1, 1, 5), padding=(0, 2), groups=n)
    y = F.conv2d(y, k.view(n, 1, 5, 1), padding=(2, 0), groups=n)
    return y.transpose(0, 1)


def render_glyphs(n: int, *, size: int = IMAGE_SIZE, seed: int = 0, chars: str = DIGITS,
                  chunk: int = 4096) -> TensorDataset:
    """Render `n` printed-character images (the source task), deterministic for a seed.

    Each image is a random font, stroke, rotation, scale, shear and shift of a glyph, shrunk to
    `size` x `size`, then blurred, sometimes passed through a coarse 8x8 grid, and given noise.
    Returns a TensorDataset of images (n, 1, size, size) in [0, 1] and labels (n,) indexing `chars`.
    """
    if n < 1 or size < 4:
        raise ValueError(f"render_glyphs needs n >= 1 and size >= 4, got n={n}, size={size}")
    templates, template_labels = glyph_templates(chars)
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(templates), (n,), generator=g)
    out = torch.empty(n, 1, size, size)
    for start in range(0, n, chunk):
        idx = pick[start:start + chunk]
        m = len(idx)
        theta = _random_affine(m, g, degrees=12, translate=0.12, scale=(0.8, 1.05), shear=10)
        grid = F.affine_grid(theta, [m, 1, _TEMPLATE, _TEMPLATE], align_corners=False)
        warped = F.grid_sample(templates[idx], grid, align_corners=False)
        small = F.interpolate(warped, size=(size, size), mode="area")
        coarse = torch.rand(m, generator=g) < 0.5   # half the images lose detail like 8x8 scans
        if coarse.any():
            low = F.interpolate(small[coarse], size=(8, 8), mode="area")
            small[coarse] = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
        small = _gaussian_blur(small, 0.3 + 0.7 * torch.rand(m, generator=g))
        ink = 0.7 + 0.3 * torch.rand(m, 1, 1, 1, generator=g)
        small = small / small.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6) * ink
        small = small + 0.05 * torch.rand(m, 1, 1, 1, generator=g) * torch.randn(small.shape, generator=g)
        out[start:start + m] = small.clamp(0, 1)
    return TensorDataset(out, template_labels[pick])


@lru_cache(maxsize=4)
def _handwritten_arrays(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.tensor(digits.target)


def load_handwritten(size: int = IMAGE_SIZE) -> tuple[TensorDataset, TensorDataset]:
    """The target task: scikit-learn's 1,797 handwritten digits, resized to `size`, as (train, test).

    The split is stratified and fixed (40% test), so every chapter reports on the same test images.
    Draw labelled training examples from `train` only, e.g. with `few_shot_subset`.
    """
    from sklearn.model_selection import train_test_split

    x, y = _handwritten_arrays(size)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=_HANDWRITTEN_TEST_FRACTION, stratify=y.numpy(),
        random_state=_HANDWRITTEN_SPLIT_SEED)
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[test_idx], y[test_idx])


def few_shot_indices(labels: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Indices of `k` examples of every class, chosen at random but reproducibly for a seed."""
    labels = torch.as_tensor(labels)
    if k < 1:
        raise ValueError(f"k (labels per class) must be >= 1, got {k}")
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        if k > len(members):
            raise ValueError(f"asked for k={k} labels per class, but class {c} has only "
                             f"{len(members)} examples")
        chosen.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.sort(torch.cat(chosen)).values


def few_shot_subset(dataset: TensorDataset, k: int, seed: int = 0) -> TensorDataset:
    """A class-balanced subset with `k` labelled examples per class (pass a training split only)."""
    x, y = dataset.tensors[:2]
    idx = few_shot_indices(y, k, seed)
    return TensorDataset(x[idx], y[idx])


def train_val_split(dataset: TensorDataset, val_fraction: float = 0.2,
                    seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Split a training set into (train, validation), stratified, for choosing hyperparameters."""
    from sklearn.model_selection import train_test_split

    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    x, y = dataset.tensors[:2]
    tr, va = train_test_split(np.arange(len(y)), test_size=val_fraction, stratify=y.numpy(),
                              random_state=seed)
    tr, va = torch.from_numpy(tr), torch.from_numpy(va)
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[va], y[va])


class RandomAffineBatch(torch.nn.Module):
    """Random rotation, shift and scale applied to a whole batch at once (training augmentation).

    Uses torch's global random generator, so `set_seed` makes it reproducible.
    """

    def __init__(self, degrees: float = 10.0, translate: float = 0.1,
                 scale: tuple[float, float] = (0.9, 1.1)):
        super().__init__()
        self.degrees, self.translate, self.scale = degrees, translate, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        angle = torch.deg2rad((torch.rand(n) * 2 - 1) * self.degrees)
        s = self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(n)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) / s, -torch.sin(angle) / s
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) / s, torch.cos(angle) / s
        theta[:, :, 2] = (torch.rand(n, 2) * 2 - 1) * self.translate * 2
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)


class TensorLoader:
    """Batches an in-memory TensorDataset by indexing: no per-sample Python work, no collate.

    Iterating yields `(inputs, targets)` batches like a DataLoader; `transform` (e.g.
    `RandomAffineBatch()`) is applied to each input batch. Shuffling uses its own generator,
    seeded from `seed` or, when `seed` is None, from torch's global generator at construction.
    """

    def __init__(self, dataset: TensorDataset, batch_size: int = 64, shuffle: bool = False, *,
                 transform=None, drop_last: bool = False, seed: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.transform, self.drop_last = transform, drop_last
        if seed is None:
            seed = int(torch.randint(2**62, (1,)).item())
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        x, y = self.dataset.tensors[:2]
        n = len(y)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = order[sl] if order is not None else sl
            xb = x[idx]
            yield (self.transform(xb) if self.transform is not None else xb), y[idx]
