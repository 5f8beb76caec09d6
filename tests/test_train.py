import math
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import tlutils.fewshot
import tlutils.train
from tlutils.data import TensorLoader, render_glyphs
from tlutils.freezing import freeze
from tlutils.models import SmallCNN
from tlutils.fewshot import fine_tune
from tlutils.train import (History, evaluate, extract_features, fit, get_device, make_optimizer,
                           predict, set_seed, to_device, train_one_epoch)


class TinyNet(nn.Module):
    """A `features` body with BatchNorm and a `classifier` head, for 2-D toy points."""

    def __init__(self, num_classes=2):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def separable(n=200, seed=0):
    """Linearly separable 2-D points: label 1 above the line x + y = 0, with a margin."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    x = x + 0.5 * torch.sign(x.sum(1, keepdim=True)) * torch.tensor([1.0, 1.0])
    return TensorDataset(x, (x.sum(1) > 0).long())


def loader(dataset, batch_size=32, **kwargs):
    return TensorLoader(dataset, batch_size=batch_size, **kwargs)


def empty_loader():
    return loader(TensorDataset(torch.empty(0, 2), torch.empty(0, dtype=torch.long)))


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


# --- get_device / set_seed -----------------------------------------------------------------------

def test_get_device_passes_explicit_devices_through():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")
    assert get_device("cuda:1") == torch.device("cuda", 1)


def test_get_device_auto_picks_the_best_available():
    if torch.cuda.is_available():
        expected = "cuda"
    elif torch.backends.mps.is_available():
        expected = "mps"
    else:
        expected = "cpu"
    assert get_device("auto") == get_device() == torch.device(expected)


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_get_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert get_device("auto") == torch.device(expected)


def test_set_seed_repeats_python_numpy_and_torch():
    def draws():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    set_seed(123)
    first = draws()
    set_seed(123)
    assert draws() == first
    set_seed(124)
    assert draws() != first


# --- train_one_epoch -----------------------------------------------------------------------------

def test_train_one_epoch_averages_loss_and_accuracy_over_examples():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    data = separable(10)
    x, y = data.tensors
    with torch.no_grad():
        logits = model(x)
    expected_loss = nn.functional.cross_entropy(logits, y).item()
    expected_acc = (logits.argmax(1) == y).float().mean().item()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)   # lr 0: the weights do not move
    result = train_one_epoch(model, nn.CrossEntropyLoss(), opt, loader(data, 4), "cpu",
                             progress=False)
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-6)   # batches of 4, 4 and 2
    assert result["accuracy"] == pytest.approx(expected_acc)


def test_train_one_epoch_steps_the_scheduler_every_batch_and_leaves_train_mode():
    model = TinyNet().eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    train_one_epoch(model, nn.CrossEntropyLoss(), opt, loader(separable(100), 32), "cpu",
                    scheduler=scheduler, progress=False)
    assert scheduler.last_epoch == 4
    assert model.training


def test_train_one_epoch_rejects_an_empty_loader():
    model = TinyNet()
    with pytest.raises(ValueError, match="empty"):
        train_one_epoch(model, nn.CrossEntropyLoss(), make_optimizer(model), empty_loader(), "cpu")


@pytest.mark.parametrize("bad_label", [2, 7, -1])
def test_train_one_epoch_rejects_labels_outside_the_head_range(bad_label):
    model = TinyNet(num_classes=2)
    x, y = separable(20).tensors
    y[5] = bad_label
    before = params(model)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\] for a head with 2 outputs"):
        train_one_epoch(model, nn.CrossEntropyLoss(), make_optimizer(model),
                        loader(TensorDataset(x, y)), "cpu", progress=False)
    assert same(before, params(model))


def test_train_one_epoch_nan_loss_raises_before_updating_weights():
    model = TinyNet()
    x, y = separable(20).tensors
    x[3, 0] = float("nan")
    before = params(model)
    with pytest.raises(FloatingPointError, match="the loss became nan"):
        train_one_epoch(model, nn.CrossEntropyLoss(), make_optimizer(model),
                        loader(TensorDataset(x, y)), "cpu", progress=False)
    assert same(before, params(model))


# --- predict / evaluate / extract_features -------------------------------------------------------

def trained_bn_model():
    """A TinyNet whose running statistics are no longer the initial ones."""
    torch.manual_seed(0)
    model = TinyNet()
    model.train()(separable(64).tensors[0] * 3 + 2)
    return model


@pytest.mark.parametrize("training", [True, False])
def test_predict_uses_eval_mode_and_restores_the_mode(training, bn_statistics):
    model = trained_bn_model().train(training)
    x, y = separable(50).tensors
    stats = bn_statistics(model)
    logits, targets = predict(model, loader(separable(50), 16), "cpu")
    assert model.training == training
    assert same(stats, bn_statistics(model))
    with torch.no_grad():
        expected = model.eval()(x)
    torch.testing.assert_close(logits, expected)
    assert torch.equal(targets, y) and not logits.requires_grad


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_keeps_batch_norm_stats_and_restores_the_mode(training, bn_statistics):
    model = trained_bn_model().train(training)
    data = separable(50)
    stats = bn_statistics(model)
    result = evaluate(model, nn.CrossEntropyLoss(), loader(data, 16), "cpu")
    assert model.training == training
    assert same(stats, bn_statistics(model))
    with torch.no_grad():
        logits = model.eval()(data.tensors[0])
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(logits, data.tensors[1]).item())
    assert result["accuracy"] == pytest.approx((logits.argmax(1) == data.tensors[1]).float().mean().item())


def test_evaluate_without_criterion_reports_nan_loss():
    result = evaluate(TinyNet(), None, loader(separable(10)), "cpu")
    assert math.isnan(result["loss"]) and 0 <= result["accuracy"] <= 1


def test_evaluate_rejects_labels_outside_the_head_range():
    x, y = separable(20).tensors
    y[0] = 3
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\].*from 0 to 3"):
        evaluate(TinyNet(), nn.CrossEntropyLoss(), loader(TensorDataset(x, y)), "cpu")


@pytest.mark.parametrize("run", [
    lambda m, dl: predict(m, dl, "cpu"),
    lambda m, dl: evaluate(m, nn.CrossEntropyLoss(), dl, "cpu"),
    lambda m, dl: extract_features(m.features, dl, "cpu"),
    lambda m, dl: fit(m, dl, epochs=1, device="cpu", progress=False),
], ids=["predict", "evaluate", "extract_features", "fit"])
def test_empty_loader_raises(run):
    with pytest.raises(ValueError, match="the data loader is empty"):
        run(TinyNet(), empty_loader())


def test_drop_last_loader_with_too_few_examples_counts_as_empty():
    dl = loader(separable(10), batch_size=32, drop_last=True)
    with pytest.raises(ValueError, match="drop_last"):
        fit(TinyNet(), dl, epochs=1, device="cpu", progress=False)


def test_extract_features_shape_targets_and_eval_mode(bn_statistics):
    torch.manual_seed(0)
    model = SmallCNN().train()
    model(torch.rand(16, 1, 16, 16) * 2)   # move the running statistics off their defaults
    data = render_glyphs(40, seed=2)
    stats = bn_statistics(model)
    features = extract_features(model.features, loader(data, 16), "cpu")
    x, y = features.tensors
    assert x.shape == (40, model.feature_dim) and torch.equal(y, data.tensors[1])
    assert same(stats, bn_statistics(model)) and model.features.training
    with torch.no_grad():
        torch.testing.assert_close(x, model.eval().features(data.tensors[0]))


def test_extract_features_flattens_spatial_outputs():
    backbone = nn.Conv2d(1, 3, 3)
    x, _ = extract_features(backbone, loader(render_glyphs(5, seed=0), 2), "cpu").tensors
    assert x.shape == (5, 3 * 14 * 14)


# --- make_optimizer / fit ------------------------------------------------------------------------

def test_make_optimizer_is_adamw_over_trainable_params_without_decay_on_1d():
    model = freeze(TinyNet(), "features")
    opt = make_optimizer(model, lr=0.01, weight_decay=0.2)
    assert isinstance(opt, torch.optim.AdamW)
    groups = {g["weight_decay"]: g["params"] for g in opt.param_groups}
    assert all(g["lr"] == 0.01 for g in opt.param_groups)
    assert groups[0.2] == [model.classifier.weight] and groups[0.0] == [model.classifier.bias]


def fit_toy(epochs=4, seed=0, **kwargs):
    set_seed(seed)
    model = TinyNet()
    history = fit(model, loader(separable(200), 32, shuffle=True), epochs=epochs, lr=0.05,
                  device="cpu", progress=False, **kwargs)
    return model, history


def test_fit_lowers_the_loss_and_returns_a_history():
    model, history = fit_toy(epochs=4)
    assert isinstance(history, History)
    assert history.epoch == [1, 2, 3, 4]
    for values in (history.train_loss, history.train_acc, history.val_loss, history.val_acc, history.time):
        assert len(values) == 4
    assert history.train_loss[-1] < history.train_loss[0] / 2
    assert history.train_acc[-1] > 0.95
    assert all(math.isnan(v) for v in history.val_loss + history.val_acc)
    assert all(t > 0 for t in history.time)
    assert history.as_dict() == {"epoch": history.epoch, "train_loss": history.train_loss,
                                 "train_acc": history.train_acc, "val_loss": history.val_loss,
                                 "val_acc": history.val_acc, "time": history.time}


def test_fit_with_validation_loader_records_validation_results():
    _, history = fit_toy(epochs=2, val_loader=loader(separable(100, seed=1)))
    assert not any(math.isnan(v) for v in history.val_loss + history.val_acc)
    assert history.val_acc[-1] > 0.9


def test_fit_learns_rendered_glyphs():
    set_seed(0)
    model = SmallCNN()
    history = fit(model, loader(render_glyphs(256, seed=0), 32, shuffle=True), epochs=3, lr=3e-3,
                  device="cpu", progress=False)
    assert history.train_loss[-1] < history.train_loss[0]


def test_fit_same_seed_same_history_on_cpu():
    model_a, a = fit_toy(epochs=2, seed=5)
    model_b, b = fit_toy(epochs=2, seed=5)
    _, c = fit_toy(epochs=2, seed=6)
    a, b, c = a.as_dict(), b.as_dict(), c.as_dict()
    for history in (a, b, c):
        del history["time"]
    assert a == b and a != c
    assert same(params(model_a), params(model_b))


@pytest.mark.parametrize("training", [True, False])
def test_fit_restores_the_model_mode(training):
    set_seed(0)
    model = TinyNet().train(training)
    fit(model, loader(separable(64)), epochs=1, device="cpu", progress=False,
        val_loader=loader(separable(16)))
    assert all(m.training == training for m in model.modules())


def test_fit_with_given_optimizer_and_no_one_cycle_keeps_its_lr():
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    fit(model, loader(separable(64)), epochs=1, optimizer=opt, one_cycle=False, device="cpu",
        progress=False)
    assert opt.param_groups[0]["lr"] == 0.05


def test_fit_rejects_zero_epochs():
    with pytest.raises(ValueError, match="epochs"):
        fit(TinyNet(), loader(separable(10)), epochs=0, device="cpu")


@pytest.mark.parametrize("steps", [1, 2, 5, 7])
def test_fit_with_steps_takes_exactly_that_many_optimizer_steps(steps):
    """2 batches per epoch: 5 steps are 2 whole epochs and 1 batch of a third; the one-cycle
    schedule spans exactly those steps, ending at its final learning rate."""
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    lrs = []   # the learning rate of each step taken
    optimizer.register_step_post_hook(lambda opt, *_: lrs.append(opt.param_groups[0]["lr"]))
    history = fit(model, loader(separable(64)), steps=steps, optimizer=optimizer, device="cpu",
                  progress=False)
    assert len(lrs) == steps
    assert history.epoch == list(range(1, math.ceil(steps / 2) + 1))
    final_lr = 0.1 / 25 / 1e4   # OneCycleLR's defaults: div_factor 25, final_div_factor 1e4
    assert lrs[-1] == pytest.approx(final_lr)


@pytest.mark.parametrize("budget", [{}, {"epochs": 1, "steps": 2}, {"steps": 0}])
def test_fit_needs_one_budget_of_at_least_one(budget):
    with pytest.raises(ValueError, match="epochs or steps|steps must be >= 1"):
        fit(TinyNet(), loader(separable(10)), **budget, device="cpu", progress=False)


def test_fit_nan_input_raises_floating_point_error():
    x, y = separable(64).tensors
    x[0] = float("nan")
    with pytest.raises(FloatingPointError):
        fit(TinyNet(), loader(TensorDataset(x, y)), epochs=1, device="cpu", progress=False)


# --- tlutils.fewshot.fine_tune, fastai's recipe on top of fit, on this file's toy nets -----------

def record_fit_calls(record_calls):
    """Record, at each call of `fit` by fine_tune, which parameters train and the optimizer given."""
    return record_calls(tlutils.fewshot, "fit", lambda model, loader, **kwargs: {
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "optimizer": kwargs.get("optimizer")})


def test_fine_tune_trains_the_head_then_everything(record_calls):
    calls = record_fit_calls(record_calls)
    set_seed(0)
    model = TinyNet()
    head_history, full_history = fine_tune(model, loader(separable(64)), head_epochs=1, epochs=2,
                                           lr=0.01, head_lr_mult=10.0, device="cpu", progress=False)
    assert isinstance(head_history, History) and isinstance(full_history, History)
    assert head_history.epoch == [1] and full_history.epoch == [1, 2]
    assert calls[0]["requires_grad"] == [False, False, False, False, True, True]
    assert all(calls[1]["requires_grad"])
    head = {id(model.classifier.weight), id(model.classifier.bias)}
    for group in calls[1]["optimizer"].param_groups:   # discriminative: max lr per group
        expected = 0.1 if {id(p) for p in group["params"]} <= head else 0.01
        assert group["max_lr"] == pytest.approx(expected)
    assert all(p.requires_grad for p in model.parameters())
    assert not any("train" in m.__dict__ for m in model.modules())


class SequentialHead(nn.Module):
    """A head inside a Sequential, as torchvision's mobilenet, efficientnet and vgg have."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(2, 8), nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(8, 2))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_fine_tune_trains_a_head_inside_a_sequential(record_calls):
    calls = record_fit_calls(record_calls)
    set_seed(0)
    model = SequentialHead()
    fine_tune(model, loader(separable(64)), head_epochs=1, epochs=1, device="cpu", progress=False)
    assert calls[0]["requires_grad"] == [False, False, True, True]
    assert all(p.requires_grad for p in model.parameters())


