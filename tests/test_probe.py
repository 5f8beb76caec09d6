"""The linear probe: L2-regularised logistic regression, solved to convergence, C chosen on
validation; clear errors for inputs it cannot use."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch.utils.data import TensorDataset

from tlutils.probe import C_GRID, as_linear, choose_C, fit_probe, linear_probe, probe_accuracy


def blobs(n_per_class=20, dim=8, seed=0, spread=1.0):
    centres = 3 * torch.randn(3, dim, generator=torch.Generator().manual_seed(99))
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n_per_class)
    return TensorDataset(centres[y] + spread * torch.randn(len(y), dim, generator=g), y)


def test_probe_equals_sklearn_on_standardised_features():
    train, test = blobs(seed=0), blobs(seed=1)
    x, y = train.tensors[0].numpy(), train.tensors[1].numpy()
    scaler = StandardScaler().fit(x)
    reference = LogisticRegression(C=0.1, max_iter=5000).fit(scaler.transform(x), y)
    probe = fit_probe(train, C=0.1)
    np.testing.assert_allclose(probe[-1].coef_, reference.coef_, rtol=1e-4, atol=1e-6)
    assert probe_accuracy(probe, test) == reference.score(scaler.transform(test.tensors[0].numpy()),
                                                          test.tensors[1].numpy())


def test_probe_converges_on_separable_points_because_of_the_l2_term():
    probe = fit_probe(blobs(n_per_class=1, spread=0.0), C=1.0)   # one point per class: separable
    assert probe[-1].n_iter_[0] < 5000 and np.isfinite(probe[-1].coef_).all()


def test_linear_probe_separates_easy_blobs():
    assert linear_probe(blobs(seed=0), blobs(seed=1)) == 1.0


def test_choose_c_picks_the_best_validation_score(monkeypatch):
    import tlutils.probe as probe_module

    monkeypatch.setattr(probe_module, "probe_accuracy", lambda probe, val: {0.01: 0.2, 0.1: 0.9, 1.0: 0.9,
                                                                            10.0: 0.5}[probe[-1].C])
    assert choose_C(blobs(), blobs(seed=1)) == 0.1   # a tie goes to the stronger regularisation
    assert C_GRID == (0.01, 0.1, 1.0, 10.0)


@pytest.mark.parametrize("dataset, match", [
    (TensorDataset(torch.rand(4, 2, 3), torch.tensor([0, 1, 0, 1])), r"feature vectors \(N, D\)"),
    (TensorDataset(torch.rand(4, 3), torch.zeros(4, dtype=torch.long)), "at least two classes"),
])
def test_probe_refuses_what_it_cannot_fit(dataset, match):
    with pytest.raises(ValueError, match=match):
        fit_probe(dataset)


def test_probe_refuses_a_non_positive_c():
    with pytest.raises(ValueError, match="C must be > 0"):
        fit_probe(blobs(), C=0)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_as_linear_computes_the_probes_logits_from_raw_features(n_classes):
    train = blobs(spread=2.0)
    train = TensorDataset(*(t[train.tensors[1] < n_classes] for t in train.tensors))
    probe = fit_probe(train, C=0.3)
    head = as_linear(probe)
    x = train.tensors[0]
    with torch.no_grad():
        logits = head(x).double()
    np.testing.assert_array_equal(logits.argmax(1).numpy(), probe.predict(x.numpy()))
    probabilities = torch.softmax(logits, 1).numpy()
    np.testing.assert_allclose(probabilities, probe.predict_proba(x.numpy()), atol=1e-5)


def test_as_linear_refuses_a_probe_that_missed_a_class():
    train = blobs()
    skipped = TensorDataset(*(t[train.tensors[1] != 1] for t in train.tensors))
    with pytest.raises(ValueError, match=r"every class 0 \.\. n - 1, got \[0, 2\]"):
        as_linear(fit_probe(skipped))
