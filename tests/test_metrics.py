import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from tlutils import metrics
from tlutils.metrics import accuracy, bootstrap_ci, confusion_matrix, precision_recall_f1


def random_cases(n_cases=50):
    """Seeded (y_true, y_pred, num_classes) triples, small enough that classes go missing."""
    rng = np.random.default_rng(0)
    for case in range(n_cases):
        num_classes = int(rng.integers(1, 8))
        n = int(rng.integers(1, 30))
        y_true = rng.integers(0, num_classes, n)
        y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, num_classes, n))
        if case % 3 == 1:       # a class never predicted
            y_pred[y_pred == num_classes - 1] = 0
        if case % 3 == 2:       # a class with no true example
            y_true[y_true == num_classes - 1] = 0
        yield y_true, y_pred, num_classes


def sklearn_prf(y_true, y_pred, num_classes, average):
    return skm.precision_recall_fscore_support(y_true, y_pred, labels=range(num_classes),
                                               average=average, zero_division=0)[:3]


@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn, num_classes=1
def test_confusion_matrix_equals_sklearn():
    for y_true, y_pred, c in random_cases():
        np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, c),
                                      skm.confusion_matrix(y_true, y_pred, labels=range(c)))


def test_confusion_matrix_default_size_is_largest_label_plus_one():
    cm = confusion_matrix([0, 1], [0, 3])
    assert cm.shape == (4, 4)
    assert cm[0, 0] == 1 and cm[1, 3] == 1 and cm.sum() == 2


def test_accuracy_equals_sklearn_and_is_a_float():
    for y_true, y_pred, _ in random_cases():
        result = accuracy(y_true, y_pred)
        assert type(result) is float
        assert result == pytest.approx(skm.accuracy_score(y_true, y_pred))


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_precision_recall_f1_averages_equal_sklearn(average):
    for y_true, y_pred, c in random_cases():
        result = precision_recall_f1(y_true, y_pred, average=average, num_classes=c)
        assert all(type(value) is float for value in result)
        assert result == pytest.approx(sklearn_prf(y_true, y_pred, c, average))


def test_precision_recall_f1_per_class_equals_sklearn():
    for y_true, y_pred, c in random_cases():
        result = precision_recall_f1(y_true, y_pred, average=None, num_classes=c)
        for ours, theirs in zip(result, sklearn_prf(y_true, y_pred, c, None)):
            assert isinstance(ours, np.ndarray) and ours.shape == (c,)
            np.testing.assert_allclose(ours, theirs)


def test_class_absent_from_both_inputs_scores_zero_and_lowers_macro_only():
    y_true, y_pred = [0, 1, 1], [0, 1, 0]
    p, r, f = precision_recall_f1(y_true, y_pred, average=None, num_classes=3)
    assert (p[2], r[2], f[2]) == (0, 0, 0)
    macro = precision_recall_f1(y_true, y_pred, average="macro", num_classes=3)
    assert macro == pytest.approx(sklearn_prf(y_true, y_pred, 3, "macro"))
    assert macro[1] == pytest.approx((1 + 0.5 + 0) / 3)
    weighted2 = precision_recall_f1(y_true, y_pred, average="weighted", num_classes=2)
    weighted3 = precision_recall_f1(y_true, y_pred, average="weighted", num_classes=3)
    assert weighted2 == pytest.approx(weighted3)


def test_micro_average_equals_accuracy():
    y_true, y_pred = [0, 0, 0, 0, 1, 2], [0, 0, 0, 1, 1, 0]
    assert precision_recall_f1(y_true, y_pred, average="micro") == pytest.approx((4 / 6,) * 3)


@pytest.mark.parametrize("convert", [list, np.asarray, torch.tensor], ids=["list", "numpy", "torch"])
def test_tensors_arrays_and_lists_give_the_same_results(convert):
    y_true, y_pred = [0, 1, 2, 2, 1], [0, 2, 2, 2, 1]
    a, b = convert(y_true), convert(y_pred)
    np.testing.assert_array_equal(confusion_matrix(a, b), [[1, 0, 0], [0, 1, 1], [0, 0, 2]])
    assert accuracy(a, b) == pytest.approx(0.8)
    assert precision_recall_f1(a, b) == pytest.approx(sklearn_prf(y_true, y_pred, 3, "macro"))


