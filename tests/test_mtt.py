"""Trajectory matching: the gradient against finite differences, the two gradient modes, the expert
buffer (format, checksums, refusals, resuming), the learned rate, divergence, presets and the CLI."""

from __future__ import annotations

import inspect
import json
import math
import re

import pytest
import torch
from fakes import STRATEGY, TINY_NET, brightness_classes, fake_dataset, tiny_buffer, tiny_expert_config

import gmlib.cli as cli
from gmlib.eval_config import EvalConfig
from gmlib.methods import mtt as mtt_module
from gmlib.methods import mtt_buffer, mtt_experts
from gmlib.methods.mtt import (MTTConfig, MTTMethod, StudentStep, distill_mtt, learned_lr_protocol,
                               measure_mtt_memory, recomputed_gradient, unrolled_gradient)
from gmlib.methods.mtt_buffer import load_buffer
from gmlib.methods.mtt_experts import ExpertConfig, train_experts
from gmlib.networks import get_network
from gmlib.randomness import iteration_generator
from gmlib.run.checkpoint import CheckpointError
from gmlib.run.loop import DivergenceError

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def buffer():
    return tiny_buffer()


def tiny_config(**changes) -> MTTConfig:
    values = dict(ipc=2, iterations=3, syn_steps=3, expert_epochs=2, max_start_epoch=2, lr_img=10.0,
                  dsa_strategy=STRATEGY, network_kwargs=TINY_NET, eval_models=1)
    values.update(changes)
    return MTTConfig(**values)


# ------------------------------------------------------------------------------------------
# The gradient
# ------------------------------------------------------------------------------------------


