"""Plausible wrong answers to ps7_imagenet, and the autograded test cells each must lose.

Per part, mistakes the visible test already catches and mistakes only the hidden test catches
(so the hidden tests are shown to be needed), plus correct answers written differently, which
must keep every point. Part (c)'s solution uses tlutils' preprocessing and freezing, not the
answers to (a) and (b), so a mistake there costs nothing in (c).

Part (c), measured (tlutils at this commit, one thread): accuracy in % on the visible test's 500
validation photos (seed 0), and on the hidden test's 600 official test photos for its draws of ten
photos per class (seeds 1..10; the hidden test uses draws 1 to 3, the third relabelled):

    answer                          visible   draws 1-10: worst  mean  best   draw 3 relabelled
    solution (blocks 3 to 5)           72.0               69.7   74.2  78.3   77.0
    last_layer_probe (correct)         64.4               64.7   68.1  70.5   70.2
    not_seeded                         71.6               69.7   74.2  77.3   78.0
    learns_from_the_pool               77.2               77.7   79.3  81.5   17.2
    bn_follows_train                   53.6               48.3   54.3  58.5   55.8
    random_network_features            48.8               45.5   58.3  65.2   65.8
    whole_network_high_lr              38.4               25.3   42.3  55.5   36.0
    not declared: ImageNet's mean/std  72.8               65.3   71.0  73.2   73.7
    not declared: 28 px, no upscaling  67.6               64.2   69.4  73.2   74.0
    not declared: raw pixels, no net   64.2               61.5   65.4  71.7   66.7

The threshold, 60% on each hidden draw (57% in the visible test), sits 9.7 points below the
solution's worst draw and 1.5 points above the best draw of BatchNorm left in train mode (its
draws 1 to 3: 58.5, 54.8, 55.5); part (b)'s probe on the last features, the answer most students
will write, passes every draw (worst 64.7%). Accuracy cannot catch everything: ImageNet's mean and
std instead of 0.5 cost this recipe about 3 points and 28 px inputs about 5, within the spread
between draws (part (a) is where preprocessing is graded), and a logistic regression on the raw
pixels, no transfer at all, clears 60%: the hidden test's check that the first convolution is still
the pretrained one fails it (and random_network_features).
"""
from grading import WrongAnswer, solution_source, swap

PREPROCESS = solution_source("ps7_imagenet", "make_preprocessing")
PROBE = solution_source("ps7_imagenet", "prepare_for_probe")
FEW_SHOT = solution_source("ps7_imagenet", "train_few_shot")

NORMALIZE = 'v2.Normalize(mean=list(cfg["mean"]), std=list(cfg["std"]))'
RESIZE = ('v2.Resize(int(resolution / cfg["crop_pct"]),\n'
          '                  interpolation=InterpolationMode(cfg["interpolation"]), antialias=True)')
LOAD = ('    model = tlutils.load_pretrained("tf_efficientnet_lite0", weights="IMAGENET1K",\n'
        '                                    num_classes=num_classes)   # weights first, then the new head\n')
FREEZE = ("    tlutils.freeze(model)                                      # BatchNorm kept in eval mode too\n"
          '    tlutils.unfreeze(model, [model.pretrained_cfg["classifier"]])\n')


def few_shot_with_fit(body: str) -> str:
    """A (c) answer that fine-tunes `model`, made by `body`, on the preprocessed photos with
    tlutils.fit (64 px, as the solution)."""
    return (
        "from torch.utils.data import TensorDataset\n"
        "\n"
        "\n"
        "def train_few_shot(train, seed=0):\n"
        "    tlutils.set_seed(seed)\n"
        '    preprocess = tlutils.get_weights("tf_efficientnet_lite0").transforms(64)\n'
        "    photos = TensorDataset(preprocess(train.tensors[0]), train.tensors[1])\n"
        + body +
        "    return nn.Sequential(preprocess, model).eval()\n"
    )


