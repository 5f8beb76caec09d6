"""Plausible wrong answers to ps1_concepts, and the autograded test cells each must lose.

Per part, at least one mistake the visible test already catches and one only the hidden test
catches (so the hidden tests are shown to be needed), plus correct answers written differently
(they must keep every point).
"""
from grading import WrongAnswer, solution_source, swap

HEAD = solution_source("ps1_concepts", "new_head_model")
EXTRACT = solution_source("ps1_concepts", "extract")
NN = solution_source("ps1_concepts", "nearest_neighbour_accuracy")

WRONG_ANSWERS = [
    WrongAnswer(  # the same architecture, but random weights: nothing is transferred
        "head_random_backbone",
        {"new_head_model": swap(HEAD, "model = tlutils.load_pretrained()",
                                "model = tlutils.SmallCNN(num_classes=10)")},
        loses={"test_new_head_model", "test_new_head_model_hidden"},
    ),
    WrongAnswer(  # "10 outputs already fit": keeps the source head when the sizes agree
        "head_kept_when_ten_classes",
        {"new_head_model": swap(HEAD, "    tlutils.reset_classifier(model, num_classes)\n",
                                "    if num_classes != 10:\n"
                                "        tlutils.reset_classifier(model, num_classes)\n")},
        loses={"test_new_head_model_hidden"},
    ),
    WrongAnswer(  # changes the attribute, not the layer: the weight matrix still has 10 rows
        "head_out_features_attribute",
        {"new_head_model": swap(HEAD, "tlutils.reset_classifier(model, num_classes)",
                                "model.classifier.out_features = num_classes")},
        loses={"test_new_head_model", "test_new_head_model_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: assigns a new Linear layer itself
        "head_assigns_linear",
        {"new_head_model": swap(HEAD, "tlutils.reset_classifier(model, num_classes)",
                                "model.classifier = nn.Linear(model.feature_dim, num_classes)")},
        loses=set(),
    ),
    WrongAnswer(  # one backbone for every model: fine-tuning one model changes all the others
        "head_shares_one_backbone",
        {"new_head_model": (
            "PRETRAINED = tlutils.load_pretrained()\n\n\n"
            "def new_head_model(num_classes):\n"
            "    model = tlutils.SmallCNN(num_classes=num_classes)\n"
            "    model.features = PRETRAINED.features\n"
            "    return model\n"
        )},
        loses={"test_new_head_model_hidden"},
    ),
    WrongAnswer(  # copies the backbone's parameters but not its BatchNorm statistics
        "head_backbone_parameters_only",
        {"new_head_model": (
            "def new_head_model(num_classes):\n"
            "    pretrained = tlutils.load_pretrained()\n"
            "    model = tlutils.SmallCNN(num_classes=num_classes)\n"
            "    with torch.no_grad():\n"
            "        for new, old in zip(model.features.parameters(), pretrained.features.parameters()):\n"
            "            new.copy_(old)\n"
            "    return model\n"
        )},
        loses={"test_new_head_model_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: a new model, the backbone's state loaded into it
        "head_loads_backbone_state",
        {"new_head_model": (
            "def new_head_model(num_classes):\n"
            "    model = tlutils.SmallCNN(num_classes=num_classes)\n"
            "    model.features.load_state_dict(tlutils.load_pretrained().features.state_dict())\n"
            "    return model\n"
        )},
        loses=set(),
    ),
    WrongAnswer(  # builds an autograd graph: the visible test sees requires_grad
        "extract_with_gradients",
        {"extract": swap(EXTRACT, "        with torch.no_grad():\n            return model.features(images)",
                         "        return model.features(images)")},
        loses={"test_extract", "test_extract_hidden"},
    ),
    WrongAnswer(  # extracts in whatever mode the model is in: train mode uses batch statistics
        "extract_in_train_mode",
        {"extract": swap(EXTRACT, "    model.eval()\n", "")},
        loses={"test_extract_hidden"},
    ),
    WrongAnswer(  # switches to eval mode and never switches back
        "extract_leaves_eval_mode",
        {"extract": (
            "def extract(model, images):\n"
            "    model.eval()\n"
            "    with torch.no_grad():\n"
            "        return model.features(images)\n"
        )},
        loses={"test_extract_hidden"},
    ),
    WrongAnswer(  # builds the autograd graph and detaches the result: no requires_grad left to see
        "extract_detach",
        {"extract": swap(EXTRACT, "        with torch.no_grad():\n            return model.features(images)",
                         "        return model.features(images).detach()")},
        loses={"test_extract_hidden"},
    ),
    WrongAnswer(  # "without gradients" as requires_grad=False: the model can no longer be trained
        "extract_freezes_parameters",
        {"extract": swap(EXTRACT, "    model.eval()\n",
                         "    model.eval()\n    for p in model.parameters():\n        p.requires_grad_(False)\n")},
        loses={"test_extract_hidden"},
    ),
    WrongAnswer(  # switches gradients off for the whole program, not for this call
        "extract_grad_off_globally",
        {"extract": swap(EXTRACT, "        with torch.no_grad():\n            return model.features(images)",
                         "        torch.set_grad_enabled(False)\n        return model.features(images)")},
        loses={"test_extract_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: no graph, as every parameter is frozen meanwhile
        "extract_freezes_then_restores",
        {"extract": (
            "def extract(model, images):\n"
            "    was_training = model.training\n"
            "    flags = [p.requires_grad for p in model.parameters()]\n"
            "    model.eval()\n"
            "    for p in model.parameters():\n"
            "        p.requires_grad_(False)\n"
            "    feats = model.features(images)\n"
            "    for p, flag in zip(model.parameters(), flags):\n"
            "        p.requires_grad_(flag)\n"
            "    model.train(was_training)\n"
            "    return feats\n"
        )},
        loses=set(),
    ),
    WrongAnswer(  # a correct answer written differently: inference mode instead of no_grad
        "extract_inference_mode",
        {"extract": swap(EXTRACT, "torch.no_grad()", "torch.inference_mode()")},
        loses=set(),
    ),
    WrongAnswer(  # the farthest neighbour instead of the nearest
        "nn_argmax",
        {"nearest_neighbour_accuracy": swap(NN, "distances.argmin(dim=1)", "distances.argmax(dim=1)")},
        loses={"test_nearest_neighbour_accuracy", "test_nearest_neighbour_accuracy_hidden"},
    ),
    WrongAnswer(  # the wrong distance: the largest dot product is not the nearest point
        "nn_dot_product",
        {"nearest_neighbour_accuracy": swap(
            NN, "predicted = train_labels[distances.argmin(dim=1)]",
            "predicted = train_labels[(test_feats @ train_feats.T).argmax(dim=1)]")},
        loses={"test_nearest_neighbour_accuracy", "test_nearest_neighbour_accuracy_hidden"},
    ),
    WrongAnswer(  # the wrong distance: cosine similarity ignores the features' lengths
        "nn_cosine",
        {"nearest_neighbour_accuracy": swap(
            NN, "distances = torch.cdist(test_feats, train_feats)",
            "distances = -torch.nn.functional.normalize(test_feats, dim=1) "
            "@ torch.nn.functional.normalize(train_feats, dim=1).T")},
        loses={"test_nearest_neighbour_accuracy", "test_nearest_neighbour_accuracy_hidden"},
    ),
    WrongAnswer(  # calls the library the hidden test checks against
        "nn_calls_sklearn",
        {"nearest_neighbour_accuracy": (
            "from sklearn.neighbors import KNeighborsClassifier\n\n"
            "def nearest_neighbour_accuracy(train_feats, train_labels, test_feats, test_labels):\n"
            "    knn = KNeighborsClassifier(n_neighbors=1).fit(train_feats, train_labels)\n"
            "    return float(knn.score(test_feats, test_labels))\n"
        )},
        loses={"test_nearest_neighbour_accuracy_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: a one-element tensor, not a Python float
        "nn_returns_tensor",
        {"nearest_neighbour_accuracy": swap(NN, ".float().mean().item()", ".float().mean()")},
        loses=set(),
    ),
    WrongAnswer(  # a correct answer written differently: a NumPy float32 (not a Python float)
        "nn_returns_numpy_float32",
        {"nearest_neighbour_accuracy": swap(
            NN, "return (predicted == test_labels).float().mean().item()",
            "return (predicted == test_labels).float().mean().numpy()[()]")},
        loses=set(),
    ),
    WrongAnswer(  # a correct answer written differently: squared distances by broadcasting
        "nn_squared_distances",
        {"nearest_neighbour_accuracy": swap(
            NN, "distances = torch.cdist(test_feats, train_feats)",
            "distances = ((test_feats[:, None, :] - train_feats[None, :, :]) ** 2).sum(-1)")},
        loses=set(),
    ),
]
