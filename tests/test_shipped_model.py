"""The shipped checkpoint loads offline and is good at its own task and useful for the target.

The thresholds are the foundation issue's, each a mean over 3 seeds on the handwritten test split.
"""
import json

import pytest
import torch

import tlutils
from tlutils.fewshot import few_shot_accuracy

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def handwritten():
    return tlutils.load_handwritten()


def mean_accuracy(method, k):
    return sum(few_shot_accuracy(method, k, s) for s in SEEDS) / len(SEEDS)


def test_checkpoint_is_small_and_documented():
    weights = tlutils.models.WEIGHTS_DIR / f"{tlutils.SHIPPED}.pt"
    assert weights.stat().st_size <= 5 * 1024 * 1024
    meta = tlutils.shipped_metadata()
    for key in ("architecture", "data_recipe", "seed", "source_test_accuracy", "training_seconds",
                "torch_version"):
        assert key in meta, key
    json.dumps(meta)   # plain JSON, no exotic types


def test_source_test_accuracy_at_least_98_percent():
    model = tlutils.load_pretrained()
    recipe = tlutils.shipped_metadata()["data_recipe"]
    # a fresh test seed, never seen in pretraining
    test = tlutils.render_glyphs(3000, size=recipe["image_size"], seed=12345)
    acc = tlutils.evaluate(model, None, tlutils.TensorLoader(test, 1024), "cpu")["accuracy"]
    assert acc >= 0.98


def test_zero_shot_on_handwriting_at_least_55_percent(handwritten):
    _, test = handwritten
    acc = tlutils.evaluate(tlutils.load_pretrained(), None, tlutils.TensorLoader(test, 1024), "cpu")
    assert acc["accuracy"] >= 0.55


@pytest.mark.slow
def test_linear_probe_with_10_labels_per_class_at_least_80_percent():
    assert mean_accuracy("linear probe", 10) >= 0.80


@pytest.mark.slow
def test_fine_tuning_with_1_label_per_class_at_least_80_percent():
    """How much fine-tuning beats scratch where labels are scarce is chapter 4.1's claim, asserted
    there over 5 paired seeds with intervals (and re-checked on other seed sets by
    benchmarks/claims.py); here, the foundation's absolute target for the shipped model."""
    assert mean_accuracy("fine-tune", 1) >= 0.80


@pytest.mark.slow
def test_fine_tuning_with_10_labels_per_class_at_least_95_percent():
    assert mean_accuracy("fine-tune", 10) >= 0.95


def test_loading_does_not_change_the_weights_on_disk():
    a, b = tlutils.load_pretrained(), tlutils.load_pretrained()
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