def float64_problem():
    """A ConvNet of width 4 and depth 1 on 8x8 images in float64, a start and a target, 2 images per
    class and 2 student steps without augmentation (one on all images, one on a batch of 4)."""
    torch.manual_seed(0)
    net = get_network("convnet", 1, 3, (8, 8), seed=0, width=4, depth=1).double().requires_grad_(False)
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]

    def unflatten(flat):
        return {n: piece.view(s) for n, piece, s in zip(names, flat.split([s.numel() for s in shapes]), shapes)}

    start = torch.cat([p.reshape(-1) for p in net.parameters()]).detach()
    target = start + 0.05 * torch.randn_like(start)
    images = torch.randn(6, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(3).repeat_interleave(2)
    log_lr = torch.tensor(math.log(0.1), dtype=torch.float64, requires_grad=True)
    plan = [StudentStep(torch.arange(6), None), StudentStep(torch.tensor([0, 2, 3, 5]), None)]
    return net, unflatten, start, target, images, labels, log_lr, plan


@pytest.mark.parametrize("gradient", [unrolled_gradient, recomputed_gradient])
def test_the_gradient_equals_central_finite_differences_in_float64(gradient):
    net, unflatten, start, target, images, labels, log_lr, plan = float64_problem()
    loss, grad_images, grad_log_lr = gradient(net, unflatten, start, target, images, labels, log_lr, plan)

    def loss_at(x, u):
        return float(unrolled_gradient(net, unflatten, start, target, x.detach().requires_grad_(True),
                                       labels, u.detach().requires_grad_(True), plan)[0])

    eps = 1e-6
    direction = torch.randn_like(images)
    numeric = (loss_at(images + eps * direction, log_lr) - loss_at(images - eps * direction, log_lr)) / (2 * eps)
    assert numeric == pytest.approx(float((grad_images * direction).sum()), rel=1e-6, abs=1e-10)
    numeric_u = (loss_at(images, log_lr + eps) - loss_at(images, log_lr - eps)) / (2 * eps)
    assert numeric_u == pytest.approx(float(grad_log_lr), rel=1e-6, abs=1e-10)
    assert float(grad_log_lr) != 0 and float(grad_images.abs().sum()) > 0


def test_recompute_equals_unroll_in_a_whole_iteration(buffer, dataset):
    """With DSA and batches of the set: the same loss, images and learned rate up to rounding."""
    results = []
    for gradient in ("unroll", "recompute"):
        method = MTTMethod(dataset, tiny_config(gradient=gradient, batch_syn=4), 0, CPU, buffer)
        step = method.iteration(0, iteration_generator(0, 0))
        results.append((step.losses[0], method.synthetic.images.detach().clone(), method.learned_lr))
    (loss_a, images_a, lr_a), (loss_b, images_b, lr_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    torch.testing.assert_close(images_a, images_b, rtol=1e-4, atol=1e-5)
    assert lr_a == pytest.approx(lr_b, rel=1e-5) and lr_a != 0.01


def test_the_algorithm_map_names_real_code():
    """Every 'function: names' entry of the module docstring's map exists in that function."""
    entries = re.findall(r"\s{2,}(\w+(?:\.\w+)*): ([\w, .]+)$", mtt_module.__doc__, flags=re.M)
    assert len(entries) >= 6
    for where, names in entries:
        if where.startswith("gmlib."):
            continue
        owner, _, attr = where.partition(".")
        target = getattr(mtt_module, owner)
        source = inspect.getsource(getattr(target, attr) if attr else target)
        for name in names.split(", "):
            assert name.strip() in source, f"{name!r} is not in {where}"


# ------------------------------------------------------------------------------------------
# The buffer
# ------------------------------------------------------------------------------------------


def test_the_buffer_format(tmp_path, dataset):
    config = tiny_expert_config(experts=1, epochs=4, every=2, storage_dtype="float16")
    buffer = train_experts(dataset, config, tmp_path, seed=5, progress=False, device="cpu")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == mtt_buffer.BUFFER_FORMAT and manifest["version"] == mtt_buffer.BUFFER_VERSION
    assert (manifest["dataset"], manifest["num_classes"], manifest["image_shape"]) == ("fake", 3, [1, 8, 8])
    assert manifest["network"] == "convnet" and manifest["network_kwargs"] == TINY_NET
    assert manifest["kept_epochs"] == [0, 2, 4] and manifest["seed"] == 5 and manifest["storage_dtype"] == "float16"
    assert manifest["augmentation"] == {"dsa": True, "strategy": STRATEGY} and manifest["complete"]
    net = get_network("convnet", 1, 3, (8, 8), **TINY_NET)
    assert [p["name"] for p in manifest["parameters"]] == [n for n, _ in net.named_parameters()]
    assert len(manifest["experts"][0]["test_accuracy"]) == 4
    assert manifest["size_bytes"] == (tmp_path / "expert_000.pt").stat().st_size == buffer.size_bytes
    for key in ("lr", "batch_size", "gmlib_version", "git_commit", "epochs"):
        assert key in manifest
    snapshots = buffer.expert(0)
    assert snapshots.shape == (3, sum(p.numel() for p in net.parameters())) and snapshots.dtype == torch.float16
    assert buffer.snapshot(0, 2).dtype == torch.float32
    assert set(buffer.unflatten(buffer.snapshot(0, 0))) == {n for n, _ in net.named_parameters()}
    assert "1 experts x 3 snapshots" in buffer.describe() and "MiB" in buffer.describe()


def test_a_corrupted_or_missing_expert_file_is_named(tmp_path, dataset):
    train_experts(dataset, tiny_expert_config(experts=2, epochs=1), tmp_path, progress=False, device="cpu")
    path = tmp_path / "expert_001.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"expert_001\.pt does not match its checksum"):
        load_buffer(tmp_path)
    path.unlink()
    with pytest.raises(ValueError, match=r"expert_001\.pt listed in the manifest is missing"):
        load_buffer(tmp_path)


def test_a_buffer_of_another_dataset_network_or_shape_is_refused(buffer, dataset):
    with pytest.raises(ValueError, match="dataset 'fake', not 'other'"):
        load_buffer(buffer.folder, fake_dataset(name="other"))
    with pytest.raises(ValueError, match=r"image shape \[1, 8, 8\], not \[1, 12, 12\]"):
        load_buffer(buffer.folder, brightness_classes(size=12, name="fake"))
    with pytest.raises(ValueError, match="network 'convnet', not 'mlp'"):
        load_buffer(buffer.folder, dataset, "mlp")
    with pytest.raises(ValueError, match="network keywords .*'width': 8.*not \\{'width': 16\\}"):
        load_buffer(buffer.folder, dataset, "convnet", {"width": 16})
    with pytest.raises(ValueError, match="network keywords"):
        MTTMethod(dataset, tiny_config(network_kwargs={"width": 16}), 0, CPU, buffer)


def test_networks_with_batchnorm_are_refused(tmp_path, dataset):
    with pytest.raises(ValueError, match="'convnet_bn' has BatchNorm: its running statistics are not parameters"):
        train_experts(dataset, tiny_expert_config(network="convnet_bn"), tmp_path, progress=False, device="cpu")
    assert not list(tmp_path.iterdir())


def test_train_experts_resumes_expert_by_expert(tmp_path, dataset, monkeypatch):
    config = tiny_expert_config(experts=3, epochs=1)
    straight = train_experts(dataset, config, tmp_path / "straight", progress=False, device="cpu")
    trained = []
    original = mtt_experts.train_one_expert

    def stop_at_the_second(dataset, config, seed, index, *args):
        trained.append(index)
        if index == 1 and len(trained) == 2:
            raise KeyboardInterrupt
        return original(dataset, config, seed, index, *args)

    monkeypatch.setattr(mtt_experts, "train_one_expert", stop_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        train_experts(dataset, config, tmp_path / "b", progress=False, device="cpu")
    assert sorted(p.name for p in (tmp_path / "b").glob("*.pt")) == ["expert_000.pt"]
    with pytest.raises(ValueError, match=r"unfinished \(1 of 3 experts\)"):
        load_buffer(tmp_path / "b")
    resumed = train_experts(dataset, config, tmp_path / "b", progress=False, device="cpu")
    assert trained == [0, 1, 1, 2]  # expert 0 was verified and kept
    assert resumed.identity == straight.identity
    with pytest.raises(ValueError, match="holds a buffer of other settings: lr=0.01 there, 0.02 here"):
        train_experts(dataset, config.replace(lr=0.02), tmp_path / "b", progress=False, device="cpu")


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 5, "every": 2}, "not a multiple of every=2"),
    ({"storage_dtype": "bfloat16"}, "storage_dtype"),
    ({"experts": 0}, "experts"),
    ({"dsa": False, "dsa_strategy": "crop"}, "needs dsa=True"),
])
def test_bad_expert_configurations_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        ExpertConfig(**changes)


