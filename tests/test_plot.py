import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tlutils.plot import (  # noqa: E402
    html_table, plot_confusion_matrix, plot_data_efficiency, plot_embedding_2d, plot_history,
    show_images,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


HISTORY = {"epoch": [1, 2, 3], "train_loss": [1.0, 0.6, 0.4], "train_acc": [0.5, 0.7, 0.8],
           "val_loss": [1.1, 0.8, 0.7], "val_acc": [0.45, 0.6, 0.7]}


def test_plot_history_draws_loss_and_accuracy_side_by_side():
    fig = plot_history(HISTORY)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]
    np.testing.assert_array_equal(loss_ax.lines[1].get_ydata(), HISTORY["val_loss"])
    np.testing.assert_array_equal(acc_ax.lines[0].get_ydata(), HISTORY["train_acc"])
    assert (loss_ax.get_ylabel(), acc_ax.get_ylabel()) == ("loss", "accuracy")


@pytest.mark.parametrize("val", [{}, {"val_loss": [], "val_acc": []}], ids=["missing", "empty"])
def test_plot_history_without_validation_draws_training_only(val):
    history = {key: HISTORY[key] for key in ("epoch", "train_loss", "train_acc")} | val
    fig = plot_history(history)
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]


def test_plot_history_accepts_an_object_with_as_dict_and_given_axes():
    class History:
        def as_dict(self):
            return HISTORY

    fig, axes = plt.subplots(2, 2)
    assert plot_history(History(), axes=axes[1]) is fig
    assert [len(ax.lines) for ax in axes.flat] == [0, 0, 2, 2]


def test_plot_history_bad_input_raises():
    with pytest.raises(ValueError, match="train_acc"):
        plot_history({"epoch": [1], "train_loss": [1.0]})
    with pytest.raises(ValueError, match="empty"):
        plot_history({"epoch": [], "train_loss": [], "train_acc": []})
    with pytest.raises(ValueError, match="2 values for 3 epochs"):
        plot_history(HISTORY | {"val_acc": [0.1, 0.2]})


def test_plot_confusion_matrix_annotates_every_cell():
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    ax = plot_confusion_matrix(cm, class_names=["a", "b", "c"])
    assert isinstance(ax, Axes) and len(ax.images) == 1
    assert [t.get_text() for t in ax.texts] == [str(v) for v in cm.flat]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted label", "true label")


def test_plot_confusion_matrix_normalize_divides_rows_by_their_totals():
    cm = torch.tensor([[3, 1], [0, 0]])      # an empty row stays 0 instead of dividing by zero
    ax = plot_confusion_matrix(cm, normalize=True)
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.75, 0.25], [0, 0]])
    assert [t.get_text() for t in ax.texts] == ["0.75", "0.25", "0.00", "0.00"]


def test_plot_confusion_matrix_draws_on_the_given_axes():
    fig, ax = plt.subplots()
    assert plot_confusion_matrix(np.eye(2, dtype=int), ax=ax) is ax
    assert len(fig.axes) == 1


