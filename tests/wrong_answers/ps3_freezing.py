"""Plausible wrong answers to ps3_freezing, and the autograded test cells each must lose.

Per part, mistakes the visible test already catches and mistakes only the hidden test catches
(so the hidden tests are shown to be needed), plus correct answers written differently, which
must keep every point.
"""
from grading import WrongAnswer, solution_source, swap

FREEZE = solution_source("ps3_freezing", "freeze_all_but")
CACHE = solution_source("ps3_freezing", "cached_features")
HEAD = solution_source("ps3_freezing", "train_linear_head")


WRONG_ANSWERS = [
    WrongAnswer(  # the classic: requires_grad only, BatchNorm follows model.train() and drifts
        "bn_left_in_train_mode",
        {"freeze_all_but": (
            "def freeze_all_but(model, names):\n"
            "    keep = {id(p) for name in names for p in model.get_submodule(name).parameters()}\n"
            "    for p in model.parameters():\n"
            "        p.requires_grad_(id(p) in keep)\n"
            "    return sum(p.numel() for p in model.parameters() if p.requires_grad)\n"
        )},
        loses={"test_freeze_all_but", "test_freeze_all_but_hidden"},
    ),
    WrongAnswer(  # eval() once is not enough: model.train() puts the frozen BatchNorm back
        "bn_eval_once",
        {"freeze_all_but": swap(FREEZE, "            m.train = types.MethodType(stay_in_eval, m)"
                                        "   # this instance ignores model.train()\n", "")},
        loses={"test_freeze_all_but", "test_freeze_all_but_hidden"},
    ),
    WrongAnswer(  # matches names by prefix without the dot: "layer1" also keeps "layer10"
        "prefix_match_without_dot",
        {"freeze_all_but": (
            "def freeze_all_but(model, names):\n"
            "    def stay_in_eval(self, mode=True):\n"
            "        return nn.Module.train(self, False)\n"
            "\n"
            "    for name, p in model.named_parameters():\n"
            "        p.requires_grad_(any(name.startswith(k) for k in names))\n"
            "    for name, m in model.named_modules():\n"
            "        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(\n"
            "                name.startswith(k) for k in names):\n"
            "            m.train = types.MethodType(stay_in_eval, m)\n"
            "            m.eval()\n"
            "    return sum(p.numel() for p in model.parameters() if p.requires_grad)\n"
        )},
        loses={"test_freeze_all_but_hidden"},
    ),
    WrongAnswer(  # freezes the statistics of every BatchNorm layer, the trainable ones too
        "freezes_every_batchnorm",
        {"freeze_all_but": swap(
            FREEZE,
            "isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in keep_modules",
            "isinstance(m, nn.modules.batchnorm._BatchNorm)")},
        loses={"test_freeze_all_but_hidden"},
    ),
    WrongAnswer(  # freezes BatchNorm2d only: a BatchNorm1d outside the named submodules keeps drifting
        "freezes_only_batchnorm2d",
        {"freeze_all_but": swap(FREEZE, "isinstance(m, nn.modules.batchnorm._BatchNorm)",
                                "isinstance(m, nn.BatchNorm2d)")},
        loses={"test_freeze_all_but_hidden"},
    ),
    WrongAnswer(  # getattr finds "classifier" but not a dotted path such as "features.block5"
        "getattr_not_get_submodule",
        {"freeze_all_but": swap(FREEZE, "model.get_submodule(name)", "getattr(model, name)")},
        loses={"test_freeze_all_but_hidden"},
    ),
    WrongAnswer(  # momentum 0 keeps the running statistics, but train mode still normalises with
        # each batch's statistics (and counts the batches)
        "bn_momentum_zero",
        {"freeze_all_but": swap(
            FREEZE,
            "            m.train = types.MethodType(stay_in_eval, m)   # this instance ignores model.train()\n"
            "            m.eval()\n",
            "            m.momentum = 0.0\n")},
        loses={"test_freeze_all_but_hidden"},
    ),
    WrongAnswer(  # correct, written differently: a forward pre-hook puts each frozen BatchNorm back
        # in eval mode before it runs, whatever model.train() did
        "bn_eval_in_pre_hook",
        {"freeze_all_but": "def back_to_eval(module, inputs):\n    module.eval()\n\n\n" + swap(
            FREEZE,
            "            m.train = types.MethodType(stay_in_eval, m)   # this instance ignores model.train()\n"
            "            m.eval()\n",
            "            m.register_forward_pre_hook(back_to_eval)\n"
            "            m.eval()\n")},
        loses=set(),
    ),
    WrongAnswer(  # correct behaviour, but through the helpers the part asks to write by hand
        "calls_tlutils_freeze",
        {"freeze_all_but": (
            "def freeze_all_but(model, names):\n"
            "    tlutils.freeze(model)\n"
            "    tlutils.unfreeze(model, names)\n"
            "    return tlutils.count_parameters(model, trainable_only=True)\n"
        )},
        loses={"test_freeze_all_but_hidden"},
    ),
    WrongAnswer(  # forgets eval(): BatchNorm normalises with batch statistics and updates its buffers
        "extract_in_train_mode",
        {"cached_features": swap(CACHE, "    backbone.eval()\n", "")},
        loses={"test_cached_features", "test_cached_features_hidden"},
    ),
    WrongAnswer(  # forgets no_grad(): the features carry an autograd graph
        "extract_with_gradients",
        {"cached_features": swap(CACHE, "torch.no_grad()", "torch.enable_grad()")},
        loses={"test_cached_features", "test_cached_features_hidden"},
    ),
    WrongAnswer(  # detaches the output instead of no_grad(): autograd still records each batch's graph
        "extract_then_detach",
        {"cached_features": swap(swap(CACHE, "with torch.no_grad():", "if True:"),
                                 ".flatten(1)", ".detach().flatten(1)")},
        loses={"test_cached_features_hidden"},
    ),
    WrongAnswer(  # freezes the caller's parameters instead of no_grad(), and leaves them frozen
        "extract_freezes_backbone",
        {"cached_features": swap(CACHE, "with torch.no_grad():",
                                 "backbone.requires_grad_(False)\n        if True:")},
        loses={"test_cached_features_hidden"},
    ),
    WrongAnswer(  # switches to eval mode and leaves the caller's model there
        "mode_not_restored",
        {"cached_features": swap(CACHE, "        backbone.train(was_training)\n",
                                 "        pass\n")},
        loses={"test_cached_features_hidden"},
    ),
    WrongAnswer(  # ignores batch_size: one forward pass over every image at once
        "one_big_batch",
        {"cached_features": swap(
            CACHE,
            "chunks = [backbone(images[i:i + batch_size]).flatten(1)\n"
            "                      for i in range(0, len(images), batch_size)]",
            "chunks = [backbone(images).flatten(1)]")},
        loses={"test_cached_features_hidden"},
    ),
    WrongAnswer(  # inference_mode instead of no_grad: allowed here, the tests accept it
        "inference_mode_is_fine",
        {"cached_features": swap(CACHE, "torch.no_grad()", "torch.inference_mode()")},
        loses=set(),
    ),
    WrongAnswer(  # computes the loss and the gradients but never takes a step
        "head_never_steps",
        {"train_linear_head": swap(HEAD, "        optimizer.step()\n", "")},
        loses={"test_train_linear_head", "test_train_linear_head_hidden"},
    ),
    WrongAnswer(  # a learning rate and a step count far too small for a fresh head
        "head_undertrained",
        {"train_linear_head": swap(swap(HEAD, "lr=1e-2", "lr=1e-3"), "range(300)", "range(20)")},
        loses={"test_train_linear_head", "test_train_linear_head_hidden"},
    ),
    WrongAnswer(  # forgets the seed: accurate, but two runs give different heads
        "head_not_seeded",
        {"train_linear_head": swap(HEAD, "    torch.manual_seed(seed)\n", "")},
        loses={"test_train_linear_head_hidden"},
    ),
    WrongAnswer(  # full-batch L-BFGS with a closure: another correct recipe, in far fewer steps
        "head_lbfgs_recipe",
        {"train_linear_head": (
            "def train_linear_head(features, labels, num_classes, seed=0):\n"
            "    torch.manual_seed(seed)\n"
            "    head = nn.Linear(features.shape[1], num_classes)\n"
            "    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=100)\n"
            "\n"
            "    def closure():\n"
            "        optimizer.zero_grad()\n"
            "        loss = nn.functional.cross_entropy(head(features), labels)\n"
            "        loss.backward()\n"
            "        return loss\n"
            "\n"
            "    optimizer.step(closure)\n"
            "    return head\n"
        )},
        loses=set(),
    ),
    WrongAnswer(  # plain SGD and fewer steps: a different, correct recipe
        "head_sgd_recipe",
        {"train_linear_head": swap(swap(HEAD, "torch.optim.Adam(head.parameters(), lr=1e-2)",
                                        "torch.optim.SGD(head.parameters(), lr=0.1)"),
                                   "range(300)", "range(150)")},
        loses=set(),
    ),
]