# ------------------------------------------------------------------------------------------
# The method
# ------------------------------------------------------------------------------------------


def test_a_config_the_buffer_cannot_serve_is_refused_naming_the_numbers(buffer, dataset):
    with pytest.raises(ValueError, match=r"max_start_epoch=3 \+ expert_epochs=2 = 5 needs 5 kept snapshots .* keeps 4"):
        MTTMethod(dataset, tiny_config(max_start_epoch=3), 0, CPU, buffer)


def test_the_learned_rate_is_saved_checkpointed_and_positive(buffer, dataset, tmp_path):
    result = distill_mtt(dataset, tiny_config(lr_lr=1e-4), buffer, seed=0, device="cpu", out_dir=tmp_path,
                         progress=False)
    lr = result.synthetic.metadata["learned_lr"]
    assert lr > 0 and lr != pytest.approx(0.01) and lr == pytest.approx(math.exp(float(result.method.log_lr.detach())))
    assert result.synthetic.metadata["buffer"] == buffer.identity
    assert result.history.extras["learned_lr"][0] == pytest.approx(0.01)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert torch.equal(saved["state"]["log_lr"], result.method.log_lr.detach())
    assert saved["identity"]["buffer"] == buffer.identity
    protocol = learned_lr_protocol(EvalConfig(epochs=3), result.synthetic)
    assert protocol.config == EvalConfig(epochs=3, lr=lr) and "learned" in protocol.label


