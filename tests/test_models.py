import json
import urllib.error

import pytest
import torch
import torch.hub
import torchvision
from torch import nn

import tlutils.pretrain
from tlutils.data import render_glyphs
from tlutils.models import (SHIPPED, SHUFFLED, WEIGHTS_DIR, SmallCNN, get_classifier, get_stages,
                            load_pretrained, reset_classifier, shipped_metadata)

# name -> (path of its head, a forward-pass input or None when too big to run in a unit test)
TORCHVISION_HEADS = {
    "resnet18": ("fc", (1, 3, 64, 64)),
    "mobilenet_v3_small": ("classifier.3", (1, 3, 64, 64)),
    "mobilenet_v2": ("classifier.1", (1, 3, 64, 64)),
    "efficientnet_b0": ("classifier.1", (2, 3, 32, 32)),
    "vgg11": ("classifier.6", (2, 3, 32, 32)),
    "vit_b_16": ("heads.head", None),   # needs 224x224 inputs: checked by its head only
}


# --- SmallCNN ------------------------------------------------------------------------------------

def test_small_cnn_output_shape():
    model = SmallCNN()
    assert model(torch.rand(5, 1, 16, 16)).shape == (5, 10)
    assert model.features(torch.rand(5, 1, 16, 16)).shape == (5, model.feature_dim) == (5, 64)


def test_small_cnn_channels_classes_and_non_square_images():
    model = SmallCNN(num_classes=4, in_channels=3, widths=(4, 4, 8, 8, 12))
    assert model(torch.rand(2, 3, 20, 28)).shape == (2, 4)
    assert model.feature_dim == 12 and model.classifier.in_features == 12


@pytest.mark.parametrize("shape", [(1, 16, 16), (2, 3, 16, 16), (2, 1, 2, 2), (2, 1, 16, 3)])
def test_small_cnn_rejects_wrong_input_shapes(shape):
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 1, H, W\)"):
        SmallCNN()(torch.rand(shape))


