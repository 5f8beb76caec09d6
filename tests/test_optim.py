import math

import pytest
import torch
import torchvision
from torch import nn

from tlutils.freezing import freeze
from tlutils.models import SmallCNN
from tlutils.optim import (adamw, decay_toward, param_groups_discriminative,
                           param_groups_layer_decay, param_groups_weight_decay)

ALL_GROUPINGS = {
    "weight_decay": lambda model: param_groups_weight_decay(model, lr=0.1, weight_decay=0.05),
    "discriminative": lambda model: param_groups_discriminative(model, lr=0.1, weight_decay=0.05),
    "layer_decay": lambda model: param_groups_layer_decay(model, lr=0.1, weight_decay=0.05),
}


class HeadInSequential(nn.Module):
    """No `features`, and a head inside a Sequential with a norm layer (as mnasnet, convnext)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.block = nn.Linear(8, 8)
        self.classifier = nn.Sequential(nn.LayerNorm(8), nn.Dropout(0.1), nn.Linear(8, 3))

    def forward(self, x):
        return self.classifier(self.block(self.stem(x)))


MODELS = {
    "smallcnn": SmallCNN,
    "smallcnn_block1_frozen": lambda: freeze(SmallCNN(), "features.block1"),
    "smallcnn_train_bn": lambda: freeze(SmallCNN(), "features", train_bn=True),
    "head_in_sequential": HeadInSequential,
    "resnet18": lambda: torchvision.models.get_model("resnet18", weights=None),
    "mobilenet_v2": lambda: torchvision.models.get_model("mobilenet_v2", weights=None),
    "mnasnet0_5": lambda: torchvision.models.get_model("mnasnet0_5", weights=None),
}


def lr_of(groups):
    """{parameter id: (lr, weight_decay)} of a list of parameter groups."""
    return {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}


def names_with(model, groups, predicate):
    ids = {id(p) for g in groups if predicate(g) for p in g["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


# --- every grouping: each trainable parameter exactly once ---------------------------------------

@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("grouping", ALL_GROUPINGS)
def test_groups_cover_every_trainable_parameter_exactly_once(grouping, model_name):
    model = MODELS[model_name]()
    groups = ALL_GROUPINGS[grouping](model)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert all(g["params"] for g in groups), "an empty group"
    torch.optim.SGD(groups)   # torch's own check: no parameter in two groups


@pytest.mark.parametrize("grouping", ALL_GROUPINGS)
def test_groups_leave_out_frozen_parameters(grouping):
    model = freeze(SmallCNN(), ["features.block1", "features.block2"])
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    assert len(frozen) == 6
    grouped = {id(p) for g in ALL_GROUPINGS[grouping](model) for p in g["params"]}
    assert not grouped & frozen


@pytest.mark.parametrize("grouping", ALL_GROUPINGS)
def test_groups_of_an_all_frozen_model_raise(grouping):
    with pytest.raises(ValueError, match="no trainable parameters"):
        ALL_GROUPINGS[grouping](freeze(SmallCNN()))


@pytest.mark.parametrize("make_groups", [
    lambda m: param_groups_weight_decay(m, weight_decay=-0.1),
    lambda m: param_groups_discriminative(m, lr=0.1, weight_decay=-0.1),
    lambda m: param_groups_layer_decay(m, lr=0.1, weight_decay=-0.1),
], ids=list(ALL_GROUPINGS))
def test_groups_reject_negative_weight_decay(make_groups):
    with pytest.raises(ValueError, match="weight_decay"):
        make_groups(SmallCNN())


@pytest.mark.parametrize("decay", [0.0, -0.5, 1.5])
def test_param_groups_layer_decay_rejects_decay_outside_0_1(decay):
    with pytest.raises(ValueError, match="decay must be in"):
        param_groups_layer_decay(SmallCNN(), lr=0.1, decay=decay)


@pytest.mark.parametrize("grouping", ALL_GROUPINGS)
@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.AdamW])
def test_groups_work_with_torch_optimizers_and_one_cycle(grouping, optimizer):
    torch.manual_seed(0)
    model = freeze(SmallCNN(), "features.block1")
    groups = ALL_GROUPINGS[grouping](model)
    lrs = [g["lr"] for g in groups]
    opt = optimizer(groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [g["weight_decay"] for g in groups]
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lrs, total_steps=4)
    assert [g["max_lr"] for g in opt.param_groups] == lrs
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([lr / 25 for lr in lrs])
    before = [p.clone() for p in model.parameters()]
    for _ in range(4):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.rand(8, 1, 16, 16)), torch.arange(8)).backward()
        opt.step()
        schedule.step()
    for p, old in zip(model.parameters(), before):
        assert torch.equal(p, old) != p.requires_grad   # frozen unchanged, trainable moved


# --- param_groups_weight_decay -------------------------------------------------------------------

def test_param_groups_weight_decay_skips_biases_and_1d_parameters():
    model = SmallCNN()
    groups = param_groups_weight_decay(model, lr=0.1, weight_decay=0.05)
    assert len(groups) == 2 and all(g["lr"] == 0.1 for g in groups)
    decayed = names_with(model, groups, lambda g: g["weight_decay"] == 0.05)
    not_decayed = names_with(model, groups, lambda g: g["weight_decay"] == 0.0)
    assert decayed == {f"features.block{i}.0.weight" for i in range(1, 6)} | {"classifier.weight"}
    assert not_decayed == {n for n, p in model.named_parameters() if p.ndim == 1}
    assert "classifier.bias" in not_decayed and "features.block3.1.weight" in not_decayed


def test_param_groups_weight_decay_skips_a_2d_parameter_named_bias():
    model = nn.Module()
    model.weight = nn.Parameter(torch.ones(2, 3))
    model.sub = nn.Module()
    model.sub.bias = nn.Parameter(torch.ones(2, 3))   # unusual, but a bias by name
    groups = param_groups_weight_decay(model, weight_decay=0.5)
    assert lr_of(groups)[id(model.weight)][1] == 0.5
    assert lr_of(groups)[id(model.sub.bias)][1] == 0.0


# --- param_groups_discriminative -----------------------------------------------------------------

def test_param_groups_discriminative_head_at_lr_times_mult_body_at_lr():
    model = SmallCNN()
    groups = param_groups_discriminative(model, lr=1e-3, head_lr_mult=10.0, weight_decay=0.05)
    by_param = lr_of(groups)
    for name, p in model.named_parameters():
        lr, wd = by_param[id(p)]
        assert lr == (1e-3 * 10.0 if name.startswith("classifier.") else 1e-3), name
        assert wd == (0.0 if p.ndim == 1 else 0.05), name


def test_param_groups_discriminative_finds_a_head_inside_a_sequential():
    model = torchvision.models.get_model("mobilenet_v2", weights=None)
    by_param = lr_of(param_groups_discriminative(model, lr=0.01, head_lr_mult=3.0))
    head = model.classifier[1]
    for p in model.parameters():
        is_head = any(p is q for q in head.parameters())
        assert by_param[id(p)][0] == pytest.approx(0.03 if is_head else 0.01)


# --- param_groups_layer_decay --------------------------------------------------------------------

def test_param_groups_layer_decay_lr_grows_by_decay_toward_the_head():
    model = SmallCNN()
    lr, decay = 0.1, 0.5
    by_param = lr_of(param_groups_layer_decay(model, lr=lr, decay=decay))
    stages = [getattr(model.features, f"block{i}") for i in range(1, 6)] + [model.classifier]
    stage_lrs = []
    for i, stage in enumerate(stages):
        lrs = {by_param[id(p)][0] for p in stage.parameters()}
        assert lrs == {lr * decay ** (5 - i)}
        stage_lrs.append(lrs.pop())
    assert stage_lrs[-1] == lr
    for lower, upper in zip(stage_lrs, stage_lrs[1:]):
        assert lower < upper and lower / upper == pytest.approx(decay)


def test_param_groups_layer_decay_of_one_is_a_single_lr():
    groups = param_groups_layer_decay(SmallCNN(), lr=0.1, decay=1.0)
    assert {g["lr"] for g in groups} == {0.1}


def test_param_groups_layer_decay_stages_of_a_model_without_features():
    model = torchvision.models.get_model("resnet18", weights=None)
    by_param = lr_of(param_groups_layer_decay(model, lr=1.0, decay=0.5))
    order = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    for i, name in enumerate(order):
        assert {by_param[id(p)][0] for p in getattr(model, name).parameters()} == {0.5 ** (6 - i)}


def test_param_groups_layer_decay_head_inside_a_sequential_keeps_the_head_lr():
    model = HeadInSequential()
    by_param = lr_of(param_groups_layer_decay(model, lr=1.0, decay=0.5))
    expected = {"stem": 0.125, "block": 0.25, "classifier.0": 0.5, "classifier.2": 1.0}
    for name, p in model.named_parameters():
        assert by_param[id(p)][0] == expected[name.rsplit(".", 1)[0]], name


def test_param_groups_layer_decay_frozen_stages_keep_the_others_lr():
    model = freeze(SmallCNN(), ["features.block1", "features.block2"])
    by_param = lr_of(param_groups_layer_decay(model, lr=1.0, decay=0.5))
    assert by_param[id(model.features.block3[0].weight)][0] == 0.5 ** 3
    assert by_param[id(model.classifier.weight)][0] == 1.0


def test_param_groups_layer_decay_raises_when_parameters_belong_to_no_stage():
    model = SmallCNN()
    model.scale = nn.Parameter(torch.ones(1))   # a parameter outside features and the head
    with pytest.raises(ValueError, match="param_groups_discriminative"):
        param_groups_layer_decay(model, lr=0.1)


def test_adamw_is_fused_and_takes_the_same_steps_as_the_default():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    fused = adamw(a.parameters(), lr=1e-2, weight_decay=0.1)
    plain = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1)
    assert fused.defaults["fused"] is True
    x = torch.randn(8, 4)
    for _ in range(5):
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


# --- decay_toward (decoupled L2-SP) --------------------------------------------------------------

class TwoWeights(nn.Module):
    """Two parameters that start at 1, to be pulled toward a centre of 0.25."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.ones(3))
        self.b = nn.Parameter(torch.ones(2, 2))


