import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from tlutils.data import (DIGITS, IMAGE_SIZE, RandomAffineBatch, TensorLoader, few_shot_indices,
                          few_shot_subset, glyph_templates, load_handwritten, render_glyphs,
                          train_val_split)


def image_rows(images: torch.Tensor) -> list[bytes]:
    """Each image as bytes, to compare images between splits exactly."""
    return [image.numpy().tobytes() for image in images]


@pytest.fixture(scope="module")
def handwritten():
    return load_handwritten()


# --- render_glyphs -------------------------------------------------------------------------------

def test_render_glyphs_is_deterministic_for_a_seed():
    a, b = render_glyphs(64, seed=3), render_glyphs(64, seed=3)
    assert torch.equal(a.tensors[0], b.tensors[0])
    assert torch.equal(a.tensors[1], b.tensors[1])


def test_render_glyphs_differs_between_seeds():
    a, b = render_glyphs(64, seed=3), render_glyphs(64, seed=4)
    assert not torch.equal(a.tensors[0], b.tensors[0])


def test_render_glyphs_shapes_range_and_labels():
    images, labels = render_glyphs(500, seed=0).tensors
    assert images.shape == (500, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.min() >= 0 and images.max() <= 1
    assert labels.shape == (500,)
    assert set(labels.tolist()) == set(range(len(DIGITS)))   # every digit shows up in 500 draws
    assert (images.amax(dim=(1, 2, 3)) > 0.5).all()          # every image has visible ink


def test_render_glyphs_size_and_chars_arguments():
    images, labels = render_glyphs(40, size=24, chars="AB").tensors
    assert images.shape == (40, 1, 24, 24)
    assert set(labels.tolist()) <= {0, 1}


def test_render_glyphs_fills_every_row_when_rendering_in_chunks():
    images, labels = render_glyphs(100, seed=0, chunk=32).tensors   # chunks of 32, 32, 32 and 4
    assert images.shape == (100, 1, IMAGE_SIZE, IMAGE_SIZE) and labels.shape == (100,)
    assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    assert (images.amax(dim=(1, 2, 3)) > 0.5).all()


@pytest.mark.parametrize("n, size", [(0, 16), (-1, 16), (10, 3)])
def test_render_glyphs_rejects_bad_n_or_size(n, size):
    with pytest.raises(ValueError, match="n >= 1 and size >= 4"):
        render_glyphs(n, size=size)


def test_glyph_templates_cover_every_font_char_and_stroke():
    images, labels = glyph_templates()
    assert images.shape[1:] == (1, 64, 64)
    assert len(images) == len(labels) == 21 * 10 * 3
    assert torch.equal(torch.bincount(labels), torch.full((10,), 21 * 3))


# --- load_handwritten ----------------------------------------------------------------------------

def test_load_handwritten_split_sizes_shapes_and_range(handwritten):
    train, test = handwritten
    assert train.tensors[0].shape == (1078, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert test.tensors[0].shape == (719, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert train.tensors[1].shape == (1078,) and test.tensors[1].shape == (719,)
    for images, _ in (train.tensors, test.tensors):
        assert images.dtype == torch.float32
        assert images.min() >= 0 and images.max() <= 1


def test_load_handwritten_train_and_test_are_disjoint_and_cover_all_digits(handwritten):
    train, test = handwritten
    train_rows, test_rows = image_rows(train.tensors[0]), image_rows(test.tensors[0])
    assert not set(train_rows) & set(test_rows)
    assert len(set(train_rows) | set(test_rows)) == 1797


def test_load_handwritten_split_is_stratified(handwritten):
    train, test = handwritten
    totals = torch.bincount(train.tensors[1], minlength=10) + torch.bincount(test.tensors[1], minlength=10)
    test_counts = torch.bincount(test.tensors[1], minlength=10)
    assert (test_counts - 0.4 * totals).abs().max() <= 1


def test_load_handwritten_split_is_fixed(handwritten):
    train, test = load_handwritten()
    assert torch.equal(train.tensors[0], handwritten[0].tensors[0])
    assert torch.equal(test.tensors[1], handwritten[1].tensors[1])


def test_load_handwritten_size_8_is_sklearn_digits_over_16():
    train, test = load_handwritten(size=8)
    digits = load_digits()
    expected = {row.tobytes(): label for row, label in
                zip((digits.images / 16.0).astype(np.float32), digits.target)}
    for images, labels in (train.tensors, test.tensors):
        assert images.shape[1:] == (1, 8, 8)
        for row, label in zip(image_rows(images[:, 0]), labels.tolist()):
            assert expected[row] == label


# --- few_shot_indices / few_shot_subset ----------------------------------------------------------

def test_few_shot_indices_takes_k_per_class(handwritten):
    labels = handwritten[0].tensors[1]
    idx = few_shot_indices(labels, k=5, seed=0)
    assert len(idx) == 50 and len(torch.unique(idx)) == 50
    assert torch.equal(torch.bincount(labels[idx]), torch.full((10,), 5))


def test_few_shot_indices_is_reproducible_for_a_seed(handwritten):
    labels = handwritten[0].tensors[1]
    assert torch.equal(few_shot_indices(labels, 3, seed=7), few_shot_indices(labels, 3, seed=7))
    assert not torch.equal(few_shot_indices(labels, 3, seed=7), few_shot_indices(labels, 3, seed=8))


def test_few_shot_indices_rejects_k_larger_than_a_class():
    labels = torch.tensor([0, 0, 0, 1, 1])
    assert len(few_shot_indices(labels, 2)) == 4
    with pytest.raises(ValueError, match="class 1 has only 2 examples"):
        few_shot_indices(labels, 3)


@pytest.mark.parametrize("k", [0, -1])
def test_few_shot_indices_rejects_k_below_one(k):
    with pytest.raises(ValueError, match="k"):
        few_shot_indices(torch.tensor([0, 1]), k)


def test_few_shot_subset_draws_only_from_the_train_split(handwritten):
    train, test = handwritten
    subset = few_shot_subset(train, k=10, seed=1)
    x, y = subset.tensors
    assert x.shape == (100, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(torch.bincount(y), torch.full((10,), 10))
    train_pairs = dict(zip(image_rows(train.tensors[0]), train.tensors[1].tolist()))
    test_rows = set(image_rows(test.tensors[0]))
    for row, label in zip(image_rows(x), y.tolist()):
        assert train_pairs[row] == label   # a train image, with its own label
        assert row not in test_rows


def test_few_shot_subset_is_reproducible_and_rejects_too_large_k(handwritten):
    train = handwritten[0]
    assert torch.equal(few_shot_subset(train, 2, seed=5).tensors[0],
                       few_shot_subset(train, 2, seed=5).tensors[0])
    with pytest.raises(ValueError):
        few_shot_subset(train, 1000)


# --- train_val_split -----------------------------------------------------------------------------

def test_train_val_split_is_disjoint_complete_and_stratified(handwritten):
    train = handwritten[0]
    tr, va = train_val_split(train, val_fraction=0.2, seed=0)
    assert len(va) == 216 and len(tr) == 862          # ceil(0.2 * 1078) in validation
    tr_rows, va_rows = set(image_rows(tr.tensors[0])), set(image_rows(va.tensors[0]))
    assert not tr_rows & va_rows
    assert tr_rows | va_rows == set(image_rows(train.tensors[0]))
    totals = torch.bincount(train.tensors[1], minlength=10)
    assert (torch.bincount(va.tensors[1], minlength=10) - 0.2 * totals).abs().max() <= 1


def test_train_val_split_is_reproducible_for_a_seed(handwritten):
    train = handwritten[0]
    a, b, c = (train_val_split(train, seed=s)[1].tensors[0] for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_train_val_split_rejects_fraction_outside_0_1(handwritten, fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(handwritten[0], val_fraction=fraction)


# --- TensorLoader and RandomAffineBatch ----------------------------------------------------------

def toy_dataset(n=10):
    return TensorDataset(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1) * 10, torch.arange(n))


@pytest.mark.parametrize("drop_last, sizes", [(False, [4, 4, 2]), (True, [4, 4])])
def test_tensor_loader_number_and_size_of_batches(drop_last, sizes):
    loader = TensorLoader(toy_dataset(10), batch_size=4, drop_last=drop_last)
    assert len(loader) == len(sizes)
    assert [len(y) for _, y in loader] == sizes


def test_tensor_loader_without_shuffle_keeps_order_and_pairs():
    batches = list(TensorLoader(toy_dataset(10), batch_size=4))
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(10))
    for x, y in batches:
        assert torch.equal(x.flatten(), y.float() * 10)


def test_tensor_loader_shuffle_covers_every_example_once_per_epoch():
    loader = TensorLoader(toy_dataset(50), batch_size=8, shuffle=True, seed=0)
    epochs = [torch.cat([y for _, y in loader]) for _ in range(2)]
    for order in epochs:
        assert torch.equal(torch.sort(order).values, torch.arange(50))
        assert not torch.equal(order, torch.arange(50))
    assert not torch.equal(epochs[0], epochs[1])   # reshuffled each epoch
    for x, y in loader:
        assert torch.equal(x.flatten(), y.float() * 10)


def test_tensor_loader_shuffle_with_drop_last_gives_distinct_examples():
    loader = TensorLoader(toy_dataset(50), batch_size=8, shuffle=True, drop_last=True, seed=0)
    seen = torch.cat([y for _, y in loader])
    assert len(seen) == 48 and len(torch.unique(seen)) == 48


def test_tensor_loader_same_seed_same_order():
    def order(seed):
        return torch.cat([y for _, y in TensorLoader(toy_dataset(30), 7, shuffle=True, seed=seed)])

    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))


def test_tensor_loader_without_seed_follows_torch_manual_seed():
    def order():
        torch.manual_seed(0)
        return torch.cat([y for _, y in TensorLoader(toy_dataset(30), 7, shuffle=True)])

    assert torch.equal(order(), order())


def test_tensor_loader_applies_transform_to_inputs_only():
    loader = TensorLoader(toy_dataset(6), batch_size=4, transform=lambda x: x + 1000)
    for x, y in loader:
        assert torch.equal(x.flatten(), y.float() * 10 + 1000)


def test_tensor_loader_rejects_batch_size_below_one():
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(toy_dataset(), batch_size=0)


def test_random_affine_batch_keeps_shape_and_dtype():
    x = torch.rand(7, 3, 16, 12)
    y = RandomAffineBatch()(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.equal(x, y)


def test_random_affine_batch_without_range_is_the_identity():
    x = torch.rand(4, 1, 16, 16)
    identity = RandomAffineBatch(degrees=0, translate=0, scale=(1, 1))
    torch.testing.assert_close(identity(x), x, atol=1e-5, rtol=0)


def test_random_affine_batch_is_reproducible_with_torch_manual_seed():
    x = torch.rand(4, 1, 16, 16)
    torch.manual_seed(0)
    a = RandomAffineBatch()(x)
    torch.manual_seed(0)
    assert torch.equal(a, RandomAffineBatch()(x))
