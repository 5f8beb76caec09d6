"""Plausible wrong answers to ps4_fine_tuning, and the autograded test cells each must lose.

Per part, mistakes the visible test already catches and mistakes only the hidden test catches
(so the hidden tests are shown to be needed), plus correct answers written differently, which
must keep every point. Part (c)'s solution trains with `tlutils.fit` alone, so a mistake in (a)
or (b) costs nothing in (c).
"""
from grading import WrongAnswer, solution_source, swap

GROUPS = solution_source("ps4_fine_tuning", "discriminative_groups")
UNFREEZE = solution_source("ps4_fine_tuning", "unfreeze_top")
FINE_TUNE = solution_source("ps4_fine_tuning", "fine_tune_few_shot")


KEEP_HEAD = "    model = tlutils.load_pretrained()   # digits -> digits: the glyph head already fits, keep it\n"
FIT = ("    tlutils.fit(model, loader, steps=steps, lr=3e-3, weight_decay=1e-4,\n"
       "                device=\"cpu\", progress=False)\n")

# Part (b) by hand, correct: trainable BatchNorm layers get their own train() back.
UNFREEZE_BY_HAND = (
    "import types\n"
    "\n"
    "\n"
    "def unfreeze_top(model, n_blocks):\n"
    "    if n_blocks not in range(6):\n"
    "        raise ValueError(f\"n_blocks must be one of 0, 1, ..., 5, got {n_blocks!r}\")\n"
    "\n"
    "    def stay_in_eval(self, mode=True):\n"
    "        return nn.Module.train(self, False)\n"
    "\n"
    "    for i in range(1, 6):\n"
    "        block = model.features.get_submodule(f\"block{i}\")\n"
    "        trains = i > 5 - n_blocks\n"
    "        block.requires_grad_(trains)\n"
    "        for m in block.modules():\n"
    "            if isinstance(m, nn.BatchNorm2d):\n"
    "                if trains:\n"
    "                    m.__dict__.pop(\"train\", None)   # back to nn.Module.train\n"
    "                    m.train(model.training)\n"
    "                else:\n"
    "                    m.train = types.MethodType(stay_in_eval, m)\n"
    "                    nn.Module.train(m, False)\n"
    "    model.classifier.requires_grad_(True)\n"
    "    return model\n"
)

