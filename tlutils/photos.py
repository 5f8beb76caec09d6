"""Real photos, offline: Fashion-MNIST from Debian, the photos that ship inside scikit-image and
scikit-learn, and image folders as users bring them.

Chapter 8 fine-tunes ImageNet features on these. Nothing here downloads anything: Fashion-MNIST is
Debian's `dataset-fashion-mnist` (`make` installs it), the sample photos are files inside the two
packages, and a folder of your own is read from disk, decoded and preprocessed once, into memory.
"""
from __future__ import annotations

import gzip
import warnings
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import TensorDataset

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
_FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_IDX_UBYTE = 0x08   # the idx type code of unsigned bytes, the third byte of the magic number
SPLIT_NAMES = ("train", "val", "test")


# --- Fashion-MNIST -------------------------------------------------------------------------------

def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes (gzipped) as an array, after checking its magic number and size."""
    try:
        with gzip.open(path) as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable gzipped idx file: {e}") from e
    header, magic = 4 + 4 * ndim, _IDX_UBYTE << 8 | ndim
    found = int.from_bytes(data[:4], "big") if len(data) >= header else None
    if found != magic:
        raise ValueError(f"{path} is corrupt: an idx file of {ndim}-d unsigned bytes starts with the "
                         f"magic number {magic:#010x}, this one with "
                         + (f"{found:#010x}" if found is not None else "a header too short"))
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(data) - header != np.prod(shape):
        raise ValueError(f"{path} is corrupt: its header says {shape} bytes of data "
                         f"({np.prod(shape)}), the file holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _missing_fashion_mnist(root: Path, missing: list[str]) -> FileNotFoundError:
    return FileNotFoundError(
        f"Fashion-MNIST is not in {root} (missing {', '.join(missing)}). Install it with "
        f"`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; `make` does it), or pass "
        f"root= a folder holding the four idx files from Zalando's fashion-mnist repository "
        f"(https://github.com/zalandoresearch/fashion-mnist, data/fashion/*.gz).")


@lru_cache(maxsize=2)
def _fashion_mnist_arrays(root: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Both splits as uint8 images (N, 1, 28, 28) and labels (N,), parsed once per folder."""
    missing = [name for files in _FASHION_MNIST_FILES.values() for name in files
               if not (root / name).is_file()]
    if missing:
        raise _missing_fashion_mnist(root, missing)
    splits = {}
    for split, (image_file, label_file) in _FASHION_MNIST_FILES.items():
        images, labels = read_idx(root / image_file, 3), read_idx(root / label_file, 1)
        if len(images) != len(labels):
            raise ValueError(f"{root / image_file} holds {len(images)} images but "
                             f"{root / label_file} holds {len(labels)} labels")
        if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
            raise ValueError(f"{root / label_file} is corrupt: label {labels.max()} is not one of "
                             f"the {len(FASHION_MNIST_CLASSES)} classes")
        splits[split] = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)
    return splits


def load_fashion_mnist(root: str | Path | None = None) -> tuple[TensorDataset, TensorDataset]:
    """Fashion-MNIST: 70,000 Zalando product photos, 28x28 grey, 10 classes, as (train, test).

    Images are (N, 1, 28, 28) float32 in [0, 1], labels int64; each split has a `classes` attribute
    (`FASHION_MNIST_CLASSES`). The test split is the official 10,000 images, the same for every
    chapter; draw labelled training examples from `train` only, e.g. with `few_shot_subset`.
    `root` is a folder holding the four gzipped idx files; by default Debian's `FASHION_MNIST_DIR`.
    The files are parsed once per process; every call returns fresh tensors.
    """
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    datasets = []
    for images, labels in _fashion_mnist_arrays(root.resolve()).values():
        dataset = TensorDataset(images.float().div_(255), labels.long())
        dataset.classes = list(FASHION_MNIST_CLASSES)
        datasets.append(dataset)
    return datasets[0], datasets[1]


# --- the photos that ship inside packages --------------------------------------------------------

def sample_photos() -> dict[str, Image.Image]:
    """Seven real colour photos that ship inside scikit-image and scikit-learn, as PIL RGB images.

    - chelsea: Chelsea the tabby cat (scikit-image, CC0), 451x300.
    - coffee: a cup of coffee on a saucer, on wood (scikit-image, CC0), 600x400.
    - rocket: a SpaceX Falcon 9 lifting off with DSCOVR (scikit-image, public domain), 640x427.
    - astronaut: NASA's portrait of astronaut Eileen Collins (scikit-image, public domain), 512x512.
    - motorcycle: a motorcycle in a lab, the left image of a Middlebury stereo pair
      (scikit-image's `stereo_motorcycle`), 741x500.
    - china: a pagoda above a lake (scikit-learn's `load_sample_images`, CC BY 2.0), 640x427.
    - flower: an orange dahlia (scikit-learn's `load_sample_images`, CC BY 2.0), 640x427.

    All are files inside the installed packages: none comes from scikit-image's download cache.
    """
    from skimage import data
    from sklearn.datasets import load_sample_images

    arrays = {"chelsea": data.chelsea(), "coffee": data.coffee(), "rocket": data.rocket(),
              "astronaut": data.astronaut(), "motorcycle": data.stereo_motorcycle()[0]}
    shipped = load_sample_images()
    arrays.update((Path(f).stem, image) for f, image in zip(shipped.filenames, shipped.images))
    return {name: Image.fromarray(array).convert("RGB") for name, array in arrays.items()}