def test_a_checkpoint_of_a_run_on_another_buffer_is_refused(buffer, dataset, tmp_path):
    distill_mtt(dataset, tiny_config(iterations=1), buffer, device="cpu", out_dir=tmp_path / "run", progress=False)
    other = train_experts(dataset, tiny_expert_config(), tmp_path / "other", seed=1, progress=False, device="cpu")
    with pytest.raises(CheckpointError, match="buffer="):
        distill_mtt(dataset, tiny_config(iterations=2), other, device="cpu", out_dir=tmp_path / "run", progress=False)


def test_a_nan_stops_the_run_before_updating(buffer, dataset):
    method = MTTMethod(dataset, tiny_config(), 0, CPU, buffer)
    with torch.no_grad():
        method.synthetic.images[0, 0, 0, 0] = float("nan")
    before = method.log_lr.detach().clone()
    with pytest.raises(DivergenceError, match="trajectory-matching loss is nan"):
        method.iteration(0, iteration_generator(0, 0))
    assert torch.equal(method.log_lr.detach(), before)


def test_memory_is_measured_for_both_gradients(buffer, dataset):
    rows = measure_mtt_memory(dataset, tiny_config(), buffer, [1, 2])
    assert [(r["gradient"], r["syn_steps"]) for r in rows] == [("unroll", 1), ("unroll", 2), ("recompute", 1),
                                                               ("recompute", 2)]
    assert all(r["seconds"] > 0 and r["peak_mib"] > 0 for r in rows)


@pytest.mark.parametrize("changes, message", [
    ({"gradient": "implicit"}, "gradient"), ({"syn_steps": 0}, "syn_steps"), ({"lr_lr": 0}, "lr_lr"),
    ({"batch_syn": 0}, "batch_syn"), ({"eval_at": (9999,)}, "outside"),
])
def test_bad_configurations_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        MTTConfig(**changes)


# ------------------------------------------------------------------------------------------
# Presets and the command line
# ------------------------------------------------------------------------------------------


def test_the_presets_fit_their_buffers():
    from gmlib.book.presets import expert_config, get_profile, mtt_config

    for name in ("ci", "cpu", "gpu", "paper"):
        experts, mtt = expert_config(name, "mnist"), mtt_config(name, 1, "mnist")
        assert mtt.max_start_epoch + mtt.expert_epochs <= len(experts.kept_epochs), name
        assert dict(mtt.network_kwargs) == dict(experts.network_kwargs)
        assert mtt.iterations == get_profile(name).mtt_iterations and mtt.eval_config.augment == "dsa"
    ci = expert_config("ci", "mnist")
    assert ci.storage_dtype == "float16" and ci.experts == 2 and ci.dsa_strategy == "color_crop_cutout_scale_rotate"
    paper = mtt_config("paper", 10, "mnist")
    defaults = MTTConfig()
    for field in ("syn_steps", "expert_epochs", "max_start_epoch", "lr_img", "lr_lr", "lr_teacher", "iterations"):
        assert getattr(paper, field) == getattr(defaults, field)
    assert (expert_config("paper", "mnist").experts, expert_config("paper", "mnist").epochs) == (100, 50)


def fake_mnist(*args, **kwargs):
    return fake_dataset(per_class=16, name="mnist")


def gmlib(*argv) -> int:
    with pytest.raises(SystemExit) as done:
        cli.main([str(a) for a in argv])
    return done.value.code


EXPERTS = ["--experts", "1", "--epochs", "2", "--width", "8", "--test-size", "10", "--batch-size", "16",
           "--profile", "ci", "--no-progress"]
MTT = ["--method", "mtt", "--profile", "ci", "--iterations", "2", "--syn-steps", "2", "--expert-epochs", "1",
       "--max-start-epoch", "2", "--no-progress"]


