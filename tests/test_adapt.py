"""adapt_batch_norm (AdaBN, chapter 6): the statistics it writes, and what it leaves alone."""
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import tlutils
from tlutils.adapt import adapt_batch_norm

EPS = 1e-5


def tiny_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5),
                          nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 4))
    with torch.no_grad():   # affine parameters that are not the identity
        for bn in (model[1], model[5]):
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
    return model.eval()


def target_images(n: int = 48, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 3.0 * torch.rand(n, 1, 8, 8, generator=g) + 2.0   # far from the default statistics


def loader(x: torch.Tensor, batch_size: int) -> tlutils.TensorLoader:
    return tlutils.TensorLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size)


def reference_statistics(model: nn.Sequential, x: torch.Tensor):
    """Each BatchNorm layer's input statistics over all of x, computed by hand layer by layer,
    the earlier layer normalised with those same statistics (biased variance, as BatchNorm does)."""
    stats = []
    h = model[0](x)
    for conv, bn in ((None, model[1]), (model[4], model[5])):
        if conv is not None:
            h = conv(h)
        mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=True)
        stats.append((mean, var))
        biased = h.var((0, 2, 3), unbiased=False)
        h = (h - mean[None, :, None, None]) / torch.sqrt(biased[None, :, None, None] + EPS)
        h = torch.relu(bn.weight[None, :, None, None] * h + bn.bias[None, :, None, None])
    return stats


bn_layers = tlutils.batch_norm_layers


def test_one_batch_gives_the_exact_statistics_of_every_layer():
    model, x = tiny_model(), target_images()
    with torch.no_grad():
        expected = reference_statistics(model, x)
    assert adapt_batch_norm(model, loader(x, len(x))) is model
    for bn, (mean, var) in zip(bn_layers(model), expected):
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-5)
        assert bn.num_batches_tracked.item() == 1


def test_equal_batches_give_the_exact_mean_and_the_mean_batch_variance():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)).eval()
    x = target_images(60)
    adapt_batch_norm(model, loader(x, 20))
    with torch.no_grad():
        h = model[0](x)
    bn = model[1]
    torch.testing.assert_close(bn.running_mean, h.mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
    batch_vars = torch.stack([h[i:i + 20].var((0, 2, 3)) for i in (0, 20, 40)])
    torch.testing.assert_close(bn.running_var, batch_vars.mean(0), rtol=1e-5, atol=1e-5)
    assert bn.num_batches_tracked.item() == 3


def test_labels_are_ignored_and_bare_image_batches_work():
    x = target_images()
    with_labels, bare = tiny_model(), tiny_model()
    garbage = torch.full((len(x),), -7)
    adapt_batch_norm(with_labels, tlutils.TensorLoader(TensorDataset(x, garbage), 16))
    adapt_batch_norm(bare, [x[:16], x[16:32], x[32:]])
    for a, b in zip(bn_layers(with_labels), bn_layers(bare)):
        assert torch.equal(a.running_mean, b.running_mean)
        assert torch.equal(a.running_var, b.running_var)


def test_parameters_do_not_change():
    model = tiny_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    adapt_batch_norm(model, loader(target_images(), 16))
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name


def test_only_batch_norm_trains_during_the_pass_and_modes_and_momentum_are_restored():
    model = tiny_model()
    model.train()
    model[4].eval()                      # a mixed state, to be restored exactly
    model[5].momentum = 0.3
    modes = {name: m.training for name, m in model.named_modules()}
    seen = {}

    def record_mode(module, inputs, output):
        seen[module] = module.training   # returns None: the output is left alone

    for i in (1, 3, 5):
        model[i].register_forward_hook(record_mode)
    adapt_batch_norm(model, loader(target_images(), 16))
    assert [seen[model[i]] for i in (1, 3, 5)] == [True, False, True]   # BN trains, dropout not
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert model[1].momentum == 0.1 and model[5].momentum == 0.3


def test_works_on_a_frozen_model_and_keeps_it_frozen():
    model, x = tiny_model(), target_images()
    tlutils.freeze(model)
    with torch.no_grad():
        expected = reference_statistics(model, x)
    adapt_batch_norm(model, loader(x, len(x)))
    for bn, (mean, var) in zip(bn_layers(model), expected):
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-5)
    model.train()   # the freeze still holds: BatchNorm stays in eval, nothing requires a gradient
    assert not any(bn.training for bn in bn_layers(model))
    assert not any(p.requires_grad for p in model.parameters())
    assert model[3].training


def test_adapted_model_in_eval_mode_normalises_target_features():
    model, x = tiny_model(), target_images()
    adapt_batch_norm(model, loader(x, len(x)))
    bn = model[1]
    with torch.no_grad():
        normalised = (model[0](x) - bn.running_mean[None, :, None, None]) / torch.sqrt(
            bn.running_var[None, :, None, None] + EPS)
    torch.testing.assert_close(normalised.mean((0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(normalised.std((0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)


def test_source_images_give_back_the_shipped_statistics():
    model, shipped = tlutils.load_pretrained(), tlutils.load_pretrained()
    glyphs = tlutils.render_glyphs(2000, seed=7)
    adapt_batch_norm(model, tlutils.TensorLoader(glyphs, 500), device="cpu")
    for a, b in zip(bn_layers(model), bn_layers(shipped)):
        shift = (a.running_mean - b.running_mean).abs() / b.running_var.sqrt()
        ratio = a.running_var / b.running_var
        assert shift.max() < 0.05
        assert (ratio - 1).abs().max() < 0.1 and abs(ratio.mean() - 1) < 0.02


def test_model_without_batch_norm_raises():
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        adapt_batch_norm(nn.Sequential(nn.Linear(2, 2)), [torch.rand(3, 2)])
    untracked = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        adapt_batch_norm(untracked, [torch.rand(3, 1, 8, 8)])


def test_empty_loader_raises_and_leaves_the_model_as_it_was():
    model = tiny_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    empty = loader(torch.empty(0, 1, 8, 8), 16)
    with pytest.raises(ValueError, match="data loader is empty"):
        adapt_batch_norm(model, empty)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not any(m.training for m in model.modules())
    assert model[1].momentum == 0.1


def test_error_during_the_pass_restores_the_old_statistics():
    model = tiny_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def broken_loader():
        yield target_images(16)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        adapt_batch_norm(model, broken_loader())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not any(m.training for m in model.modules())