def centre_of(model, value=0.25):
    return {name: torch.full_like(p, value) for name, p in model.named_parameters()}


def no_data_gradient_steps(model, optimizer, steps, scheduler=None, loss=None):
    """`steps` optimizer steps on a loss whose gradient is zero (unless `loss` is given)."""
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        params = list(model.parameters())
        (loss(model) if loss else sum((0.0 * p).sum() for p in params)).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def test_decay_toward_shrinks_the_displacement_by_exactly_one_minus_lr_alpha_per_step():
    model = TwoWeights()
    centre = centre_of(model)
    lr, alpha, steps = 0.1, 0.5, 20
    optimizer = adamw(model.parameters(), lr=lr, weight_decay=0.0)   # fused, as the course uses
    decay_toward(optimizer, model, centre, alpha)
    no_data_gradient_steps(model, optimizer, steps)
    expected = 0.25 + (1 - 0.25) * (1 - lr * alpha) ** steps
    for p in model.parameters():
        torch.testing.assert_close(p.detach(), torch.full_like(p, expected))


def test_the_same_pull_as_a_loss_term_under_adam_is_not_decoupled():
    """Added to the loss, the L2-SP term goes through Adam's normalisation (Adam + L2): its first
    step moves the weight by lr whatever alpha is, here almost 3x the decoupled pull's step."""
    model = TwoWeights()
    centre = centre_of(model)
    lr, alpha, steps = 0.1, 0.5, 20
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    l2_sp = lambda m: alpha / 2 * sum(((p - centre[n]) ** 2).sum() for n, p in m.named_parameters())
    no_data_gradient_steps(model, optimizer, 1, loss=l2_sp)
    decoupled_first_step = lr * alpha * (1 - 0.25)
    assert 1 - model.a[0].item() == pytest.approx(lr, rel=1e-3)
    assert 1 - model.a[0].item() > 2 * decoupled_first_step


