"""Caching a frozen bottom: the top trained on cached outputs sees exactly what the whole network
would compute, and fine_tune_top leaves the shared modules and BatchNorm statistics alone."""
import torch
from torch.utils.data import TensorDataset

import tlutils
from tlutils.cached import cached_outputs, fine_tune_top


def test_cached_outputs_are_the_bottoms_outputs_with_the_labels():
    model = tlutils.load_pretrained()
    bottom, top = tlutils.split_model(model, "features.block4")
    data = TensorDataset(torch.rand(7, 1, 16, 16), torch.arange(7) % 3)
    cached = cached_outputs(bottom, data, transform=lambda x: 1 - x, batch_size=3)
    with torch.no_grad():
        assert torch.allclose(top(cached.tensors[0]), model(1 - data.tensors[0]), atol=1e-6)
    assert torch.equal(cached.tensors[1], data.tensors[1])


def test_fine_tune_top_trains_a_copy_with_a_new_head_and_frozen_batch_norm(bn_statistics):
    model = tlutils.load_pretrained()
    bottom, top = tlutils.split_model(model, "features.block4")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = cached_outputs(bottom, TensorDataset(torch.rand(12, 1, 16, 16), torch.arange(12) % 4))
    net = fine_tune_top(top, train, seed=0, num_classes=4, lr=1e-2, steps=5)
    assert tlutils.get_classifier(net).out_features == 4 and not net.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())   # top untouched
    assert all(torch.equal(a, b) for a, b in zip(bn_statistics(net), bn_statistics(top)))
    assert not torch.equal(net.features_block4[0].weight, top.features_block4[0].weight)


def test_fine_tune_top_is_reproducible_for_a_seed():
    model = tlutils.load_pretrained()
    bottom, top = tlutils.split_model(model, "features.block5")
    train = cached_outputs(bottom, TensorDataset(torch.rand(10, 1, 16, 16), torch.arange(10) % 5))
    a, b = (fine_tune_top(top, train, seed=3, num_classes=5, lr=1e-2, steps=4) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_train_bn_lets_batch_norm_statistics_move(bn_statistics):
    model = tlutils.load_pretrained()
    bottom, top = tlutils.split_model(model, "features.block5")
    train = cached_outputs(bottom, TensorDataset(torch.rand(10, 1, 16, 16), torch.arange(10) % 5))
    net = fine_tune_top(top, train, seed=0, num_classes=5, lr=1e-2, steps=3, train_bn=True)
    assert not all(torch.equal(a, b) for a, b in zip(bn_statistics(net), bn_statistics(top)))
