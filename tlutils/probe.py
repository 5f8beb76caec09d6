"""The linear probe as the literature defines it: L2-regularised multinomial logistic regression on
frozen features, solved to convergence by L-BFGS (Kornblith et al. 2019), its strength chosen on
validation. Convex with a unique minimum, so the probe's score depends on the features and the
labels, not on an optimiser's luck. Taught in :doc:`chapter 8 </book/08_few_shot_photos>`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

C_GRID = (0.01, 0.1, 1.0, 10.0)   # inverse L2 strength; a decade apart


def _arrays(dataset: TensorDataset) -> tuple[np.ndarray, np.ndarray]:
    features, labels = dataset.tensors[:2]
    if features.ndim != 2:
        raise ValueError(f"a probe takes feature vectors (N, D), got shape {tuple(features.shape)}: "
                         "extract features first (tlutils.extract_features)")
    return features.float().numpy(), labels.numpy()


def fit_probe(train: TensorDataset, C: float = 1.0):
    """A fitted probe (scikit-learn pipeline: standardise, then logistic regression with inverse
    L2 strength `C`) on `train`'s (features, labels). Its `score(x, y)` is accuracy.

    BLAS runs on one thread: problems this small are dominated by thread start-up, and a busy
    machine (two notebooks at once) makes threaded BLAS tens of times slower.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    x, y = _arrays(train)
    if len(np.unique(y)) < 2:
        raise ValueError("a probe needs at least two classes in its training set")
    with threadpool_limits(1):
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000)).fit(x, y)


def probe_accuracy(probe, test: TensorDataset) -> float:
    """The fitted probe's accuracy on `test`'s (features, labels)."""
    from threadpoolctl import threadpool_limits

    x, y = _arrays(test)
    with threadpool_limits(1):
        return float(probe.score(x, y))


def as_linear(probe) -> nn.Linear:
    """The fitted probe as one `nn.Linear` on raw features, its standardisation folded into the
    weights, so that a network can carry it as its head (LP-FT fine-tunes from it). Its logits are
    the probe's decision function; the classes are 0 .. n - 1."""
    scaler, logistic = probe[0], probe[-1]
    classes = logistic.classes_
    if not np.array_equal(classes, np.arange(len(classes))):
        raise ValueError(f"the probe must have seen every class 0 .. n - 1, got {classes.tolist()}")
    coef, intercept = logistic.coef_, logistic.intercept_
    if len(classes) == 2:   # scikit-learn keeps one row, the logit of class 1 against class 0
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    weight = coef / scaler.scale_
    bias = intercept - weight @ scaler.mean_
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
    return head


def choose_C(train: TensorDataset, val: TensorDataset, grid: Sequence[float] = C_GRID) -> float:
    """The `C` of `grid` whose probe, fitted on `train`, scores best on `val` (ties: the
    stronger regularisation). Never choose it on the test split."""
    scores = [probe_accuracy(fit_probe(train, C), val) for C in grid]
    return grid[int(np.argmax(scores))]


def linear_probe(train: TensorDataset, test: TensorDataset, C: float = 1.0) -> float:
    """Fit a probe on `train`, return its accuracy on `test` (both feature datasets)."""
    return probe_accuracy(fit_probe(train, C), test)