def test_the_cli_builds_a_buffer_and_distills_on_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_load_dataset", fake_mnist)
    buffer = tmp_path / "buffer"
    assert gmlib("experts", "--dataset", "mnist", "--out", buffer, *EXPERTS, "--every", "1") == 0
    printed = capsys.readouterr().out
    assert "1 experts x 3 snapshots" in printed and "float16" in printed
    assert gmlib("distill", "--dataset", "mnist", "--buffer", buffer, "--out", tmp_path / "run", *MTT) == 0
    printed = capsys.readouterr().out
    assert "mtt on mnist, ipc 1, profile ci, seed 0: 2 iterations" in printed and "learned learning rate" in printed
    saved = torch.load(tmp_path / "run" / "synthetic.pt", weights_only=True)
    assert saved["metadata"]["learned_lr"] > 0 and saved["metadata"]["method"] == "mtt"
    assert saved["metadata"]["provenance"]["extra"]["config"]["network_kwargs"] == {"width": 8}
    # MTT's own protocol from the command line: the learned rate, labelled, in the report.
    report = tmp_path / "learned.json"
    assert gmlib("evaluate", tmp_path / "run" / "synthetic.pt", "--learned-lr", "--models", "1", "--epochs", "2",
                 "--profile", "ci", "--width", "8", "--json", report, "--no-progress") == 0
    assert "MTT's protocol: the learned learning rate" in capsys.readouterr().out
    used = json.loads(report.read_text())
    assert used["learned_lr"] and used["results"]["convnet"]["config"]["lr"] == pytest.approx(saved["metadata"]["learned_lr"])


@pytest.mark.parametrize("argv, words", [
    (["--method", "mtt"], ["--method mtt needs --buffer"]),
    (["--method", "dm", "--buffer", "B"], ["--buffer is an option of trajectory matching", "--method dm"]),
    (["--method", "dc", "--syn-steps", "3"], ["--syn-steps is an option of trajectory matching"]),
    (["--method", "mtt", "--buffer", "B", "--distance", "mse"], ["--distance is an option of gradient matching"]),
    (["--method", "mtt", "--buffer", "B", "--batch-real", "8"], ["--batch-real", "not of --method mtt"]),
    (["--method", "mtt", "--buffer", "B", "--max-start-epoch", "3"], ["max_start_epoch=3", "keeps 3"]),
    (["--method", "mtt", "--buffer", "B", "--width", "16"], ["network keywords", "'width': 16"]),
    (["--method", "mtt", "--buffer", "nowhere"], ["no expert buffer at nowhere"]),
    (["--method", "mtt", "--buffer", "B", "--gradient", "adjoint"], ["--gradient", "recompute"]),
])
def test_bad_mtt_input_exits_with_status_2(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_load_dataset", fake_mnist)
    assert gmlib("experts", "--dataset", "mnist", "--out", tmp_path / "B", *EXPERTS) == 0
    capsys.readouterr()
    argv = [str(tmp_path / "B") if a == "B" else a for a in argv]
    assert gmlib("distill", "--dataset", "mnist", "--profile", "ci", "--out", tmp_path / "run", *argv) == 2
    message = capsys.readouterr().err
    assert "Traceback" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("argv, words", [
    (["--network", "convnet_bn"], ["BatchNorm"]),
    (["--epochs", "3", "--every", "2"], ["not a multiple of every=2"]),
    (["--experts", "0"], ["--experts", ">= 1"]),
    (["--network", "mlp", "--width", "8"], ["--width", "mlp"]),
])
def test_bad_experts_input_exits_with_status_2(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_load_dataset", fake_mnist)
    assert gmlib("experts", "--dataset", "mnist", "--out", tmp_path / "B", "--profile", "ci", "--no-progress",
                 *argv) == 2
    message = capsys.readouterr().err
    for word in words:
        assert word in message
