"""Plausible wrong repairs of ps6_debugging's buggy functions, and the autograded test cells each
must lose.

Per part, repairs the visible test already catches and repairs that only the hidden test catches
(so the hidden tests are shown to be needed), plus correct repairs written differently, which must
keep every point. The parts are independent: every test builds its own models and data, so a
mistake in one part costs nothing in another.
"""
from grading import WrongAnswer, solution_source, swap

HEAD = solution_source("ps6_debugging", "attach_head")
COPY = solution_source("ps6_debugging", "transfer_weights")
FREEZE = solution_source("ps6_debugging", "freeze_backbone")
SCORE = solution_source("ps6_debugging", "fine_tune_and_score")
LOSS = solution_source("ps6_debugging", "classification_loss")


WRONG_ANSWERS = [
    # (a) attach_head ----------------------------------------------------------------------------
    WrongAnswer(  # keeps a number from the shipped model instead of measuring the backbone
        "head_sized_for_64",
        {"attach_head": swap(HEAD, "classifier=nn.Linear(num_features, num_classes)",
                             "classifier=nn.Linear(64, num_classes)")},
        loses={"test_attach_head", "test_attach_head_hidden"},
    ),
    WrongAnswer(  # counts the channels of a feature map, not all of its values
        "head_sized_by_channels",
        {"attach_head": swap(HEAD, ".flatten(1).shape[1]", ".shape[1]")},
        loses={"test_attach_head", "test_attach_head_hidden"},
    ),
    WrongAnswer(  # probes in whatever mode the backbone is in: BatchNorm learns the dummy batch
        "probe_in_train_mode",
        {"attach_head": swap(HEAD, "    backbone.eval()   # a probe in train mode would overwrite"
                                   " the BatchNorm statistics\n", "")},
        loses={"test_attach_head_hidden"},
    ),
    WrongAnswer(  # probes in eval mode and leaves the caller's backbone there
        "probe_mode_not_restored",
        {"attach_head": swap(HEAD, "        backbone.train(was_training)\n", "        pass\n")},
        loses={"test_attach_head_hidden"},
    ),
    WrongAnswer(  # inference_mode instead of no_grad for the probe: a correct repair
        "probe_in_inference_mode",
        {"attach_head": swap(HEAD, "torch.no_grad()", "torch.inference_mode()")},
        loses=set(),
    ),
    # (b) transfer_weights -----------------------------------------------------------------------
    WrongAnswer(  # strict=False forgives missing and unexpected names, not shape mismatches
        "load_state_dict_not_strict",
        {"transfer_weights": (
            "def transfer_weights(source, target):\n"
            "    result = target.load_state_dict(source.state_dict(), strict=False)\n"
            "    return sorted(result.missing_keys)\n"
        )},
        loses={"test_transfer_weights", "test_transfer_weights_hidden"},
    ),
    WrongAnswer(  # copies the parameters but not the buffers: BatchNorm statistics stay fresh
        "parameters_only",
        {"transfer_weights": swap(swap(COPY, "source_state = source.state_dict()",
                                       "source_state = dict(source.named_parameters())"),
                                  "target.state_dict().items()", "target.named_parameters()")},
        loses={"test_transfer_weights_hidden"},
    ),
    WrongAnswer(  # `.data =` points the target at the source's memory instead of copying
        "shares_memory_with_source",
        {"transfer_weights": (
            "def transfer_weights(source, target):\n"
            "    source_tensors = dict(source.named_parameters()) | dict(source.named_buffers())\n"
            "    skipped = []\n"
            "    for name, tensor in list(target.named_parameters()) + list(target.named_buffers()):\n"
            "        if name in source_tensors and source_tensors[name].shape == tensor.shape:\n"
            "            tensor.data = source_tensors[name].data\n"
            "        else:\n"
            "            skipped.append(name)\n"
            "    return sorted(skipped)\n"
        )},
        loses={"test_transfer_weights_hidden"},
    ),
    WrongAnswer(  # Keras' set_weights matches by position: an extra layer in front shifts everything
        "matches_by_position",
        {"transfer_weights": (
            "def transfer_weights(source, target):\n"
            "    skipped = []\n"
            "    with torch.no_grad():\n"
            "        pairs = zip(source.state_dict().values(), target.state_dict().items())\n"
            "        for value, (name, tensor) in pairs:\n"
            "            if value.shape == tensor.shape:\n"
            "                tensor.copy_(value)\n"
            "            else:\n"
            "                skipped.append(name)\n"
            "    return sorted(skipped)\n"
        )},
        loses={"test_transfer_weights_hidden"},
    ),
    WrongAnswer(  # load_state_dict of only the entries that fit: a correct repair
        "load_filtered_state_dict",
        {"transfer_weights": (
            "def transfer_weights(source, target):\n"
            "    target_state = target.state_dict()\n"
            "    fits = {name: value for name, value in source.state_dict().items()\n"
            "            if name in target_state and value.shape == target_state[name].shape}\n"
            "    target.load_state_dict(fits, strict=False)\n"
            "    return sorted(set(target_state) - set(fits))\n"
        )},
        loses=set(),
    ),
    # (c) freeze_backbone ------------------------------------------------------------------------
    WrongAnswer(  # the classic half-repair: requires_grad only, BatchNorm drifts after model.train()
        "requires_grad_only",
        {"freeze_backbone": swap(FREEZE, "    tlutils.freeze(model, [\"features\"])   # requires_grad"
                                         "=False, BatchNorm kept in eval mode\n",
                                 "    for p in model.features.parameters():\n"
                                 "        p.requires_grad_(False)\n")},
        loses={"test_freeze_backbone", "test_freeze_backbone_hidden"},
    ),
    WrongAnswer(  # Lightning's train_bn=True: BatchNorm keeps training and adapting its statistics
        "batchnorm_left_training",
        {"freeze_backbone": swap(FREEZE, 'tlutils.freeze(model, ["features"])',
                                 'tlutils.freeze(model, ["features"], train_bn=True)')},
        loses={"test_freeze_backbone", "test_freeze_backbone_hidden"},
    ),
    WrongAnswer(  # hands every parameter to AdamW: old gradients + weight decay move the backbone
        "optimizer_gets_everything",
        {"freeze_backbone": swap(FREEZE, "torch.optim.AdamW(trainable,",
                                 "torch.optim.AdamW(model.parameters(),")},
        loses={"test_freeze_backbone_hidden"},
    ),
    WrongAnswer(  # trusts that the head is trainable already: a model that arrives frozen stays so
        "head_left_as_it_came",
        {"freeze_backbone": swap(FREEZE, "    for p in model.classifier.parameters():\n"
                                         "        p.requires_grad_(True)\n", "")},
        loses={"test_freeze_backbone_hidden"},
    ),
    WrongAnswer(  # freezes the statistics of every BatchNorm layer, the head's too
        "freezes_every_batchnorm",
        {"freeze_backbone": swap(FREEZE, "    trainable = [",
                                 "    tlutils.freeze_batch_norm(model)\n    trainable = [")},
        loses={"test_freeze_backbone_hidden"},
    ),
    WrongAnswer(  # "weight decay moves the frozen weights", so none at all: the task asks for 0.01
        "optimizer_without_weight_decay",
        {"freeze_backbone": swap(FREEZE, "weight_decay=0.01", "weight_decay=0.0")},
        loses={"test_freeze_backbone_hidden"},
    ),
    WrongAnswer(  # tlutils.freeze given the backbone module itself: a correct repair
        "freezes_the_features_module",
        {"freeze_backbone": swap(FREEZE, 'tlutils.freeze(model, ["features"])', "tlutils.freeze(model.features)")},
        loses=set(),
    ),
    WrongAnswer(  # freezing by hand, BatchNorm pinned to eval mode as chapter 3 shows: correct
        "freezes_by_hand",
        {"freeze_backbone": (
            "import types\n"
            "\n"
            "\n"
            "def freeze_backbone(model, lr=1e-3):\n"
            "    def stay_in_eval(self, mode=True):\n"
            "        return nn.Module.train(self, False)\n"
            "\n"
            "    for p in model.features.parameters():\n"
            "        p.requires_grad_(False)\n"
            "    for m in model.features.modules():\n"
            "        if isinstance(m, nn.modules.batchnorm._BatchNorm):\n"
            "            m.train = types.MethodType(stay_in_eval, m)\n"
            "            m.eval()\n"
            "    head = list(model.classifier.parameters())\n"
            "    for p in head:\n"
            "        p.requires_grad_(True)\n"
            "    return torch.optim.AdamW(head, lr=lr, weight_decay=0.01)\n"
        )},
        loses=set(),
    ),
    # (d) fine_tune_and_score --------------------------------------------------------------------
    WrongAnswer(  # seed 003 left in: scores the labelled images it trained on
        "scores_the_training_images",
        {"fine_tune_and_score": swap(swap(SCORE, "tlutils.TensorLoader(test_set, batch_size=256)",
                                          "tlutils.TensorLoader(labelled, batch_size=256)"),
                                     "correct / len(test_set)", "correct / len(labelled)")},
        loses={"test_fine_tune_and_score", "test_fine_tune_and_score_hidden"},
    ),
    WrongAnswer(  # seed 002 left in: the labelled images come from the test split
        "labels_from_the_test_split",
        {"fine_tune_and_score": swap(SCORE, "few_shot_subset(pool, k, seed)",
                                     "few_shot_subset(test_set, k, seed)")},
        loses={"test_fine_tune_and_score_hidden"},
    ),
    WrongAnswer(  # trains on the whole pool instead of k labels per class
        "trains_on_the_whole_pool",
        {"fine_tune_and_score": swap(SCORE, "labelled = tlutils.few_shot_subset(pool, k, seed)",
                                     "labelled = pool")},
        loses={"test_fine_tune_and_score_hidden"},
    ),
    WrongAnswer(  # seed 000 left in: random augmentation of the test images
        "augments_the_test_images",
        {"fine_tune_and_score": swap(SCORE, "tlutils.TensorLoader(test_set, batch_size=256)",
                                     "tlutils.TensorLoader(test_set, batch_size=256, "
                                     "transform=tlutils.RandomAffineBatch())")},
        loses={"test_fine_tune_and_score", "test_fine_tune_and_score_hidden"},
    ),
    WrongAnswer(  # seed 000 left in: scores in train mode, BatchNorm learns the test statistics
        "scores_in_train_mode",
        {"fine_tune_and_score": swap(SCORE, "    model.eval()   # stored BatchNorm statistics: each"
                                            " prediction depends on its own image only\n", "")},
        loses={"test_fine_tune_and_score", "test_fine_tune_and_score_hidden"},
    ),
    WrongAnswer(  # early stopping on the test split: scores after every step, keeps the best checkpoint
        "keeps_the_best_test_checkpoint",
        {"fine_tune_and_score": (
            "def fine_tune_and_score(model, pool, test_set, k, seed=0, steps=30):\n"
            "    def score():\n"
            "        model.eval()\n"
            "        correct = 0\n"
            "        with torch.no_grad():\n"
            "            for images, labels in tlutils.TensorLoader(test_set, batch_size=256):\n"
            "                correct += (model(images).argmax(1) == labels).sum().item()\n"
            "        return correct / len(test_set)\n"
            "\n"
            "    tlutils.set_seed(seed)\n"
            "    labelled = tlutils.few_shot_subset(pool, k, seed)\n"
            "    loader = tlutils.TensorLoader(labelled, batch_size=32, shuffle=True, seed=seed)\n"
            "    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)\n"
            "    best, best_state = -1.0, None\n"
            "    step = 0\n"
            "    while step < steps:\n"
            "        for images, labels in loader:\n"
            "            model.train()\n"
            "            loss = F.cross_entropy(model(images), labels)\n"
            "            optimizer.zero_grad()\n"
            "            loss.backward()\n"
            "            optimizer.step()\n"
            "            step += 1\n"
            "            accuracy = score()\n"
            "            if accuracy > best:\n"
            "                best, best_state = accuracy, copy.deepcopy(model.state_dict())\n"
            "            if step == steps:\n"
            "                break\n"
            "    model.load_state_dict(best_state)\n"
            "    return best\n"
        )},
        loses={"test_fine_tune_and_score_hidden"},
    ),
    # (e) classification_loss --------------------------------------------------------------------
    WrongAnswer(  # keeps seed 004's sigmoid + BCE and one-hot encodes the labels to make it run
        "one_hot_binary_cross_entropy",
        {"classification_loss": swap(LOSS, "F.cross_entropy(logits, labels)",
                                     "F.binary_cross_entropy(torch.sigmoid(logits), "
                                     "F.one_hot(labels, logits.shape[1]).float())")},
        loses={"test_classification_loss", "test_classification_loss_hidden"},
    ),
    WrongAnswer(  # adds the softmax cross_entropy already applies: a softmax of probabilities
        "softmax_twice",
        {"classification_loss": swap(LOSS, "F.cross_entropy(logits, labels)",
                                     "F.cross_entropy(torch.softmax(logits, dim=1), labels)")},
        loses={"test_classification_loss_hidden"},
    ),
    WrongAnswer(  # log of a softmax: exact on small logits, log(0) = -inf on large ones
        "log_of_softmax",
        {"classification_loss": swap(LOSS, "F.cross_entropy(logits, labels)",
                                     "-torch.log(torch.softmax(logits, dim=1))"
                                     "[torch.arange(len(labels)), labels].mean()")},
        loses={"test_classification_loss_hidden"},
    ),
    WrongAnswer(  # sums over the batch instead of averaging
        "summed_not_averaged",
        {"classification_loss": swap(LOSS, "F.cross_entropy(logits, labels)",
                                     'F.cross_entropy(logits, labels, reduction="sum")')},
        loses={"test_classification_loss", "test_classification_loss_hidden"},
    ),
    WrongAnswer(  # label smoothing: the same log(10) on the visible test's equal logits, wrong elsewhere
        "label_smoothing",
        {"classification_loss": swap(LOSS, "F.cross_entropy(logits, labels)",
                                     "F.cross_entropy(logits, labels, label_smoothing=0.1)")},
        loses={"test_classification_loss_hidden"},
    ),
    WrongAnswer(  # log_softmax and gather: the same loss, written out
        "log_softmax_gather",
        {"classification_loss": swap(LOSS, "F.cross_entropy(logits, labels)",
                                     "-F.log_softmax(logits, dim=1).gather(1, labels[:, None]).mean()")},
        loses=set(),
    ),
]