WRONG_ANSWERS = [
    # -- (a) discriminative_groups ----------------------------------------------------------
    WrongAnswer(  # finds the head by the SmallCNN's attribute name: no `fc`, and a whole Sequential
        "head_by_name",
        {"discriminative_groups": swap(GROUPS, "tlutils.get_classifier(model).parameters()",
                                       "model.classifier.parameters()")},
        loses={"test_discriminative_groups_hidden"},
    ),
    WrongAnswer(  # weight decay on everything, biases included
        "decay_everything",
        {"discriminative_groups": swap(GROUPS, '"weight_decay": weight_decay if decay else 0.0',
                                       '"weight_decay": weight_decay')},
        loses={"test_discriminative_groups", "test_discriminative_groups_hidden"},
    ),
    WrongAnswer(  # exempts parameters named "bias" only: BatchNorm and LayerNorm weights get decayed
        "decay_norm_weights",
        {"discriminative_groups": (
            "def discriminative_groups(model, lr, head_lr_mult=10.0, weight_decay=1e-4):\n"
            "    head_ids = {id(p) for p in tlutils.get_classifier(model).parameters()}\n"
            "    groups = []\n"
            "    for name, p in model.named_parameters():\n"
            "        if p.requires_grad:\n"
            "            groups.append({\"params\": [p],\n"
            "                           \"lr\": lr * head_lr_mult if id(p) in head_ids else lr,\n"
            "                           \"weight_decay\": 0.0 if name.endswith(\"bias\") else weight_decay})\n"
            "    return groups\n"
        )},
        loses={"test_discriminative_groups_hidden"},
    ),
    WrongAnswer(  # forgets requires_grad: frozen parameters end up in the optimizer
        "groups_include_frozen",
        {"discriminative_groups": swap(GROUPS, "if p.requires_grad and (id(p) in head_ids) == in_head",
                                       "if (id(p) in head_ids) == in_head")},
        loses={"test_discriminative_groups_hidden"},
    ),
    WrongAnswer(  # timm's `lr_scale`: plain torch.optim ignores it and uses its default lr everywhere
        "lr_scale_not_lr",
        {"discriminative_groups": swap(GROUPS, '"lr": lr * head_lr_mult if in_head else lr',
                                       '"lr_scale": head_lr_mult if in_head else 1.0')},
        loses={"test_discriminative_groups", "test_discriminative_groups_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: one group per parameter
        "one_group_per_parameter",
        {"discriminative_groups": (
            "def discriminative_groups(model, lr, head_lr_mult=10.0, weight_decay=1e-4):\n"
            "    head = set(map(id, tlutils.get_classifier(model).parameters()))\n"
            "    return [{\"params\": [p], \"lr\": lr * (head_lr_mult if id(p) in head else 1.0),\n"
            "             \"weight_decay\": weight_decay if p.dim() > 1 else 0.0}\n"
            "            for p in model.parameters() if p.requires_grad]\n"
        )},
        loses=set(),
    ),
    WrongAnswer(  # a correct answer written differently: the last Linear found by hand
        "head_last_linear",
        {"discriminative_groups": swap(
            GROUPS, "tlutils.get_classifier(model).parameters()",
            "[m for m in model.modules() if isinstance(m, nn.Linear)][-1].parameters()")},
        loses=set(),
    ),
    WrongAnswer(  # a correct answer written differently: always four groups, some of them empty
        "empty_groups_kept",
        {"discriminative_groups": swap(GROUPS, "            if params:\n                groups.append(",
                                       "            if True:\n                groups.append(")},
        loses=set(),
    ),
    WrongAnswer(  # the head as the last two parameters: right only where the head is registered last
        "head_last_parameters",
        {"discriminative_groups": swap(GROUPS, "tlutils.get_classifier(model).parameters()",
                                       "list(model.parameters())[-2:]")},
        loses={"test_discriminative_groups_hidden"},
    ),
    WrongAnswer(  # the head as the last module: a Flatten after the Linear, or a head registered first
        "head_last_module",
        {"discriminative_groups": swap(GROUPS, "tlutils.get_classifier(model).parameters()",
                                       "list(model.modules())[-1].parameters()")},
        loses={"test_discriminative_groups_hidden"},
    ),
    # -- (b) unfreeze_top -------------------------------------------------------------------
    WrongAnswer(  # seed 000's reading: unfreezes the blocks next to the input
        "unfreeze_input_side",
        {"unfreeze_top": swap(UNFREEZE, "blocks[5 - n_blocks:]", "blocks[:n_blocks]")},
        loses={"test_unfreeze_top", "test_unfreeze_top_hidden"},
    ),
    WrongAnswer(  # requires_grad only: the frozen BatchNorm layers follow model.train() and drift
        "unfreeze_bn_follows_train",
        {"unfreeze_top": (
            "def unfreeze_top(model, n_blocks):\n"
            "    if n_blocks not in range(6):\n"
            "        raise ValueError(f\"n_blocks must be one of 0, 1, ..., 5, got {n_blocks!r}\")\n"
            "    model.features.requires_grad_(False)\n"
            "    for i in range(6 - n_blocks, 6):\n"
            "        model.features.get_submodule(f\"block{i}\").requires_grad_(True)\n"
            "    model.classifier.requires_grad_(True)\n"
            "    return model\n"
        )},
        loses={"test_unfreeze_top", "test_unfreeze_top_hidden"},
    ),
    WrongAnswer(  # blocks[-n:]: right for n = 1..5, but blocks[-0:] is every block
        "negative_index_zero",
        {"unfreeze_top": swap(UNFREEZE, "blocks[5 - n_blocks:]", "blocks[-n_blocks:]")},
        loses={"test_unfreeze_top_hidden"},
    ),
    WrongAnswer(  # chapter 4's two lines alone: a head frozen before stays frozen
        "head_left_frozen",
        {"unfreeze_top": swap(UNFREEZE, ' + ["classifier"]', "")},
        loses={"test_unfreeze_top_hidden"},
    ),
    WrongAnswer(  # no check of n_blocks: 6 and -1 quietly do something
        "no_value_error",
        {"unfreeze_top": swap(UNFREEZE,
                              "    if n_blocks not in range(6):\n"
                              "        raise ValueError(f\"n_blocks must be one of 0, 1, ..., 5, got {n_blocks!r}\")\n",
                              "")},
        loses={"test_unfreeze_top_hidden"},
    ),
    WrongAnswer(  # freezes BatchNorm by hand but never undoes it: a second call cannot unfreeze
        "bn_never_unfrozen",
        {"unfreeze_top": swap(
            UNFREEZE_BY_HAND,
            "                if trains:\n"
            "                    m.__dict__.pop(\"train\", None)   # back to nn.Module.train\n"
            "                    m.train(model.training)\n"
            "                else:\n"
            "                    m.train = types.MethodType(stay_in_eval, m)\n"
            "                    nn.Module.train(m, False)\n",
            "                if not trains:\n"
            "                    m.train = types.MethodType(stay_in_eval, m)\n"
            "                    nn.Module.train(m, False)\n")},
        loses={"test_unfreeze_top_hidden"},
    ),
    WrongAnswer(  # hands the part to the library: right behaviour, but not the student's own code
        "unfreeze_with_the_library",
        {"unfreeze_top": (
            "import tlutils.fewshot\n"
            "\n"
            "\n"
            "def unfreeze_top(model, n_blocks):\n"
            "    return tlutils.fewshot.unfreeze_top(model, n_blocks)\n"
        )},
        loses={"test_unfreeze_top_hidden"},
    ),
    WrongAnswer(  # a correct answer by hand: the same, and trainable BatchNorm layers are restored
        "unfreeze_by_hand",
        {"unfreeze_top": UNFREEZE_BY_HAND},
        loses=set(),
    ),
    WrongAnswer(  # by hand, trainable BatchNorm layers switched to train mode even in an eval model
        "bn_unfrozen_in_train_mode",
        {"unfreeze_top": swap(UNFREEZE_BY_HAND, "m.train(model.training)", "m.train()")},
        loses={"test_unfreeze_top_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: everything unfrozen, then the bottom frozen
        "unfreeze_all_then_freeze_bottom",
        {"unfreeze_top": swap(UNFREEZE,
                              "    tlutils.freeze(model, [\"features\"])\n"
                              "    tlutils.unfreeze(model, blocks[5 - n_blocks:] + [\"classifier\"])\n",
                              "    tlutils.unfreeze(model)\n"
                              "    if n_blocks < 5:\n"
                              "        tlutils.freeze(model, blocks[:5 - n_blocks])\n")},
        loses=set(),
    ),
    WrongAnswer(  # a correct answer written differently: the blocks from tlutils.get_stages
        "blocks_from_get_stages",
        {"unfreeze_top": swap(UNFREEZE, "blocks = [f\"features.block{i}\" for i in range(1, 6)]",
                              "blocks = tlutils.get_stages(model)")},
        loses=set(),
    ),
    # -- (c) fine_tune_few_shot -------------------------------------------------------------
    WrongAnswer(  # builds the loader and forgets to train: the shipped model as it is (zero-shot)
        "never_trains",
        {"fine_tune_few_shot": swap(FINE_TUNE, FIT, "")},
        loses={"test_fine_tune_few_shot", "test_fine_tune_few_shot_hidden"},
    ),
    WrongAnswer(  # a linear probe on the kept head: about 83% at best, and relabelled digits defeat it
        "trains_head_only",
        {"fine_tune_few_shot": swap(FINE_TUNE, KEEP_HEAD, KEEP_HEAD + "    unfreeze_top(model, 0)\n")},
        loses={"test_fine_tune_few_shot_hidden"},
    ),
    WrongAnswer(  # a learning rate 300x too high wrecks the pretrained features: 84% on the visible
        "lr_too_high",  # validation draw (above its 80%, the solution: 95%), 76-81% on the hidden
        # test draws, below their 85%. At 30x, 0.1, it still clears 85%, so that is not a wrong
        # answer by the exercise's own measure.
        {"fine_tune_few_shot": swap(FINE_TUNE, "lr=3e-3", "lr=1.0")},
        loses={"test_fine_tune_few_shot_hidden"},
    ),
    WrongAnswer(  # seed 002's leak: trains on the test split instead of `train`
        "trains_on_test_split",
        {"fine_tune_few_shot": swap(FINE_TUNE, "tlutils.TensorLoader(train,",
                                    "tlutils.TensorLoader(tlutils.load_handwritten()[1],")},
        loses={"test_fine_tune_few_shot_hidden"},
    ),
    WrongAnswer(  # no transfer: the same recipe from a random network (accurate enough, not fine-tuning)
        "trains_from_scratch",
        {"fine_tune_few_shot": swap(FINE_TUNE, "model = tlutils.load_pretrained()",
                                    "model = tlutils.SmallCNN()")},
        loses={"test_fine_tune_few_shot_hidden"},
    ),
    WrongAnswer(  # forgets the seed: the augmentation differs from run to run
        "not_seeded",
        {"fine_tune_few_shot": swap(FINE_TUNE, "    tlutils.set_seed(seed)\n", "")},
        loses={"test_fine_tune_few_shot_hidden"},
    ),
    WrongAnswer(  # a correct recipe written differently: a new head, trained 10x faster
        "new_head_recipe",
        {"fine_tune_few_shot": swap(
            swap(FINE_TUNE, "model = tlutils.load_pretrained()",
                 "model = tlutils.reset_classifier(tlutils.load_pretrained(), 10)"),
            FIT,
            "    optimizer = torch.optim.AdamW(discriminative_groups(model, lr=3e-3, head_lr_mult=10.0))\n"
            "    tlutils.fit(model, loader, steps=steps, optimizer=optimizer,\n"
            "                device=\"cpu\", progress=False)\n")},
        loses=set(),
    ),
    WrongAnswer(  # AdaBN on the test split's images: no test label, but still the test split
        "adabn_on_test_images",
        {"fine_tune_few_shot": swap(FINE_TUNE, "    return model\n",
                                    "    test_images = tlutils.load_handwritten()[1].tensors[0]\n"
                                    "    tlutils.adapt_batch_norm(model, [test_images], device=\"cpu\")\n"
                                    "    return model\n")},
        loses={"test_fine_tune_few_shot_hidden"},
    ),
    WrongAnswer(  # a softmax at the end: the same argmax, but probabilities, not logits
        "returns_probabilities",
        {"fine_tune_few_shot": swap(FINE_TUNE, "    return model\n",
                                    "    return nn.Sequential(model, nn.Softmax(dim=1))\n")},
        loses={"test_fine_tune_few_shot_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: torch's seed, enough for this recipe
        "torch_manual_seed",
        {"fine_tune_few_shot": swap(FINE_TUNE, "tlutils.set_seed(seed)", "torch.manual_seed(seed)")},
        loses=set(),
    ),
    WrongAnswer(  # a correct recipe: the top three blocks and the kept head, chapter 4's settings
        "top_three_blocks",  # (tlutils' helpers, not parts (a) and (b): their bundle may hold wrong ones)
        {"fine_tune_few_shot": (
            "def fine_tune_few_shot(train, seed=0):\n"
            "    tlutils.set_seed(seed)\n"
            "    model = tlutils.freeze(tlutils.load_pretrained(), [\"features.block1\", \"features.block2\"])\n"
            "    loader = tlutils.TensorLoader(train, batch_size=16, shuffle=True, seed=seed,\n"
            "                                  transform=tlutils.RandomAffineBatch())\n"
            "    optimizer = torch.optim.AdamW(tlutils.param_groups_discriminative(model, 3e-3, 1.0))\n"
            "    tlutils.fit(model, loader, steps=300, optimizer=optimizer, device=\"cpu\", progress=False)\n"
            "    return model\n"
        )},
        loses=set(),
    ),
]