def test_decay_toward_follows_each_groups_current_learning_rate():
    model = TwoWeights()
    centre = centre_of(model)
    alpha = 0.5
    optimizer = torch.optim.AdamW([{"params": [model.a], "lr": 0.1},
                                   {"params": [model.b], "lr": 0.4}], weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    decay_toward(optimizer, model, centre, alpha)
    no_data_gradient_steps(model, optimizer, 4, scheduler=schedule)
    for p, lr in ((model.a, 0.1), (model.b, 0.4)):
        factor = math.prod(1 - lr * 0.5 ** t * alpha for t in range(4))
        torch.testing.assert_close(p.detach(), torch.full_like(p, 0.25 + 0.75 * factor))


def train_two_copies(weight_decay_a, weight_decay_b, alpha_b, centre_b, steps=5):
    """Train two copies of one Linear on the same data; copy b also gets `decay_toward`."""
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    opt_a = adamw(a.parameters(), lr=1e-2, weight_decay=weight_decay_a)
    opt_b = adamw(b.parameters(), lr=1e-2, weight_decay=weight_decay_b)
    decay_toward(opt_b, b, centre_b(b), alpha_b)
    x = torch.randn(8, 4)
    for _ in range(steps):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    return a, b


def test_decay_toward_with_alpha_zero_is_plain_adamw():
    a, b = train_two_copies(0.1, 0.1, 0.0, lambda m: centre_of(m, 5.0))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_decay_toward_zero_is_adamw_weight_decay():
    a, b = train_two_copies(0.3, 0.0, 0.3, lambda m: centre_of(m, 0.0))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_decay_toward_pulls_only_the_named_parameters_and_skips_those_without_gradient():
    model = TwoWeights()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.0)
    decay_toward(optimizer, model, {"a": torch.zeros(3)}, alpha=1.0)
    no_data_gradient_steps(model, optimizer, 1, loss=lambda m: (0.0 * m.b).sum())   # a: no grad
    assert torch.equal(model.a, torch.ones(3)) and torch.equal(model.b, torch.ones(2, 2))
    no_data_gradient_steps(model, optimizer, 1)
    torch.testing.assert_close(model.a.detach(), torch.full((3,), 0.9))
    assert torch.equal(model.b, torch.ones(2, 2))


