"""tlutils.fewshot: the strategies of chapter 4, the parallel runner and the recipe search.

The accuracies the recipes reach are checked in test_shipped_model.py; here, what each piece does.
"""
import dataclasses
import math
from functools import partial
from unittest import mock

import pytest
import torch
from torch import nn

import tlutils
from tlutils import fewshot

BLOCKS = [f"features.block{i}" for i in range(1, 6)]
TINY = dataclasses.replace(fewshot.RECIPES["fine-tune"], steps=6)


@pytest.fixture(scope="module")
def few():
    return tlutils.few_shot_subset(tlutils.load_handwritten()[0], 1, 0)


def trains(model, prefix):
    return {p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix + ".")}


@pytest.mark.parametrize("n_blocks", range(6))
def test_unfreeze_top_trains_the_top_blocks_and_the_head(n_blocks):
    model = tlutils.freeze(tlutils.load_pretrained())   # the head frozen too: it must train again
    assert fewshot.unfreeze_top(model, n_blocks) is model
    for i, block in enumerate(BLOCKS):
        assert trains(model, block) == {i >= 5 - n_blocks}, block
    assert trains(model, "classifier") == {True}
    model.train()
    bn_modes = [model.get_submodule(block)[1].training for block in BLOCKS]
    assert bn_modes == [i >= 5 - n_blocks for i in range(5)]


def test_unfreeze_top_can_freeze_blocks_again():
    model = fewshot.unfreeze_top(tlutils.load_pretrained(), 5)
    fewshot.unfreeze_top(model, 1)
    assert [trains(model, block) for block in BLOCKS] == [{False}] * 4 + [{True}]


@pytest.mark.parametrize("n_blocks", [-1, 6])
def test_unfreeze_top_rejects_a_number_of_blocks_it_does_not_have(n_blocks):
    with pytest.raises(ValueError, match="between 0 and 5"):
        fewshot.unfreeze_top(tlutils.load_pretrained(), n_blocks)


def head_similarity(model):
    shipped = tlutils.load_pretrained().classifier.weight.flatten()
    return nn.functional.cosine_similarity(model.classifier.weight.flatten().cpu(), shipped, dim=0)


def test_fine_tune_keeps_the_head_when_the_classes_match(few):
    assert head_similarity(fewshot.train_fine_tune(few, recipe=TINY)) > 0.99


def test_fine_tune_with_new_head_replaces_it(few):
    assert abs(head_similarity(fewshot.train_fine_tune(few, recipe=TINY, new_head=True))) < 0.5


def test_fine_tune_cannot_keep_a_head_of_the_wrong_size(few):
    with pytest.raises(ValueError, match="cannot keep the head.*pass new_head=True"):
        fewshot.train_fine_tune(few, recipe=TINY, num_classes=3)


def test_gradual_unfreezing_adds_one_block_per_stage_from_the_top(few):
    with mock.patch.object(fewshot, "unfreeze_top", wraps=fewshot.unfreeze_top) as spy:
        model = fewshot.train_gradual_unfreezing(few, recipe=TINY)
    assert [c.args[1] for c in spy.call_args_list] == [0, 1, 2, 3, 4, 5]
    assert not model.training
    assert all(p.requires_grad for p in model.parameters())


class StageReached(Exception):
    """Raised to stop a training at the start of a stage, holding the model as it was then."""

    def __init__(self, model):
        super().__init__()
        self.model = model


def test_gradual_unfreezing_leaves_a_block_alone_until_its_stage(few):
    """block1 trains only in the last stage: stopped just before it, it is still the shipped
    block1 (a parameter without a gradient gets no AdamW update, weight decay included)."""
    real_unfreeze_top = fewshot.unfreeze_top

    def stop_before_block1(model, n_blocks):
        if n_blocks == 5:
            raise StageReached(model)
        return real_unfreeze_top(model, n_blocks)

    with mock.patch.object(fewshot, "unfreeze_top", side_effect=stop_before_block1), \
            pytest.raises(StageReached) as stopped:
        fewshot.train_gradual_unfreezing(few, recipe=TINY)
    model, shipped = stopped.value.model.cpu(), tlutils.load_pretrained()
    for name, p in shipped.features.block1.named_parameters():
        assert torch.equal(model.features.block1.get_parameter(name), p), name
    assert not torch.equal(model.features.block5[0].weight, shipped.features.block5[0].weight)