WRONG_ANSWERS = [
    # -- (a) make_preprocessing ------------------------------------------------------------
    WrongAnswer(  # the mean and std every torchvision tutorial shows: not these weights' 0.5
        "imagenet_mean_std",
        {"make_preprocessing": swap(PREPROCESS, NORMALIZE,
                                    "v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])")},
        loses={"test_make_preprocessing", "test_make_preprocessing_hidden"},
    ),
    WrongAnswer(  # Lite0's numbers written in: right for these weights, wrong for any other model
        "hard_coded_lite0_numbers",
        {"make_preprocessing": swap(PREPROCESS, NORMALIZE, "v2.Normalize(mean=[0.5] * 3, std=[0.5] * 3)")},
        loses={"test_make_preprocessing_hidden"},
    ),
    WrongAnswer(  # a (size, size) Resize squashes a non-square image instead of keeping its shape
        "squashes_to_square",
        {"make_preprocessing": swap(
            PREPROCESS, RESIZE,
            'v2.Resize((int(resolution / cfg["crop_pct"]),) * 2,\n'
            '                  interpolation=InterpolationMode(cfg["interpolation"]), antialias=True)')},
        loses={"test_make_preprocessing_hidden"},
    ),
    WrongAnswer(  # the packaged weights' transforms with the config's mean and std: crop and
        "library_transforms",  # interpolation still those of the packaged weights (and disabled)
        {"make_preprocessing": (
            "def make_preprocessing(model, resolution):\n"
            "    cfg = model.pretrained_cfg\n"
            '    return tlutils.get_weights("tf_efficientnet_lite0").transforms(\n'
            '        resolution, mean=cfg["mean"], std=cfg["std"])\n'
        )},
        loses={"test_make_preprocessing_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: timm's own transform, grey made RGB first
        "timm_create_transform",
        {"make_preprocessing": (
            "import timm.data\n"
            "\n"
            "\n"
            "def make_preprocessing(model, resolution):\n"
            "    cfg = model.pretrained_cfg\n"
            "    transform = timm.data.create_transform(\n"
            '        input_size=(3, resolution, resolution), interpolation=cfg["interpolation"],\n'
            '        mean=cfg["mean"], std=cfg["std"], crop_pct=cfg["crop_pct"])\n'
            "\n"
            "    def preprocess(images):\n"
            "        if isinstance(images, torch.Tensor):\n"
            "            if images.shape[-3] == 1:\n"
            "                images = images.expand(*images.shape[:-3], 3, *images.shape[-2:])\n"
            "            return transform(images)\n"
            '        return transform(images.convert("RGB"))\n'
            "\n"
            "    return preprocess\n"
        )},
        loses=set(),
    ),
    WrongAnswer(  # a correct answer by hand: torch's interpolate, its own rounding of the longer
        "by_hand_interpolate",  # side and of the crop's offset (the tests leave no half pixel)
        {"make_preprocessing": (
            "import torchvision.transforms.v2.functional as TF\n"
            "\n"
            "\n"
            "def make_preprocessing(model, resolution):\n"
            "    cfg = model.pretrained_cfg\n"
            '    mean = torch.tensor(cfg["mean"]).view(3, 1, 1)\n'
            '    std = torch.tensor(cfg["std"]).view(3, 1, 1)\n'
            '    short = int(resolution / cfg["crop_pct"])\n'
            "\n"
            "    def preprocess(images):\n"
            "        if not isinstance(images, torch.Tensor):\n"
            '            images = TF.pil_to_tensor(images.convert("RGB")).float() / 255\n'
            "        batch = images if images.ndim == 4 else images[None]\n"
            "        if batch.shape[1] == 1:\n"
            "            batch = batch.repeat(1, 3, 1, 1)\n"
            "        h, w = batch.shape[-2:]\n"
            "        size = (round(short * h / w), short) if h > w else (short, round(short * w / h))\n"
            "        batch = nn.functional.interpolate(batch, size=size, mode=cfg[\"interpolation\"],\n"
            "                                          antialias=True, align_corners=False)\n"
            "        top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2\n"
            "        batch = (batch[..., top:top + resolution, left:left + resolution] - mean) / std\n"
            "        return batch if images.ndim == 4 else batch[0]\n"
            "\n"
            "    return preprocess\n"
        )},
        loses=set(),
    ),
    # -- (b) prepare_for_probe -------------------------------------------------------------
    WrongAnswer(  # requires_grad alone: model.train() puts BatchNorm back in train mode, and it drifts
        "requires_grad_only",
        {"prepare_for_probe": swap(PROBE, FREEZE,
                                   "    model.requires_grad_(False)\n"
                                   "    model.classifier.requires_grad_(True)\n")},
        loses={"test_prepare_for_probe", "test_prepare_for_probe_hidden"},
    ),
    WrongAnswer(  # seed 000's bug: the 1000-class ImageNet head is never replaced
        "keeps_imagenet_head",
        {"prepare_for_probe": swap(PROBE, LOAD,
                                   '    model = tlutils.load_pretrained("tf_efficientnet_lite0", weights="IMAGENET1K")\n')},
        loses={"test_prepare_for_probe", "test_prepare_for_probe_hidden"},
    ),
    WrongAnswer(  # Fashion-MNIST's ten classes written in
        "hard_coded_ten_classes",
        {"prepare_for_probe": swap(PROBE, "num_classes=num_classes)", "num_classes=10)")},
        loses={"test_prepare_for_probe_hidden"},
    ),
    WrongAnswer(  # forgets weights=: a randomly initialised network, frozen and probed
        "forgets_the_weights",
        {"prepare_for_probe": swap(PROBE, 'weights="IMAGENET1K",\n', "\n")},
        loses={"test_prepare_for_probe_hidden"},
    ),
    WrongAnswer(  # freezes the stem and the blocks, misses conv_head (and bn2's affine parameters)
        "freezes_stem_and_blocks_only",
        {"prepare_for_probe": swap(PROBE, FREEZE,
                                   "    for part in (model.conv_stem, model.bn1, model.blocks):\n"
                                   "        part.requires_grad_(False)\n"
                                   "    tlutils.freeze_batch_norm(model)\n")},
        loses={"test_prepare_for_probe_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: timm swaps BatchNorm for FrozenBatchNorm2d
        "timm_frozen_batch_norm",
        {"prepare_for_probe": swap(PROBE, FREEZE,
                                   "    import timm.utils\n"
                                   "    timm.utils.freeze(model)            # BatchNorm -> FrozenBatchNorm\n"
                                   '    timm.utils.unfreeze(model, ["classifier"])\n')},
        loses=set(),
    ),
    # -- (c) train_few_shot ----------------------------------------------------------------
    WrongAnswer(  # frozen by requires_grad alone, trained with fit: BatchNorm normalises batches
        "bn_follows_train",  # of ten photos and overwrites its ImageNet statistics
        {"train_few_shot": few_shot_with_fit(
            '    model = tlutils.load_pretrained("tf_efficientnet_lite0", weights="IMAGENET1K", num_classes=10)\n'
            "    model.requires_grad_(False)\n"
            "    model.classifier.requires_grad_(True)\n"
            "    tlutils.fit(model, tlutils.TensorLoader(photos, 10, shuffle=True, seed=seed), steps=100,\n"
            '                lr=1e-2, device="cpu", progress=False)\n')},
        loses={"test_train_few_shot", "test_train_few_shot_hidden"},
    ),
    WrongAnswer(  # the whole network at a head's learning rate: the ImageNet features are wrecked
        "whole_network_high_lr",
        {"train_few_shot": few_shot_with_fit(
            '    model = tlutils.load_pretrained("tf_efficientnet_lite0", weights="IMAGENET1K", num_classes=10)\n'
            "    tlutils.fit(model, tlutils.TensorLoader(photos, 20, shuffle=True, seed=seed), steps=20,\n"
            '                lr=1e-2, device="cpu", progress=False)\n')},
        loses={"test_train_few_shot", "test_train_few_shot_hidden"},
    ),
    WrongAnswer(  # forgets weights=: the same probe on a random network's features
        "random_network_features",
        {"train_few_shot": swap(FEW_SHOT, 'tlutils.load_pretrained("tf_efficientnet_lite0", weights="IMAGENET1K")',
                                'tlutils.load_pretrained("tf_efficientnet_lite0")')},
        loses={"test_train_few_shot", "test_train_few_shot_hidden"},
    ),
    WrongAnswer(  # more labels than it was given: 30 more photos per class from the training pool
        "learns_from_the_pool",
        {"train_few_shot": swap(
            FEW_SHOT, "    images, labels = train.tensors\n",
            "    more = tlutils.few_shot_subset(tlutils.load_fashion_mnist()[0], 30, seed=seed)\n"
            "    images = torch.cat([train.tensors[0], more.tensors[0]])\n"
            "    labels = torch.cat([train.tensors[1], more.tensors[1]])\n")},
        loses={"test_train_few_shot_hidden"},
    ),
    WrongAnswer(  # forgets the seed: the head starts from another random draw at every call
        "not_seeded",
        {"train_few_shot": swap(FEW_SHOT, "    tlutils.set_seed(seed)\n", "")},
        loses={"test_train_few_shot_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: part (b)'s probe on the last features,
        "last_layer_probe",  # features cached once, the head trained with tlutils.fit
        {"train_few_shot": few_shot_with_fit(
            '    model = tlutils.load_pretrained("tf_efficientnet_lite0", weights="IMAGENET1K", num_classes=10)\n'
            "    tlutils.freeze(model)\n"
            '    tlutils.unfreeze(model, ["classifier"])\n'
            '    backbone, head = tlutils.split_model(model, "classifier")\n'
            "    features = tlutils.extract_features(backbone, tlutils.TensorLoader(photos, 100))\n"
            "    tlutils.fit(head, tlutils.TensorLoader(features, 10, shuffle=True, seed=seed), steps=100,\n"
            '                lr=1e-2, device="cpu", progress=False)\n')},
        loses=set(),
    ),
]