@pytest.mark.parametrize("num_classes", [0, -3])
def test_small_cnn_rejects_num_classes_below_one(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        SmallCNN(num_classes=num_classes)


def test_small_cnn_rejects_other_than_five_widths():
    with pytest.raises(ValueError, match="five blocks"):
        SmallCNN(widths=(8, 8, 8))


# --- load_pretrained -----------------------------------------------------------------------------

def test_load_pretrained_loads_the_shipped_checkpoint_in_eval_mode():
    model = load_pretrained()
    assert isinstance(model, SmallCNN)
    assert not model.training and not any(m.training for m in model.modules())
    assert model.classifier.out_features == 10
    state = torch.load(WEIGHTS_DIR / f"{SHIPPED}.pt", weights_only=True)
    assert state.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_load_pretrained_shipped_model_reads_rendered_glyphs():
    images, labels = render_glyphs(200, seed=1).tensors
    with torch.no_grad():
        accuracy = (load_pretrained()(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9


def test_shipped_metadata_describes_the_checkpoint():
    meta = shipped_metadata()
    assert meta["name"] == SHIPPED
    assert meta["architecture"] == {"num_classes": 10, "in_channels": 1, "widths": [16, 32, 32, 64, 64]}
    SmallCNN(**meta["architecture"]).load_state_dict(
        torch.load(WEIGHTS_DIR / f"{SHIPPED}.pt", weights_only=True))


def test_load_pretrained_with_num_classes_replaces_only_the_head():
    shipped, model = load_pretrained(), load_pretrained(num_classes=3)
    assert model.classifier.out_features == 3 and not model.training
    assert model(torch.rand(2, 1, 16, 16)).shape == (2, 3)
    for (name, p), q in zip(model.features.state_dict().items(), shipped.features.state_dict().values()):
        assert torch.equal(p, q), name


def test_load_pretrained_shipped_model_rejects_weights():
    with pytest.raises(ValueError, match="leave weights=None"):
        load_pretrained(SHIPPED, weights="DEFAULT")


def test_load_pretrained_unknown_name_raises_naming_it():
    with pytest.raises(ValueError, match="'resnet-9000'"):
        load_pretrained("resnet-9000")


def test_load_pretrained_torchvision_without_weights_builds_random_model():
    model = load_pretrained("resnet18", num_classes=5)
    assert isinstance(model, torchvision.models.ResNet)
    assert model.fc.out_features == 5


def test_load_pretrained_offline_explains_torch_home_and_the_shipped_model(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    # torchvision imported the function by name; patch that reference and the download itself too
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline, raising=False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError) as info:
        load_pretrained("resnet18", weights="DEFAULT")
    message = str(info.value)
    assert "TORCH_HOME" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert f"load_pretrained({SHIPPED!r})" in message
    assert "resnet18" in message and "offline" in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert not any(tmp_path.rglob("*.pth"))


# --- the shuffled-label control checkpoint (chapter 6) -------------------------------------------

def test_load_pretrained_loads_the_shuffled_label_control():
    model = load_pretrained(SHUFFLED)
    assert isinstance(model, SmallCNN) and not any(m.training for m in model.modules())
    state = torch.load(WEIGHTS_DIR / f"{SHUFFLED}.pt", weights_only=True)
    assert state.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert not torch.equal(model.classifier.weight, load_pretrained().classifier.weight)
    assert load_pretrained(SHUFFLED, num_classes=3).classifier.out_features == 3


def test_shuffled_metadata_documents_the_shuffled_labels_and_the_same_recipe():
    meta, shipped = shipped_metadata(SHUFFLED), shipped_metadata()
    assert meta["name"] == SHUFFLED
    assert "shuffled" in meta["labels"] and "true labels" in meta["labels"]
    assert meta["label_shuffle_seed"] == tlutils.pretrain.LABEL_SHUFFLE_SEED
    for key in ("architecture", "data_recipe", "seed"):
        assert meta[key] == shipped[key], key
    assert meta["source_test_accuracy"] < 0.2 and meta["final_train_accuracy_on_shuffled_labels"] < 0.2
    assert "labels" not in shipped   # the real checkpoint's metadata is unchanged


def test_shuffled_control_reads_true_labels_near_chance():
    images, labels = render_glyphs(1000, seed=12345).tensors
    with torch.no_grad():
        accuracy = (load_pretrained(SHUFFLED)(images).argmax(1) == labels).float().mean().item()
    assert accuracy < 0.2


def test_shipped_metadata_and_load_pretrained_reject_weights_for_the_control():
    with pytest.raises(ValueError, match="no shipped checkpoint 'smallcnn-nope'"):
        shipped_metadata("smallcnn-nope")
    with pytest.raises(ValueError, match="leave weights=None"):
        load_pretrained(SHUFFLED, weights="DEFAULT")


def test_pretrain_shuffled_labels_permutes_the_training_labels(tmp_path, monkeypatch, record_calls):
    tiny = dict(tlutils.pretrain.RECIPE, train_images=64, test_images=32, epochs=1)
    monkeypatch.setattr(tlutils.pretrain, "RECIPE", tiny)
    labels = record_calls(tlutils.pretrain, "fit",
                          lambda model, loader, **kwargs: loader.dataset.tensors[1].clone())
    tlutils.pretrain.main(["--shuffled-labels", "--out", str(tmp_path)])
    true = render_glyphs(64, seed=tiny["train_seed"]).tensors[1]
    order = torch.randperm(64, generator=torch.Generator().manual_seed(
        tlutils.pretrain.LABEL_SHUFFLE_SEED))
    assert torch.equal(labels[0], true[order]) and not torch.equal(labels[0], true)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{SHUFFLED}.json", f"{SHUFFLED}.pt"]
    meta = json.loads((tmp_path / f"{SHUFFLED}.json").read_text())
    assert meta["name"] == SHUFFLED and meta["data_recipe"] == tiny and "shuffled" in meta["labels"]
    SmallCNN(**meta["architecture"]).load_state_dict(
        torch.load(tmp_path / f"{SHUFFLED}.pt", weights_only=True))


# --- get_classifier / reset_classifier -----------------------------------------------------------

def test_get_classifier_of_small_cnn_is_its_classifier():
    model = SmallCNN()
    assert get_classifier(model) is model.classifier


def test_small_cnn_declares_its_head_and_stages_as_the_state_dict_has_them():
    """As timm's test_model_default_cfgs: the declared parts exist, with their weights."""
    model = SmallCNN()
    state = model.state_dict()
    assert model.pretrained_cfg["classifier"] + ".weight" in state
    assert get_stages(model) == [f"features.block{i}" for i in range(1, 6)]
    assert all(f"{stage}.0.weight" in state for stage in get_stages(model))


def test_a_declared_head_wins_over_the_usual_places():
    model = SmallCNN()
    model.head = nn.Linear(64, 3)   # a usual place, but not the declared one
    assert get_classifier(model) is model.classifier
    model.pretrained_cfg = {"classifier": "features.block1"}
    with pytest.raises(ValueError, match="declares its classifier at 'features.block1'"):
        get_classifier(model)


def test_stages_of_an_undeclared_model_are_the_children_of_its_features_with_parameters():
    model = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    stages = get_stages(model)
    assert stages == [f"features.{i}" for i in range(len(model.features))]
    bare = nn.Sequential()
    bare.add_module("conv", nn.Conv2d(1, 4, 3))
    bare.add_module("pool", nn.AdaptiveAvgPool2d(1))
    bare.add_module("fc", nn.Linear(4, 2))
    assert get_stages(bare) == ["conv"]


@pytest.mark.parametrize("name", TORCHVISION_HEADS)
def test_reset_classifier_replaces_the_torchvision_head_that_get_classifier_finds(name):
    path, input_shape = TORCHVISION_HEADS[name]
    model = torchvision.models.get_model(name, weights=None)
    old = get_classifier(model)
    assert old is model.get_submodule(path)
    assert isinstance(old, nn.Linear) and old.out_features == 1000
    assert reset_classifier(model, 7) is model
    new = model.get_submodule(path)
    assert new is not old and get_classifier(model) is new
    assert (new.in_features, new.out_features) == (old.in_features, 7)
    assert all(p.requires_grad for p in new.parameters())
    if input_shape is not None:
        with torch.no_grad():
            assert model.eval()(torch.rand(input_shape)).shape == (input_shape[0], 7)


def test_reset_classifier_of_small_cnn():
    model = SmallCNN()
    features = [p.clone() for p in model.features.parameters()]
    reset_classifier(model, 2)
    assert (model.classifier.in_features, model.classifier.out_features) == (64, 2)
    assert model(torch.rand(3, 1, 16, 16)).shape == (3, 2)
    assert all(torch.equal(a, b) for a, b in zip(features, model.features.parameters()))


def test_reset_classifier_keeps_dtype():
    model = SmallCNN().double()
    reset_classifier(model, 3)
    assert model.classifier.weight.dtype == model.classifier.bias.dtype == torch.float64
    assert model(torch.rand(2, 1, 16, 16, dtype=torch.float64)).dtype == torch.float64


def test_reset_classifier_keeps_device():
    model = SmallCNN().to("meta")
    reset_classifier(model, 3)
    assert model.classifier.weight.device.type == "meta"


def test_reset_classifier_keeps_a_bias_free_head_bias_free():
    model = SmallCNN()
    model.classifier = nn.Linear(64, 10, bias=False)
    reset_classifier(model, 4)
    assert model.classifier.bias is None and model.classifier.out_features == 4


@pytest.mark.parametrize("num_classes", [0, -1, 2.0, "3", None])
def test_reset_classifier_rejects_invalid_num_classes(num_classes):
    model = SmallCNN()
    head = model.classifier
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        reset_classifier(model, num_classes)
    assert model.classifier is head


def test_model_without_a_known_head_raises():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="cannot find the classifier head of Sequential"):
        get_classifier(model)
    with pytest.raises(ValueError, match="cannot find the classifier head"):
        reset_classifier(model, 3)


def test_head_attribute_that_is_not_linear_is_not_a_head():
    model = nn.Module()
    model.fc = nn.Conv2d(4, 2, 1)
    model.classifier = nn.Sequential(nn.ReLU(), nn.Dropout())
    with pytest.raises(ValueError, match="cannot find the classifier head"):
        get_classifier(model)