def test_decay_toward_stops_when_its_handle_is_removed():
    model = TwoWeights()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.0)
    handle = decay_toward(optimizer, model, centre_of(model), alpha=1.0)
    handle.remove()
    no_data_gradient_steps(model, optimizer, 3)
    assert torch.equal(model.a, torch.ones(3))


@pytest.mark.parametrize("centre, alpha, match", [
    ({"a": torch.zeros(3)}, -0.1, "alpha must be >= 0"),
    ({"a": torch.zeros(3)}, float("nan"), "alpha must be >= 0"),
    ({"c": torch.zeros(3)}, 1.0, "not a parameter of the model"),
    ({"b": torch.zeros(4)}, 1.0, "has shape"),
    ({}, 1.0, "names no parameter"),
], ids=["negative_alpha", "nan_alpha", "unknown_name", "wrong_shape", "empty_centre"])
def test_decay_toward_rejects_bad_input(centre, alpha, match):
    model = TwoWeights()
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match=match):
        decay_toward(optimizer, model, centre, alpha)


def test_decay_toward_rejects_the_parameter_itself_as_centre():
    model = TwoWeights()
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="pass a copy"):
        decay_toward(optimizer, model, {n: p.detach() for n, p in model.named_parameters()}, 1.0)


def test_decay_toward_rejects_a_parameter_the_optimizer_does_not_train():
    model = TwoWeights()
    optimizer = torch.optim.AdamW([model.a])
    with pytest.raises(ValueError, match="'b' is not optimised"):
        decay_toward(optimizer, model, centre_of(model), 1.0)
