import copy

import pytest
import torch
from torch import nn

from tlutils.freezing import (batch_norm_layers, count_parameters, freeze, freeze_batch_norm,
                              trainable_parameters, unfreeze)
from tlutils.models import SmallCNN


def others(module):
    """Every module that is not a BatchNorm layer, the container itself included."""
    return [m for m in module.modules() if not isinstance(m, nn.modules.batchnorm._BatchNorm)]


def forward_in_train_mode(model):
    model.train()
    model(torch.rand(8, 1, 16, 16) * 3 + 1)   # statistics far from the initial (0, 1)


def test_freeze_whole_model_freezes_params_and_batch_norm():
    model = SmallCNN()
    assert freeze(model) is model
    assert not any(p.requires_grad for p in model.parameters())
    assert len(batch_norm_layers(model)) == 5
    assert not any(bn.training for bn in batch_norm_layers(model))


def test_frozen_batch_norm_stays_in_eval_after_model_train():
    model = freeze(SmallCNN().eval())
    model.train()
    assert not any(bn.training for bn in batch_norm_layers(model))
    assert all(m.training for m in others(model))
    model.eval()
    assert not any(m.training for m in model.modules())


def test_frozen_batch_norm_running_stats_unchanged_by_forward_in_train_mode(bn_statistics):
    model = freeze(SmallCNN())
    before = bn_statistics(model)
    forward_in_train_mode(model)
    assert all(torch.equal(a, b) for a, b in zip(before, bn_statistics(model)))


def test_unfrozen_batch_norm_running_stats_change_in_train_mode(bn_statistics):
    model = SmallCNN()   # the control for the test above: the forward does move the statistics
    before = bn_statistics(model)
    forward_in_train_mode(model)
    assert not any(torch.equal(a, b) for a, b in zip(before, bn_statistics(model)))


def test_frozen_model_gets_no_gradients():
    model = SmallCNN()
    freeze(model, "features")
    model(torch.rand(4, 1, 16, 16)).sum().backward()
    assert all(p.grad is None for p in model.features.parameters())
    assert all(p.grad is not None for p in model.classifier.parameters())


def test_freeze_with_train_bn_keeps_batch_norm_trainable_and_following_the_model(bn_statistics):
    model = freeze(SmallCNN(), train_bn=True)
    for m in model.modules():
        for p in m.parameters(recurse=False):
            assert p.requires_grad == isinstance(m, nn.BatchNorm2d)
    model.eval()
    assert not any(bn.training for bn in batch_norm_layers(model))
    model.train()
    assert all(bn.training for bn in batch_norm_layers(model))
    assert not any("train" in bn.__dict__ for bn in batch_norm_layers(model))
    before = bn_statistics(model)
    forward_in_train_mode(model)
    assert not any(torch.equal(a, b) for a, b in zip(before, bn_statistics(model)))


def test_freeze_by_name_only_affects_that_submodule():
    model = freeze(SmallCNN(), ["features.block1"])
    block1 = model.features.block1
    frozen = {id(p) for p in block1.parameters()}
    assert len(frozen) == 3   # conv weight, BN weight and bias
    for p in model.parameters():
        assert p.requires_grad == (id(p) not in frozen)
    model.train()
    assert not block1[1].training
    assert all(bn.training for bn in batch_norm_layers(model) if bn is not block1[1])
    assert all(m.training for m in others(model))


def test_freeze_accepts_a_single_name():
    model = freeze(SmallCNN(), "features.block2")
    assert not any(p.requires_grad for p in model.features.block2.parameters())
    assert all(p.requires_grad for p in model.features.block1.parameters())


def test_freeze_by_module_objects_only_affects_those_modules():
    model = SmallCNN()
    freeze(model, [model.features.block3, model.classifier])
    frozen = {id(p) for m in (model.features.block3, model.classifier) for p in m.parameters()}
    for p in model.parameters():
        assert p.requires_grad == (id(p) not in frozen)
    model.train()
    assert [bn.training for bn in batch_norm_layers(model)] == [True, True, False, True, True]


def test_freeze_unknown_name_raises_naming_it():
    model = SmallCNN()
    with pytest.raises(ValueError, match=r"no submodule 'features\.block9'.*\['features', 'classifier'\]"):
        freeze(model, ["features.block1", "features.block9"])
    with pytest.raises(ValueError, match="'head'"):
        unfreeze(model, "head")


