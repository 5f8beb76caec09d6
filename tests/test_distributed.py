import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import distributed_fit
from tlutils import distributed
from tlutils.data import TensorLoader
from tlutils.models import SmallCNN
from tlutils.train import fit, get_device, set_seed

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@pytest.fixture
def outside_torchrun(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def as_rank(monkeypatch, rank: int, world_size: int, local_rank: int) -> None:
    """Set the variables torchrun gives process `rank` of `world_size`."""
    for name, value in zip(TORCHRUN_VARIABLES, (rank, world_size, local_rank)):
        monkeypatch.setenv(name, str(value))


# --- where a process stands -----------------------------------------------------------------------

def test_outside_torchrun_there_is_one_process_and_it_is_the_main_one(outside_torchrun):
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (0, 1, 0)
    assert not distributed.is_distributed() and distributed.is_main_process()


def test_one_torchrun_process_is_not_distributed(monkeypatch):
    as_rank(monkeypatch, 0, 1, 0)
    assert not distributed.is_distributed() and distributed.is_main_process()


@pytest.mark.parametrize("cuda, expected", [(True, torch.device("cuda", 1)),
                                            (False, torch.device("cpu"))])
def test_under_torchrun_a_process_uses_the_gpu_of_its_local_rank(monkeypatch, cuda, expected):
    as_rank(monkeypatch, 3, 4, 1)   # second process of the second machine, 2 per machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert distributed.rank() == 3 and distributed.world_size() == 4
    assert distributed.is_distributed() and not distributed.is_main_process()
    assert distributed.local_device() == get_device("auto") == expected
    assert get_device("cpu") == torch.device("cpu")   # an explicit device is still obeyed


def test_init_distributed_outside_torchrun_joins_nothing(outside_torchrun):
    assert distributed.init_distributed() == distributed.local_device()
    assert not dist.is_initialized()


# --- sharing a batch ------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size, world_size", [(8, 2), (11, 2), (3, 2), (10, 4), (4, 4)])
def test_rank_slice_shares_a_batch_in_contiguous_slices_within_one_of_each_other(batch_size,
                                                                                  world_size):
    parts = [distributed.rank_slice(batch_size, r, world_size) for r in range(world_size)]
    assert [i for part in parts for i in range(batch_size)[part]] == list(range(batch_size))
    sizes = [part.stop - part.start for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_rank_slice_refuses_a_batch_smaller_than_the_number_of_processes():
    with pytest.raises(ValueError, match="a batch of 1 examples cannot be shared by 2 processes"):
        distributed.rank_slice(1, 1, 2)


# --- fit outside torchrun, or with one process: as before ------------------------------------------

def fit_points(epochs=2):
    set_seed(0)
    model = distributed_fit.Mlp()
    history = fit(model, TensorLoader(distributed_fit.points(100, 1), 32, shuffle=True, seed=0),
                  epochs=epochs, device="cpu", progress=False,
                  val_loader=TensorLoader(distributed_fit.points(30, 2), 16))
    return model, {k: v for k, v in history.as_dict().items() if k != "time"}


def test_fit_with_one_torchrun_process_is_fit_without_torchrun(monkeypatch, outside_torchrun):
    model, history = fit_points()
    assert not dist.is_initialized()
    as_rank(monkeypatch, 0, 1, 0)
    one_process_model, one_process_history = fit_points()
    assert not dist.is_initialized()
    assert one_process_history == history
    for a, b in zip(model.parameters(), one_process_model.parameters()):
        assert torch.equal(a, b)


# --- fit under torchrun ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torchrun_reports(tmp_path_factory):
    """Run tests/distributed_fit.py with torchrun on 2 CPU processes: (reports by rank, folder)."""
    out = tmp_path_factory.mktemp("torchrun")
    script = Path(distributed_fit.__file__)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", str(script), str(out)],
                         cwd=script.parent.parent, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)], out


@pytest.mark.slow
def test_fit_under_torchrun_matches_one_process_on_the_same_global_batches(torchrun_reports):
    """Three epochs of gradual unfreezing on batches that split unevenly (5 + 6, 1 + 2).

    The two runs add the same per-example gradients in another order (each process's mean, then
    the weighted all-reduce), so float32 rounding differs in the last bits: we measured 6e-8 on
    the weights after 21 steps. 1e-6 leaves that a margin of 15 and is 500 times smaller than
    the error of weighting both processes 1/2, as DDP's own all-reduce would (over 5e-4).
    """
    reports, _ = torchrun_reports
    model, history = distributed_fit.train()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(reports[0]["state"][name], value, rtol=0, atol=1e-6)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert reports[0]["history"][key] == pytest.approx(history[key], rel=0, abs=1e-6), key


@pytest.mark.slow
def test_fit_under_torchrun_leaves_every_process_the_same_weights_and_global_history(
        torchrun_reports):
    (first, second), _ = torchrun_reports
    assert first["state"].keys() == second["state"].keys()
    assert all(torch.equal(first["state"][k], second["state"][k]) for k in first["state"])
    del first["history"]["time"], second["history"]["time"]   # each process times itself
    assert first["history"] == second["history"]


@pytest.mark.slow
def test_under_torchrun_only_rank_0_prints(torchrun_reports):
    (first, second), _ = torchrun_reports
    assert "fit: 100%" in first["printed"] and '"source_test_accuracy"' in first["printed"]
    assert second["printed"] == ""


@pytest.mark.slow
def test_pretrain_under_torchrun_is_written_by_rank_0_alone(torchrun_reports):
    _, out = torchrun_reports
    written = sorted(p.name for p in (out / "weights0").iterdir())
    assert written == ["smallcnn-glyphs.json", "smallcnn-glyphs.pt"]
    assert not (out / "weights1").exists()
    meta = json.loads((out / "weights0" / "smallcnn-glyphs.json").read_text())
    assert meta["trained_on"].endswith("x 2 processes")
    SmallCNN().load_state_dict(torch.load(out / "weights0" / "smallcnn-glyphs.pt",
                                          weights_only=True))   # complete, and nothing more


@pytest.mark.slow
def test_fit_under_torchrun_refuses_loaders_that_differ_between_processes(torchrun_reports):
    reports, _ = torchrun_reports
    for report in reports:
        assert report["refusal"].startswith("the processes' loaders yield different batches")