@pytest.mark.parametrize("y_true, y_pred, message", [
    ([0, 1, 2], [0, 1], "different lengths"),
    ([], [], "empty"),
    ([[0, 1]], [[0, 1]], "1-D"),
    ([0, -1], [0, 1], "negative"),
    ([0.0, 1.0], [0, 1], "integer"),
])
@pytest.mark.parametrize("function", [confusion_matrix, accuracy, precision_recall_f1, bootstrap_ci])
def test_bad_labels_raise_value_error(function, y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        function(y_true, y_pred)


def test_label_at_or_above_num_classes_raises():
    with pytest.raises(ValueError, match="out of range for num_classes=2"):
        confusion_matrix([0, 1], [0, 2], num_classes=2)
    with pytest.raises(ValueError, match="out of range"):
        precision_recall_f1([0, 2], [0, 1], num_classes=2)


def test_unknown_average_raises():
    with pytest.raises(ValueError, match="unknown average 'binary'"):
        precision_recall_f1([0, 1], [0, 1], average="binary")


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5])
def test_bootstrap_alpha_outside_unit_interval_raises(alpha):
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([0, 1], [0, 1], alpha=alpha)


def test_bootstrap_needs_at_least_one_resample():
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([0, 1], [0, 1], n_boot=0)


def noisy_predictions(n, accuracy_level=0.8, seed=1):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 10, n)
    return y_true, np.where(rng.random(n) < accuracy_level, y_true, (y_true + 1) % 10)


def test_bootstrap_interval_contains_the_point_estimate():
    y_true, y_pred = noisy_predictions(2000)
    low, high = bootstrap_ci(y_true, y_pred)
    assert type(low) is float and type(high) is float
    assert low < accuracy(y_true, y_pred) < high
    f1 = lambda t, p: precision_recall_f1(t, p, num_classes=10)[2]  # noqa: E731
    low, high = bootstrap_ci(y_true, y_pred, metric=f1, n_boot=200)
    assert low < f1(y_true, y_pred) < high


def test_bootstrap_is_deterministic_for_a_seed():
    y_true, y_pred = noisy_predictions(300)
    assert bootstrap_ci(y_true, y_pred, seed=3) == bootstrap_ci(y_true, y_pred, seed=3)
    assert bootstrap_ci(y_true, y_pred, seed=3) != bootstrap_ci(y_true, y_pred, seed=4)


def test_bootstrap_interval_narrows_with_more_data():
    small = bootstrap_ci(*noisy_predictions(100))
    large = bootstrap_ci(*noisy_predictions(4000))
    assert large[1] - large[0] < (small[1] - small[0]) / 3


def test_bootstrap_wider_for_smaller_alpha():
    y_true, y_pred = noisy_predictions(500)
    low90, high90 = bootstrap_ci(y_true, y_pred, alpha=0.1)
    low99, high99 = bootstrap_ci(y_true, y_pred, alpha=0.01)
    assert low99 <= low90 and high90 <= high99


def test_paired_difference_interval_holds_the_mean_and_reads_the_sign():
    a, b = [0.90, 0.92, 0.88, 0.91, 0.93], [0.85, 0.86, 0.86, 0.84, 0.88]
    d = metrics.paired_difference(a, b)
    assert d.n == 5 and d.low <= d.mean <= d.high
    assert math.isclose(d.mean, np.mean(np.subtract(a, b)))
    assert (d.min, d.max) == pytest.approx((0.02, 0.07))
    assert d.reliably_positive() and not d.reliably_negative()
    noise = metrics.paired_difference([0.5, 0.6, 0.4, 0.55], [0.55, 0.5, 0.5, 0.45])
    assert noise.low < 0 < noise.high and not noise.reliably_positive()
    assert metrics.paired_difference(b, a).reliably_negative()


def test_paired_difference_refuses_unpaired_or_single_runs():
    with pytest.raises(ValueError, match="paired"):
        metrics.paired_difference([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="at least 2 seeds"):
        metrics.paired_difference([0.1], [0.2])
