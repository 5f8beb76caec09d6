"""Classification metrics written out from their definitions, taught in
:doc:`chapter 5 </book/05_evaluation>`.

Every function takes 1-D integer labels as torch tensors, numpy arrays or lists, returns Python
floats for scalars and numpy arrays for everything else, and gives the same numbers as
scikit-learn (the tests cross-check `confusion_matrix`, `accuracy_score` and
`precision_recall_fscore_support(..., labels=range(num_classes), zero_division=0)`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

AVERAGES = ("macro", "micro", "weighted", None)


def _labels(y, name: str) -> np.ndarray:
    """`y` as a 1-D numpy array of non-negative integers, or a ValueError that says what is wrong."""
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels, got shape {y.shape} "
                         "(for scores or logits, pass scores.argmax(1))")
    if y.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.min() < 0:
        raise ValueError(f"{name} has a negative label ({y.min()}); labels are 0, 1, ..., C-1")
    return y


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred have different lengths ({len(y_true)} and {len(y_pred)})")
    return y_true, y_pred


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts `cm[i, j]` of examples of true class i predicted as class j (sklearn's layout).

    `num_classes` defaults to the largest label in either input plus one; pass it so that a class
    missing from a small sample still gets its row and column.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    largest = max(y_true.max(), y_pred.max())
    if num_classes is None:
        num_classes = int(largest) + 1
    elif largest >= num_classes:
        raise ValueError(f"label {largest} is out of range for num_classes={num_classes}")
    # Each (true, pred) pair gets its own cell index true * C + pred; counting those fills the matrix.
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def accuracy(y_true, y_pred) -> float:
    """Fraction of examples whose predicted label equals the true one."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0 (sklearn's `zero_division=0`)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def precision_recall_f1(y_true, y_pred, average: str | None = "macro", num_classes: int | None = None):
    """Precision, recall and F1 from the confusion matrix, as a tuple.

    average:
        "macro": the plain mean over classes, so every class counts the same however rare;
        "micro": computed from the counts pooled over classes (equal to accuracy here, because every
        example has exactly one true and one predicted label);
        "weighted": the mean over classes weighted by each class's number of true examples;
        None: one value per class, as numpy arrays.

    A ratio whose denominator is 0 counts as 0. Classes are 0..num_classes-1, like sklearn with
    `labels=range(num_classes)`: a class absent from both inputs scores 0 and still pulls the macro
    mean down, while "weighted" gives it weight 0.
    """
    if average not in AVERAGES:
        raise ValueError(f"unknown average {average!r}; use one of {AVERAGES}")
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm)
    if average == "micro":
        tp, predicted, actual = tp.sum(), cm.sum(), cm.sum()
    else:
        predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, actual)
    f1 = _safe_divide(2 * tp, predicted + actual)   # = 2PR / (P + R), and 0 when tp = 0
    if average is None:
        return precision, recall, f1
    weights = actual if average == "weighted" else None
    return tuple(float(np.average(m, weights=weights)) for m in (precision, recall, f1))


def bootstrap_ci(y_true, y_pred, metric: Callable = accuracy, n_boot: int = 1000,
                 alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """A (1 - alpha) percentile-bootstrap confidence interval for `metric(y_true, y_pred)`.

    Resamples the examples with replacement `n_boot` times, computes the metric on each resample and
    returns the alpha/2 and 1 - alpha/2 quantiles. It measures how much the score would move on
    another test set of the same size, not the spread across training seeds. Deterministic for a seed.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    y_true, y_pred = _pair(y_true, y_pred)
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, len(y_true), size=(n_boot, len(y_true)))   # all indices at once
    scores = np.array([metric(y_true[idx], y_pred[idx]) for idx in resamples])
    low, high = np.quantile(scores, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedDifference:
    """How much method A beats method B over paired runs (same seed, same data): the mean of
    the per-seed differences A - B, a percentile-bootstrap interval for that mean, and the
    smallest and largest single difference."""

    mean: float
    low: float
    high: float
    min: float
    max: float
    n: int

    def reliably_positive(self) -> bool:
        """A beats B: the whole interval lies above zero."""
        return self.low > 0

    def reliably_negative(self) -> bool:
        """B beats A: the whole interval lies below zero."""
        return self.high < 0

    def for_prose(self, name: str) -> dict[str, float]:
        """The numbers a sentence quotes, by the names a chapter glues them under:
        {name: mean, name_low: low, name_high: high}."""
        return {name: self.mean, f"{name}_low": self.low, f"{name}_high": self.high}


def paired_difference(a, b, n_boot: int = 10_000, alpha: float = 0.05,
                      seed: int = 0) -> PairedDifference:
    """Compare two methods run on the same seeds: `a[i]` and `b[i]` are scores of seed i.

    The seeds, not the test examples, are resampled, so the interval says how much the mean
    difference would move with other seeds (chapter 5's bootstrap, over runs). Pairing removes
    what the seeds share (the same labelled examples, the same initial head). With few seeds
    the interval is rough; it is still a margin measured from the spread, not one lucky run.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D and paired (the same length), got shapes "
                         f"{a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError("a paired comparison needs at least 2 seeds")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return PairedDifference(float(diff.mean()), float(low), float(high), float(diff.min()),
                            float(diff.max()), len(diff))