@pytest.mark.parametrize("cm, kwargs, message", [
    (np.zeros((2, 3)), {}, "square"),
    (np.zeros(4), {}, "square"),
    (-np.eye(2), {}, "negative"),
    (np.eye(2), {"class_names": ["a", "b", "c"]}, "3 class_names for a 2x2"),
])
def test_plot_confusion_matrix_bad_input_raises(cm, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_confusion_matrix(cm, **kwargs)


@pytest.mark.parametrize("shape", [(10, 16, 16), (10, 1, 16, 16), (10, 3, 16, 16)])
def test_show_images_draws_one_axes_per_image(shape):
    fig = show_images(torch.randn(shape), labels=torch.arange(10), ncols=4, title="digits")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 10                                    # 3x4 grid, 2 unused removed
    assert all(len(ax.images) == 1 for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes] == [str(i) for i in range(10)]
    assert fig.get_suptitle() == "digits"
    assert fig.axes[0].images[0].get_array().shape == shape[-2:] + ((3,) if shape[1] == 3 else ())


def test_show_images_scales_each_image_to_its_range():
    images = np.stack([np.full((4, 4), 7.0), np.arange(16.0).reshape(4, 4)])
    fig = show_images(images)
    assert fig.axes[0].images[0].get_array().max() == 0           # constant image: no divide by 0
    assert fig.axes[1].images[0].get_array().max() == 1


@pytest.mark.parametrize("images, kwargs, message", [
    (np.zeros((16, 16)), {}, "shape"),
    (np.zeros((2, 2, 16, 16)), {}, "shape"),
    (np.zeros((0, 16, 16)), {}, "no images"),
    (np.zeros((2, 16, 16)), {"labels": [1]}, "1 labels for 2 images"),
    (np.zeros((2, 16, 16)), {"ncols": 0}, "ncols"),
])
def test_show_images_bad_input_raises(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        show_images(images, **kwargs)


RESULTS = {
    "scratch": {1: [0.60, 0.66, 0.65], 2: [0.85, 0.86, 0.87], 5: [0.92, 0.93, 0.94]},
    "fine-tune": {1: [0.82, 0.84, 0.83], 2: [0.91, 0.92, 0.93], 5: [0.94, 0.94, 0.95]},
}


@pytest.mark.parametrize("band", ["minmax", "std"])
def test_plot_data_efficiency_draws_mean_and_band_per_method(band):
    ax = plot_data_efficiency(RESULTS, band=band)
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.63666667, 0.86, 0.93])
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == [1, 2, 5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "5"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["scratch", "fine-tune"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("labels per class", "target test accuracy")


def test_plot_data_efficiency_minmax_band_spans_the_seeds():
    ax = plot_data_efficiency({"probe": {1: [0.5, 0.7], 4: [0.8, 0.9]}})
    ys = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(0.5) and ys.max() == pytest.approx(0.9)


@pytest.mark.parametrize("results, kwargs, message", [
    ({}, {}, "empty"),
    ({"scratch": {}}, {}, "scratch"),
    ({"scratch": {1: []}}, {}, "no accuracies"),
    ({"scratch": {0: [0.5]}}, {}, "at least 1"),
    (RESULTS, {"band": "iqr"}, "unknown band"),
])
def test_plot_data_efficiency_bad_input_raises(results, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_data_efficiency(results, **kwargs)


def test_plot_embedding_2d_draws_one_scatter_per_class():
    features = torch.randn(30, 2)
    labels = torch.arange(30) % 3
    ax = plot_embedding_2d(features, labels, title="raw")
    assert isinstance(ax, Axes) and len(ax.collections) == 3
    np.testing.assert_allclose(ax.collections[1].get_offsets(), features[1::3].numpy())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    assert ax.get_title() == "raw"


def test_plot_embedding_2d_projects_wide_features_with_pca():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 8))
    fig, ax = plt.subplots()
    assert plot_embedding_2d(features, np.arange(40) % 4, ax=ax) is ax
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert points.shape == (40, 2)
    assert ax.get_xlabel() == "principal component 1"


@pytest.mark.parametrize("features, labels, message", [
    (np.zeros((5, 1)), np.zeros(5), "D >= 2"),
    (np.zeros(5), np.zeros(5), "shape"),
    (np.zeros((5, 2)), np.zeros(4), r"labels must have shape \(5,\)"),
])
def test_plot_embedding_2d_bad_input_raises(features, labels, message):
    with pytest.raises(ValueError, match=message):
        plot_embedding_2d(features, labels)


def test_html_table_has_one_row_per_row_and_escapes_cells():
    table = html_table(["method", "accuracy"], [("scratch", "61.7"), ("a < b", 2)])
    assert table.data.count("<tr>") == 3   # the header and two rows
    assert "<td style='text-align:right'>a &lt; b</td>" in table.data
    assert "<th style='text-align:right'>accuracy</th>" in table.data


def test_html_table_rows_must_match_the_header():
    with pytest.raises(ValueError, match=r"rows \[1\] do not have 2 cells"):
        html_table(["a", "b"], [(1, 2), (3,)])