def test_freeze_handles_batch_norm_1d():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    freeze(model).train()
    assert not model[1].training and model[0].training


def test_unfreeze_restores_gradients_and_batch_norm_follows_the_model_again():
    model = freeze(SmallCNN())
    assert unfreeze(model) is model
    assert all(p.requires_grad for p in model.parameters())
    assert not any("train" in bn.__dict__ for bn in batch_norm_layers(model))
    model.train()
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("training", [True, False])
def test_unfreeze_puts_batch_norm_in_the_model_mode(training):
    model = SmallCNN().train(training)
    freeze(model)
    unfreeze(model)
    assert all(bn.training == training for bn in batch_norm_layers(model))


def test_unfreeze_by_name_only_affects_that_submodule():
    model = freeze(SmallCNN())
    unfreeze(model, "features.block5")
    block5 = {id(p) for p in model.features.block5.parameters()}
    for p in model.parameters():
        assert p.requires_grad == (id(p) in block5)
    model.train()
    assert [bn.training for bn in batch_norm_layers(model)] == [False, False, False, False, True]


def test_freeze_batch_norm_keeps_batch_norm_in_eval_and_leaves_requires_grad(bn_statistics):
    model = SmallCNN()
    assert freeze_batch_norm(model) is model
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    assert not any(bn.training for bn in batch_norm_layers(model))
    assert all(m.training for m in others(model))
    before = bn_statistics(model)
    forward_in_train_mode(model)
    assert all(torch.equal(a, b) for a, b in zip(before, bn_statistics(model)))


def test_trainable_parameters_are_the_requires_grad_ones_in_order():
    model = SmallCNN()
    assert trainable_parameters(model) == list(model.parameters())
    freeze(model, "features")
    trainable = trainable_parameters(model)
    assert len(trainable) == 2
    assert trainable[0] is model.classifier.weight and trainable[1] is model.classifier.bias
    freeze(model)
    assert trainable_parameters(model) == []


def test_count_parameters_exact():
    in_channels, widths, num_classes = 1, (16, 32, 32, 64, 64), 10
    c_in = (in_channels,) + widths[:-1]
    convs = sum(a * b * 3 * 3 for a, b in zip(c_in, widths))   # bias-free 3x3 convolutions
    bns = sum(2 * c for c in widths)                            # BatchNorm weight and bias
    head = widths[-1] * num_classes + num_classes
    assert (convs, bns, head) == (69264, 416, 650)
    model = SmallCNN(num_classes, in_channels, widths)
    assert count_parameters(model) == count_parameters(model, trainable_only=True) == convs + bns + head
    freeze(model, "features")
    assert count_parameters(model) == convs + bns + head
    assert count_parameters(model, trainable_only=True) == head
    unfreeze(model)
    freeze(model, "features", train_bn=True)
    assert count_parameters(model, trainable_only=True) == bns + head
    freeze(model)
    assert count_parameters(model, trainable_only=True) == 0


def test_deepcopy_of_frozen_model_stays_frozen(bn_statistics):
    original = freeze(SmallCNN(), "features")
    clone = copy.deepcopy(original)
    original.eval()
    clone.train()
    assert [p.requires_grad for p in clone.parameters()] == [p.requires_grad for p in original.parameters()]
    assert not any(bn.training for bn in batch_norm_layers(clone))
    assert all(m.training for m in others(clone))
    assert not any(m.training for m in original.modules())   # the clone's train() left it alone
    for bn in batch_norm_layers(clone):
        assert bn.train.__self__ is bn
    before = bn_statistics(clone)
    forward_in_train_mode(clone)
    assert all(torch.equal(a, b) for a, b in zip(before, bn_statistics(clone)))
    unfreeze(clone).train()
    assert all(bn.training for bn in batch_norm_layers(clone))
    assert not any(bn.training for bn in batch_norm_layers(original.train()))


def test_batch_norm_layers_finds_every_dimension_and_nothing_else():
    model = nn.Sequential(nn.BatchNorm1d(3), nn.Sequential(nn.BatchNorm2d(3), nn.LayerNorm(3)),
                          nn.GroupNorm(1, 3), nn.BatchNorm3d(3), nn.Linear(3, 3))
    assert batch_norm_layers(model) == [model[0], model[1][0], model[3]]