# --- CUDA ----------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_with_device_auto():
    set_seed(0)
    model = TinyNet()
    train = loader(separable(200), 32, shuffle=True)
    history = fit(model, train, epochs=4, lr=0.05, device="auto", progress=False,
                  val_loader=loader(separable(100, seed=1)))
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_acc[-1] > 0.9
    logits, targets = predict(model, loader(separable(10)), "auto")
    assert logits.device.type == "cpu" and logits.dtype == torch.float32 and logits.shape == (10, 2)


def test_to_device_stores_conv_weights_channels_last_with_the_same_values():
    model = SmallCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert to_device(model, "cpu") is model
    conv = model.features.block2[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_fit_calls_before_epoch_before_each_epoch():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(8, 1, 8, 8), torch.arange(8) % 2)
    model = SmallCNN(num_classes=2)
    start, seen = model.classifier.weight.detach().clone(), []
    fit(model, TensorLoader(data, 4), epochs=3, progress=False, device="cpu",
        before_epoch=lambda epoch: seen.append((epoch, torch.equal(model.classifier.weight, start))))
    assert seen == [(1, True), (2, False), (3, False)]


def test_model_device_refuses_a_model_split_over_two_devices():
    model = TinyNet()
    model.classifier.to("meta")   # as if only the head had been moved to a GPU
    with pytest.raises(ValueError, match=r"split over \['cpu', 'meta'\].*to_device"):
        tlutils.train.model_device(model)
    with pytest.raises(ValueError, match="split over"):
        evaluate(model, None, loader(separable(10)))