def test_linear_probe_is_the_l_bfgs_probe_on_the_frozen_features(few):
    """The trainer's head is tlutils.probe's fitted probe: on the frozen backbone's features the
    network predicts what the probe predicts, and it does not depend on the seed."""
    model = fewshot.train_linear_probe(few, seed=0, C=0.5).cpu()
    features = tlutils.extract_features(model.features, tlutils.TensorLoader(few, 64))
    probe = tlutils.probe.fit_probe(features, C=0.5)
    logits = model.classifier(features.tensors[0]).detach()
    expected = torch.from_numpy(probe.decision_function(features.tensors[0].numpy()))
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert all(not p.requires_grad for p in model.features.parameters())
    other_seed = fewshot.train_linear_probe(few, seed=1, C=0.5).cpu()
    assert torch.equal(other_seed.classifier.weight, model.classifier.weight)


def test_a_probe_head_must_have_the_probes_classes(few):
    three = torch.utils.data.TensorDataset(*(t[few.tensors[1] < 3] for t in few.tensors))
    with pytest.raises(ValueError, match="the probe saw 3 classes, the head has 10"):
        fewshot.train_linear_probe(three)


def test_lp_ft_starts_from_the_probe(few):
    probe = fewshot.train_linear_probe(few)
    with mock.patch.object(fewshot, "train_linear_probe", return_value=probe) as stage_one:
        model = fewshot.train_lp_ft(few, recipe=TINY)
    stage_one.assert_called_once()
    assert model is probe and all(p.requires_grad for p in model.parameters())


def tiny(method):
    """The TRAINERS entry `method` with a 6-step recipe (the probe has none: it is solved to
    convergence): what a trainer does, not how well."""
    return partial(fewshot.TRAINERS[method], **({} if method == "linear probe" else {"recipe": TINY}))


@pytest.mark.parametrize("method", list(fewshot.TRAINERS))
def test_every_trainer_returns_a_model_of_the_target_classes_on_one_device(few, method):
    """The model maps images to the target's 10 classes, all of it on one device. On CUDA or MPS a
    model whose head alone was moved would fail at its next evaluate. On the CPU every tensor is
    on the CPU anyway, so the check records what `Module.to` moved: every parameter and buffer of
    the returned model must have gone to the device `fit` trains on."""
    moved, original_to = set(), nn.Module.to

    def recording_to(module, *args, **kwargs):
        moved.update(map(id, module.parameters()), map(id, module.buffers()))
        return original_to(module, *args, **kwargs)

    with mock.patch.object(nn.Module, "to", recording_to):
        model = tiny(method)(few, 0)
    tensors = {name: id(t) for name, t in [*model.named_parameters(), *model.named_buffers()]}
    assert not [name for name, i in tensors.items() if i not in moved], method
    assert tlutils.model_device(model) == tlutils.get_device("auto")
    assert model(few.tensors[0].to(tlutils.model_device(model))).shape == (len(few), 10)


def test_unknown_method_is_named_in_the_error(few):
    with pytest.raises(ValueError, match=r"unknown methods \['finetune'\]"):
        fewshot.accuracy_of("finetune", few, few)
    with pytest.raises(ValueError, match=r"unknown methods \['finetune'\]"):
        fewshot.data_efficiency(ks=(1,), seeds=(0,), methods=("scratch", "finetune"))


def test_run_parallel_returns_results_in_job_order_for_functions_defined_on_the_fly():
    offset = 10
    jobs = [(3, 4), (5, 12), (8, 15)]

    def hypot_plus(x, y):   # defined here: it reaches the other processes by value (cloudpickle)
        return math.hypot(x, y) + offset

    assert fewshot.run_parallel(hypot_plus, jobs, workers=2, progress=False) == [15.0, 23.0, 27.0]
    assert fewshot.run_parallel(hypot_plus, jobs, workers=1, progress=False) == [15.0, 23.0, 27.0]


def test_run_parallel_needs_a_worker():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        fewshot.run_parallel(math.hypot, [(1, 1)], workers=0)


def test_grid_jobs_start_with_the_largest_k():
    jobs = fewshot.grid_jobs((1, 10, 2), (0, 1), ("scratch", "fine-tune"))
    assert [k for _, k, _ in jobs] == [10] * 4 + [2] * 4 + [1] * 4
    assert len(set(jobs)) == 12


