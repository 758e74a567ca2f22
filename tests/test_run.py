"""gmlib.run.loop: the loop every method runs on. Resume after any stop, extend, evaluations, the
divergence guard, the folder lock, failing before the work; checked for every method."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from run_methods import METHOD_NAMES, tiny_method

import gmlib.methods.dc as matching
from gmlib.distances import get_distance
from gmlib.randomness import global_rng_from, iteration_generator
from gmlib.run.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint
from gmlib.run.history import Evaluation, History
from gmlib.run.loop import CHECKPOINT_FORMAT, DivergenceError, run
from gmlib.run.stopping import FolderInUseError, folder_lock

pytestmark = pytest.mark.usefixtures("one_thread")
RUN_METHODS = str(Path(__file__).parent / "run_methods.py")


def state_of(result) -> dict:
    return result.method.state_dict()


def assert_same_state(a: dict, b: dict) -> None:
    """Bit-identical states (tensors by torch.equal, everything else by ==)."""
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], dict):
            assert_same_state(a[key], b[key])
        elif isinstance(a[key], (list, tuple)):
            assert len(a[key]) == len(b[key])
            for x, y in zip(a[key], b[key]):
                assert_same_state({"v": x}, {"v": y})
        else:
            assert a[key] == b[key], key


def straight(name: str, iterations: int):
    return run(tiny_method(name, iterations), progress=False)


def completed_in(folder: Path) -> int:
    state = load_checkpoint(checkpoint_path(folder), CHECKPOINT_FORMAT)
    return 0 if state is None else state["completed"]


# ------------------------------------------------------------------------------------------
# Randomness
# ------------------------------------------------------------------------------------------


def test_iteration_streams_depend_only_on_seed_and_iteration() -> None:
    draw = lambda s, i: torch.randint(1000, (5,), generator=iteration_generator(s, i)).tolist()  # noqa: E731
    assert draw(0, 3) == draw(0, 3)
    assert len({tuple(draw(s, i)) for s in (0, 1) for i in (0, 1, 2)}) == 6


def test_the_global_rng_is_seeded_for_the_block_and_restored() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with global_rng_from(iteration_generator(0, 5)):
        inside = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    with global_rng_from(iteration_generator(0, 5)):
        assert torch.equal(torch.rand(3), inside)


# ------------------------------------------------------------------------------------------
# Resume and extend, for every method
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_method_resumes_and_extends_bit_identically(name, tmp_path) -> None:
    whole = straight(name, 4)
    part = run(tiny_method(name, 4), out_dir=tmp_path, stop_at=2, progress=False)
    assert part.history.completed == 2 and completed_in(tmp_path) == 2
    resumed = run(tiny_method(name, 4), out_dir=tmp_path, progress=False)
    assert_same_state(state_of(resumed), state_of(whole))
    assert torch.equal(resumed.synthetic.images, whole.synthetic.images)
    assert resumed.history.losses == whole.history.losses and resumed.history.resumed_at == [2]
    # Extending the finished run to 6 iterations equals a run of 6 from the start.
    extended = run(tiny_method(name, 6), out_dir=tmp_path, progress=False)
    assert_same_state(state_of(extended), state_of(straight(name, 6)))
    assert extended.history.completed == 6 and extended.history.resumed_at == [2, 4]
    with pytest.raises(CheckpointError, match="6 completed iterations, more than iterations=5"):
        run(tiny_method(name, 5), out_dir=tmp_path, progress=False)


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_stopped_process_resumes_bit_identically_and_loses_at_most_one_interval(name, stop, tmp_path) -> None:
    iterations = 12
    process = subprocess.Popen([sys.executable, RUN_METHODS, name, str(tmp_path), str(iterations)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    seen = 0
    while seen < 3:  # a checkpoint after every iteration: wait until three are done
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
        try:
            seen = completed_in(tmp_path)
        except CheckpointError:  # read while being replaced: try again
            continue
    process.send_signal(getattr(signal, stop))
    _, stderr = process.communicate(timeout=60)
    expected_code = {"SIGINT": 1, "SIGTERM": 143, "SIGKILL": -signal.SIGKILL}[stop]
    assert process.returncode == expected_code, stderr
    if stop != "SIGKILL":
        assert "saved the state after" in stderr
    kept = completed_in(tmp_path)
    assert seen <= kept < iterations  # at most the iteration in flight was lost
    assert not list(tmp_path.glob("*.tmp")) or stop == "SIGKILL"
    resumed = run(tiny_method(name, iterations), out_dir=tmp_path, progress=False)
    assert resumed.history.resumed_at == [kept]
    assert_same_state(state_of(resumed), state_of(straight(name, iterations)))


def test_ctrl_c_inside_an_iteration_keeps_the_last_completed_one(tmp_path, monkeypatch) -> None:
    whole = straight("dc", 3)
    calls = {"n": 0}
    original = matching.train_inner

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # inside iteration 1, after its first image update
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(matching, "train_inner", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_method("dc", 3), out_dir=tmp_path, progress=False)
    monkeypatch.setattr(matching, "train_inner", original)
    state = load_checkpoint(checkpoint_path(tmp_path), CHECKPOINT_FORMAT)
    assert state["completed"] == 1 and len(state["history"]["losses"]) == 1
    resumed = run(tiny_method("dc", 3), out_dir=tmp_path, progress=False)
    assert_same_state(state_of(resumed), state_of(whole))


def test_checkpoints_are_written_by_time_as_well_as_by_count(tmp_path, monkeypatch) -> None:
    writes = []
    monkeypatch.setattr("gmlib.run.loop.save_checkpoint", lambda path, state: writes.append(state["completed"]))
    run(tiny_method("dc", 3), out_dir=tmp_path, progress=False, checkpoint_seconds=1e-9)
    assert writes == [1, 2, 3, 3]  # after every iteration (the interval has always passed), then at the end
    writes.clear()
    run(tiny_method("dc", 3), out_dir=tmp_path / "b", progress=False, checkpoint_every=2)
    assert writes == [2, 3]  # the default minute has not passed: every 2 iterations, then at the end


# ------------------------------------------------------------------------------------------
# What a run is, and what may change between its sessions
# ------------------------------------------------------------------------------------------


def test_a_checkpoint_of_another_run_is_refused(tmp_path) -> None:
    method = tiny_method("dc", 1)
    run(method, out_dir=tmp_path, progress=False)
    other = tiny_method("dc", 1)
    other.config = other.config.replace(lr_img=0.2)
    with pytest.raises(CheckpointError, match="lr_img=0.1 there, 0.2 here"):
        run(other, out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="seed=0 there, 1 here"):
        run(tiny_method("dc", 1, seed=1), out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="method='dc' there, 'unroll' here"):
        run(tiny_method("unroll", 1), out_dir=tmp_path, progress=False)
    run(other, out_dir=tmp_path, resume=False, progress=False)  # starting over is allowed
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not read"):
        run(tiny_method("dc", 1), out_dir=tmp_path, progress=False)


def test_evaluations_are_not_part_of_the_identity_and_can_be_added_to_a_finished_run(tmp_path) -> None:
    accuracies = iter([[0.5, 0.7], [0.25]])
    evaluator = lambda synthetic: next(accuracies)  # noqa: E731
    first = run(tiny_method("dc", 2), out_dir=tmp_path, progress=False, eval_at=(0,), evaluator=evaluator)
    assert [e.iteration for e in first.history.evaluations] == [0]
    again = run(tiny_method("dc", 2), out_dir=tmp_path, progress=False, eval_at=(0, 2), evaluator=evaluator,
                checkpoint_every=1)
    assert again.history.resumed_at == [2] and again.history.completed == 2
    assert [(e.iteration, e.accuracies) for e in again.history.evaluations] == [(0, (0.5, 0.7)), (2, (0.25,))]
    assert str(again.history.evaluations[0]) == "60.00 +- 10.00% (2 models)"
    assert str(again.history.evaluations[1]) == "25.00% (n = 1)"
    with pytest.raises(ValueError, match="needs an evaluator"):
        run(tiny_method("dc", 1), eval_at=(1,), progress=False)


def test_the_history_round_trips_through_json() -> None:
    result = run(tiny_method("dc", 2), progress=False, eval_at=(2,), evaluator=lambda s: [0.5, 0.75])
    history = result.history
    assert History.from_dict(json.loads(json.dumps(history.to_dict()))) == history
    assert history.method == "dc" and history.seed == 0 and history.config["ipc"] == 2
    assert history.extras["inner_epochs"] == [[2], [2]] and history.extras["inter_loss"] == [None, None]
    assert history.peak_mib > 0 and history.memory_kind == "cpu resident"
    assert history.provenance[0]["versions"]["torch"] == torch.__version__
    assert history.evaluations == [Evaluation(2, (0.5, 0.75), history.evaluations[0].seconds,
                                              history.evaluations[0].distill_seconds)]
    assert "iterations" in result.summary()


# ------------------------------------------------------------------------------------------
# Divergence, folders, locks
# ------------------------------------------------------------------------------------------


def test_a_nan_loss_stops_before_the_update_and_the_checkpoint_keeps_the_last_good_state(tmp_path, monkeypatch) -> None:
    good = straight("dc", 2)
    real_distance = get_distance("ours")
    calls = {"n": 0}

    def poisoned(g_syn, g_real):  # NaN for class 1 of iteration 2 (2 outer steps x 3 classes per iteration)
        calls["n"] += 1
        value = real_distance(g_syn, g_real)
        return value * float("nan") if calls["n"] == 2 * 2 * 3 + 2 else value

    monkeypatch.setattr(matching, "get_distance", lambda spec: poisoned)
    method = tiny_method("dc", 4)
    with pytest.raises(DivergenceError) as error:
        run(method, out_dir=tmp_path, progress=False)
    assert error.value.iteration == 2
    assert "the matching loss (outer step 0) of class 1 is nan in iteration 2" in str(error.value)
    assert "smaller learning rate (lr_img" in str(error.value)
    state = load_checkpoint(checkpoint_path(tmp_path), CHECKPOINT_FORMAT)
    assert state["completed"] == 2 and torch.equal(state["state"]["images"], good.synthetic.images)


def test_a_bad_output_folder_fails_before_any_work(tmp_path) -> None:
    method = tiny_method("dc", 2)
    calls = []
    method.iteration = lambda it, generator: calls.append(it)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        run(method, out_dir=a_file, progress=False)
    with pytest.raises(ValueError, match="cannot write into"):
        run(method, out_dir=a_file / "below", progress=False)
    assert calls == []


def test_a_second_run_on_the_same_folder_is_refused_naming_the_first(tmp_path) -> None:
    with folder_lock(tmp_path):
        with pytest.raises(FolderInUseError, match=f"in use by a running run \\(pid {os.getpid()} "):
            run(tiny_method("dc", 1), out_dir=tmp_path, progress=False)
    run(tiny_method("dc", 1), out_dir=tmp_path, progress=False)  # free again once the first ends
    assert not (tmp_path / "run.lock").exists()


def test_checkpoint_writes_are_atomic_and_user_readable(tmp_path, monkeypatch) -> None:
    path = tmp_path / "state.pt"
    save_checkpoint(path, {"format": "k", "value": torch.ones(2)})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask

    def broken_save(obj, handle):
        handle.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"format": "k", "value": torch.zeros(2)})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path, "k")["value"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
    with pytest.raises(CheckpointError, match="not a 'other' checkpoint"):
        load_checkpoint(path, "other")
