"""tlutils.cost: the bytes of a training step, exactly, on networks small enough to count by hand;
and timed steps that really are steps."""
import pytest
import torch
from torch import nn

import tlutils
from tlutils.cost import MIB, SavedActivations, StepMemory, step_memory, step_time

F32 = 4            # bytes per float32 number
STEP_COUNT = 4     # AdamW's per-tensor step count: one float32 scalar


def batch(n=8, features=10, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_a_linear_layers_parameters_gradients_and_adamw_state_are_counted_exactly():
    torch.manual_seed(0)
    model = nn.Linear(10, 5)                      # 50 weights + 5 biases
    memory = step_memory(model, batch(), optimizer=torch.optim.AdamW(model.parameters()))
    assert memory.parameters == 55 * F32
    assert memory.gradients == 55 * F32
    assert memory.optimizer_state == 2 * 55 * F32 + 2 * STEP_COUNT   # two moments, two tensors
    assert memory.cuda_peak is None
    assert memory.total == (55 + 55 + 110) * F32 + 2 * STEP_COUNT + memory.activations


def test_freezing_a_layer_removes_its_gradients_and_optimizer_state_not_its_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2))   # 55 + 12 parameters
    tlutils.freeze(model, "0")
    memory = step_memory(model, batch(classes=2))   # tlutils' default AdamW, trainable only
    assert memory.parameters == 67 * F32
    assert memory.gradients == 12 * F32
    assert memory.optimizer_state == 2 * 12 * F32 + 2 * STEP_COUNT


def sum_of_outputs(logits, targets):
    """A loss that saves nothing for backward, so only the network's activations are counted."""
    return logits.sum()


def test_saved_activations_of_a_tiny_network_are_its_layers_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    memory = step_memory(model, (x, y), criterion=sum_of_outputs)
    # the input x (8 x 4), for the first weight's gradient; the ReLU's output (8 x 3), which the
    # ReLU needs and which is also the second layer's input: one storage, counted once
    assert memory.activations == (8 * 4 + 8 * 3) * F32
    tlutils.freeze(model, "0")
    # nothing below the ReLU trains: neither x nor the ReLU's mask is kept, only the second input
    assert step_memory(model, (x, y), criterion=sum_of_outputs).activations == 8 * 3 * F32


def test_a_frozen_weight_is_saved_but_not_counted_as_an_activation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4, bias=False), nn.Linear(4, 2))
    tlutils.freeze(model, "1")   # the middle is frozen, the gradient still crosses it
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    with SavedActivations(model) as saved:
        sum_of_outputs(model(x), y)
    # x for layer 0's weight and layer 2's input; layer 1 keeps only its own (frozen) weight
    assert saved.bytes == (8 * 4 + 8 * 4) * F32


def test_activations_grow_with_the_batch_and_parameters_do_not():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 5))
    small, large = (step_memory(model, batch(n)) for n in (8, 32))
    assert large.parameters == small.parameters and large.gradients == small.gradients
    assert large.activations > 3 * small.activations


def test_step_memory_takes_a_real_step_and_restores_the_mode():
    torch.manual_seed(0)
    model = nn.Linear(10, 5).eval()
    before = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    memory = step_memory(model, batch(), optimizer=optimizer)
    assert not torch.equal(model.weight, before)
    assert not model.training
    assert memory.optimizer_state == 0            # plain SGD keeps no state
    assert memory.mib()["total"] == memory.total / MIB and "cuda_peak" not in memory.mib()


def test_step_time_times_steps_after_the_warmup():
    torch.manual_seed(0)
    model = nn.Linear(10, 5)
    optimizer = torch.optim.AdamW(model.parameters())
    seconds = step_time(model, batch(), optimizer=optimizer, steps=3, warmup=2)
    assert seconds > 0
    assert optimizer.state[model.weight]["step"].item() == 5    # 2 warm-up + 3 timed steps
    with pytest.raises(ValueError, match="steps >= 1"):
        step_time(model, batch(), steps=0)


def test_step_memory_runs_where_the_model_is():
    model = nn.Linear(10, 5).to("meta")
    with pytest.raises(ValueError, match="not on"):
        step_memory(model, batch(), device="cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_allocators_peak_covers_parameters_gradients_and_state():
    torch.manual_seed(0)
    model = nn.Linear(256, 256).cuda()
    memory = step_memory(model, tuple(t.cuda() for t in batch(64, 256, 10)))
    assert isinstance(memory, StepMemory) and memory.cuda_peak is not None
    assert memory.cuda_peak >= memory.parameters + memory.gradients