def test_loops_run_where_the_model_is_and_refuse_another_device():
    model = TinyNet().to("meta")
    assert tlutils.train.model_device(model) == torch.device("meta")
    assert tlutils.train.resolve_device(model, None) == torch.device("meta")
    with pytest.raises(ValueError, match="the model is on meta, not on cpu: move it first"):
        predict(model, loader(separable(10)), "cpu")
    assert tlutils.train.model_device(nn.ReLU()) == torch.device("cpu")   # nothing to place


def test_accuracy_on_scores_a_whole_dataset():
    data = separable(50)
    model = TinyNet()
    expected = evaluate(model, None, loader(data, 7))["accuracy"]
    assert tlutils.train.accuracy_on(model, data) == expected


def test_seeds_are_disjoint_blocks_chosen_by_the_environment(monkeypatch):
    monkeypatch.delenv(tlutils.train.SEED_SET_VARIABLE, raising=False)
    assert tlutils.train.seeds(3) == [0, 1, 2]
    monkeypatch.setenv(tlutils.train.SEED_SET_VARIABLE, "2")
    assert tlutils.train.seeds(3) == [2000, 2001, 2002]
    monkeypatch.setenv(tlutils.train.SEED_SET_VARIABLE, "two")
    with pytest.raises(ValueError, match="non-negative integer"):
        tlutils.train.seeds(3)


@pytest.mark.parametrize("extra", [{"lr": 0.1}, {"weight_decay": 0.0}])
def test_fit_refuses_lr_or_weight_decay_beside_an_optimizer(extra):
    model = TinyNet()
    optimizer = make_optimizer(model)
    with pytest.raises(ValueError, match="either an optimizer or lr/weight_decay"):
        fit(model, loader(separable(20)), epochs=1, optimizer=optimizer, progress=False, **extra)
