import pytest
import torch
import torchvision
from torch import nn

from tlutils.freezing import freeze
from tlutils.models import SmallCNN
from tlutils.optim import (adamw, param_groups_discriminative, param_groups_layer_decay,
                           param_groups_weight_decay)

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