@pytest.mark.slow
def test_data_efficiency_is_the_same_in_parallel_and_here_for_any_trainer():
    """Named methods and a chapter's own trainers, a lambda among them, run in other processes
    exactly as here."""
    methods = {"linear probe": fewshot.TRAINERS["linear probe"],
               "probe, by hand": lambda train, seed: fewshot.train_linear_probe(train, seed)}
    args = dict(ks=(1,), seeds=(0, 1), methods=methods, progress=False)
    parallel = fewshot.data_efficiency(**args, workers=2)
    assert parallel == fewshot.data_efficiency(**args, workers=1)
    assert parallel["linear probe"] == parallel["probe, by hand"]
    assert set(parallel) == set(methods) and set(parallel["linear probe"]) == {1}
    assert all(len(accs) == 2 and all(0.3 < a <= 1 for a in accs)
               for accs in parallel["linear probe"].values())


def test_few_shot_models_are_eval_mode_models_on_the_cpu():
    models = fewshot.few_shot_models([("linear probe", 1, 0)], progress=False)
    model = models["linear probe", 1, 0]
    assert isinstance(model, tlutils.SmallCNN) and not model.training
    assert next(model.parameters()).device.type == "cpu"


def test_tune_scores_each_setting_of_each_methods_grid_on_validation():
    grids = {"linear probe": [{"C": 0.01}, {"C": 1.0}],
             "fine-tune": [{"recipe": TINY}, {"recipe": dataclasses.replace(TINY, lr=1e-4)}]}
    results = fewshot.tune(("linear probe", "fine-tune"), ks=(1,), seeds=(0,), grids=grids,
                           progress=False)
    for method, (choice, scores) in results.items():
        assert [dict(setting) for setting in scores] == grids[method]
        assert all(0 < score <= 1 for score in scores.values())
        assert choice == dict(max(scores, key=scores.get)) or len(set(scores.values())) < len(scores)
    with pytest.raises(ValueError, match=r"no tuning grid for \['scratch'\]"):
        fewshot.tune(("scratch",), grids=grids)


def test_every_method_of_the_book_has_a_tuning_grid_around_its_recipe():
    assert set(fewshot.TUNING_GRIDS) == set(fewshot.TRAINERS)
    for method, recipe in fewshot.RECIPES.items():
        assert not fewshot.on_edge({"recipe": recipe}, fewshot.TUNING_GRIDS[method]), method
    assert not fewshot.on_edge({"C": fewshot.PROBE_C}, fewshot.TUNING_GRIDS["linear probe"])


def test_cheapest_near_best_trades_half_a_point_for_fewer_steps():
    setting = lambda lr, steps: (("lr", lr), ("steps", steps))  # noqa: E731
    scores = {setting(1e-3, 300): 0.900, setting(1e-2, 150): 0.896, setting(1e-2, 75): 0.880}
    assert fewshot.cheapest_near_best(scores) == setting(1e-2, 150)
    assert fewshot.cheapest_near_best(scores, tolerance=0.001) == setting(1e-3, 300)


def test_on_edge_names_the_knobs_whose_optimum_may_lie_beyond_the_grid():
    grid = [{"lr": lr, "steps": n} for lr in (1e-3, 1e-2, 1e-1) for n in (100, 200, 400)]
    assert fewshot.on_edge({"lr": 1e-2, "steps": 200}, grid) == []
    assert fewshot.on_edge({"lr": 1e-2, "steps": 100}, grid) == []      # fewest steps: cheap, not a gap
    assert fewshot.on_edge({"lr": 1e-1, "steps": 400}, grid) == ["lr", "steps"]
    assert fewshot.on_edge({"C": 0.1}, [{"C": 0.1}, {"C": 1.0}]) == ["C"]


def test_the_books_setting_stays_unless_it_is_over_half_a_point_below_the_best():
    current = fewshot.current_setting("fine-tune")
    other = (("recipe", dataclasses.replace(fewshot.RECIPES["fine-tune"], lr=1e-4)),)
    assert fewshot.verdict_on_current("fine-tune", {current: 0.900, other: 0.904}).endswith("keep it")
    assert fewshot.verdict_on_current("fine-tune", {current: 0.900, other: 0.906}).endswith("replace it")
    assert "not in the grid" in fewshot.verdict_on_current("linear probe", {(("C", 123.0),): 0.5})