# --- image folders as users bring them -----------------------------------------------------------

def _resize_to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """The default preprocessing: squash to `size` x `size` (bilinear), floats in [0, 1]."""
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(image.resize((size, size), Image.BILINEAR)).float() / 255.0


def _is_hidden(path: Path, top: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(top).parts)


def _subfolders(folder: Path) -> list[str]:
    """The names of `folder`'s visible subfolders, sorted (.ipynb_checkpoints is no class)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_folder(root: Path, split: str | None) -> Path:
    """The folder that holds the classes: `root`, or `root/split` for a train/val layout."""
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a folder")
    subfolders = _subfolders(root)
    if split is not None:
        if split not in subfolders:
            raise ValueError(f"image folder {root} has no split {split!r}: its subfolders are "
                             f"{subfolders}")
        return root / split
    if subfolders and set(subfolders) <= set(SPLIT_NAMES):
        raise ValueError(f"image folder {root} holds splits {subfolders}, not classes: pass "
                         f"split= one of them, e.g. load_image_folder(root, split={subfolders[0]!r})")
    return root


def _image_files(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """The classes of `folder` and its (image file, label) pairs; warns about the files skipped.

    Like torchvision's ImageFolder, a file is an image by its extension (`IMG_EXTENSIONS`); hidden
    files and folders (.DS_Store, .ipynb_checkpoints) are skipped too.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = _subfolders(folder)
    if len(classes) < 2:
        raise ValueError(f"image folder {folder} needs at least two class subfolders, found {classes}")
    files, skipped = [], []
    for label, name in enumerate(classes):
        for f in sorted((folder / name).rglob("*")):
            if not f.is_file():
                continue
            if _is_hidden(f, folder) or not f.name.lower().endswith(IMG_EXTENSIONS):
                skipped.append(str(f.relative_to(folder)))
            else:
                files.append((f, label))
    if skipped:
        warnings.warn(f"image folder {folder}: skipped {len(skipped)} files that are hidden or "
                      f"not images ({', '.join(IMG_EXTENSIONS)}): {skipped[:20]}"
                      + (f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""),
                      UserWarning, stacklevel=3)
    empty = [name for label, name in enumerate(classes) if all(lab != label for _, lab in files)]
    if empty:
        raise ValueError(f"image folder {folder} has classes with no images: {empty}")
    return classes, files


def _decode(path: Path, mode: str) -> Image.Image:
    """One image file as a PIL image in `mode` ("RGB" or "L"); a ValueError naming a broken file."""
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except OSError as e:   # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise ValueError(f"{path} has an image extension but does not decode as an image: {e}") from e


def load_image_folder(root: str | Path, split: str | None = None, *,
                      transform: Callable | None = None, size: int = 64,
                      grayscale: bool = False) -> TensorDataset:
    """Load an ImageFolder-style tree (`root/<class>/<image>`) into memory, preprocessed once.

    Like the ants/bees folder of PyTorch's tutorial, whose `root/train/<class>` and `root/val/<class>`
    layout is read with `split="train"` (or "val"). Every image is decoded and converted to RGB (or
    "L" when `grayscale`), then passed once through `transform`, a callable from a PIL image to a
    tensor of one fixed shape (e.g. a model's `weights.transforms()`); the default resizes to `size`
    x `size` (`size` is used by the default only). Training epochs then never decode again.

    Files that are not images by torchvision's `IMG_EXTENSIONS` (a .gif, .txt, .DS_Store,
    Thumbs.db) are skipped with a UserWarning listing them. A ValueError names the problem when
    the folder is missing, holds splits but no `split` was given, has fewer than two classes or an
    empty class, holds a file with an image extension that does not decode, or when `transform`
    does not return tensors of one shape. The dataset has `classes` (folder names, in label order)
    and `files` (the image paths, in dataset order).
    """
    folder = _split_folder(Path(root), split)
    classes, files = _image_files(folder)
    transform = transform if transform is not None else partial(_resize_to_tensor, size=size)
    mode = "L" if grayscale else "RGB"
    images = None
    for i, (path, _) in enumerate(files):
        x = transform(_decode(path, mode))
        if images is None:   # the first image fixes the shape: fill one preallocated tensor
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"transform must return a tensor, returned {type(x).__name__} "
                                 f"for {path}")
            images = torch.empty((len(files), *x.shape), dtype=x.dtype)
        elif x.shape != images.shape[1:]:
            raise ValueError(f"transform returned shape {tuple(x.shape)} for {path} but "
                             f"{tuple(images.shape[1:])} for {files[0][0]}: it must give one fixed "
                             f"shape (e.g. Resize then CenterCrop)")
        images[i] = x
    dataset = TensorDataset(images, torch.tensor([label for _, label in files]))
    dataset.classes = classes
    dataset.files = [path for path, _ in files]
    return dataset
