"""The command line: `python -m gmlib distill|evaluate` on a tiny fake dataset, help and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gmlib.cli as cli
from gmlib.data import ImageDataset
from gmlib.synthetic import load_synthetic

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--width", "8", "--batch-real", "8", "--no-progress"]


def fake_mnist(*args, **kwargs) -> ImageDataset:
    """A stand-in for MNIST: 3 classes of 1x8x8 images that differ in brightness."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(16)
    images = torch.randn(len(labels), 1, 8, 8, generator=g) + labels.view(-1, 1, 1, 1).float()
    test_labels = torch.arange(3).repeat(4)
    test_images = torch.randn(len(test_labels), 1, 8, 8, generator=g) + test_labels.view(-1, 1, 1, 1).float()
    return ImageDataset("mnist", images, labels, test_images, test_labels, (0.0,), (1.0,), ["0", "1", "2"])


@pytest.fixture(autouse=True)
def tiny_world(monkeypatch):
    """Every command sees the fake dataset; one thread (tiny tensors, busy shared cores)."""
    monkeypatch.setattr(cli, "_load_dataset", fake_mnist)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gmlib(*argv: str) -> int:
    """Run the CLI in-process; returns its exit status."""
    with pytest.raises(SystemExit) as done:
        cli.main([str(a) for a in argv])
    return done.value.code


def test_help_explains_every_option(capsys) -> None:
    for command, options in [
        ("distill", ["--dataset", "--ipc", "--method", "--profile", "--seed", "--iterations", "--init", "--out",
                     "--checkpoint-every", "--resume", "--no-resume", "--width", "--batch-real", "--distance",
                     "--eval-at", "--device", "--engine", "--precision", "--compile", "--no-compile", "--match-level", "--level-weight", "--no-per-class",
                     "--inner-steps", "--hessian-weight", "--hessian-kind", "--hessian-loss"]),
        ("evaluate", ["--networks", "--models", "--profile", "--seed", "--json", "--epochs", "--augment", "--precision",
                      "--compile", "--format",
                      "--dataset", "--experiment", "--tag"]),
        ("convert", ["--to", "--format", "--dataset", "--experiment", "--tag"]),
    ]:
        assert gmlib(command, "--help") == 0
        text = capsys.readouterr().out
        for option in options:
            assert option in text, (command, option)
    assert gmlib("--help") == 0
    assert "distill" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--dataset", "imagenet"], ["--dataset", "imagenet", "mnist"]),
    (["--dataset", "mnist", "--method", "kip"], ["--method", "kip", "dsa", "mtt"]),
    (["--dataset", "mnist", "--init", "zeros"], ["--init", "zeros", "noise"]),
    (["--dataset", "mnist", "--ipc", "0"], ["--ipc", ">= 1"]),
    (["--dataset", "mnist", "--ipc", "two"], ["--ipc", "'two'"]),
    (["--dataset", "mnist", "--profile", "huge"], ["--profile", "huge", "paper"]),
    (["--dataset", "mnist", "--distance", "manhattan"], ["--distance", "manhattan", "ours"]),
    (["--dataset", "mnist", "--network", "resnet99"], ["--network", "resnet99", "convnet"]),
    (["--dataset", "mnist", "--network", "mlp", "--width", "64"], ["--width", "mlp"]),
    (["--dataset", "mnist", "--match-level", "both"], ["--match-level", "both", "multi"]),
    (["--dataset", "mnist", "--inner-steps", "adaptive"], ["--inner-steps", "adaptive", "schedule"]),
    (["--dataset", "mnist", "--hessian-kind", "fisher"], ["--hessian-kind", "fisher", "gauss_newton"]),
    (["--dataset", "mnist", "--precision", "fp16"], ["--precision", "fp16", "bf16", "fp32"]),
    (["--dataset", "mnist", "--method", "dm", "--precision", "fp32"], ["--precision", "gradient matching"]),
])
def test_bad_values_exit_with_status_2_and_name_the_allowed_ones(argv, words, capsys, tmp_path) -> None:
    profile = [] if "--profile" in argv else ["--profile", "ci"]
    assert gmlib("distill", "--out", tmp_path, *profile, *argv) == 2
    message = capsys.readouterr().err
    for word in words:
        assert word in message


def test_the_module_entry_point_reports_usage_errors_with_status_2() -> None:
    done = subprocess.run([sys.executable, "-m", "gmlib", "distill", "--dataset", "mnist", "--ipc", "0", "--out", "x"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and "--ipc" in done.stderr


def test_distill_writes_a_set_with_provenance_and_a_history_then_resumes(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["distill", "--dataset", "mnist", "--ipc", "2", "--profile", "ci", "--iterations", "2", "--seed", "3",
            "--out", out, "--checkpoint-every", "1", "--inner-loop", "1", *TINY]
    assert gmlib(*argv) == 0
    printed = capsys.readouterr().out
    assert "2 iterations" in printed and "synthetic.pt" in printed
    syn = load_synthetic(out / "synthetic.pt")
    assert syn.images.shape == (6, 1, 8, 8) and syn.dataset == "mnist"
    provenance = syn.metadata["provenance"]
    assert (provenance["method"], provenance["preset"], provenance["seed"], provenance["iterations"]) == ("dc", "ci", 3, 2)
    assert provenance["extra"]["config"]["network_kwargs"] == {"width": 8}
    history = json.loads((out / "history.json").read_text())
    assert len(history["losses"]) == 2 and history["seed"] == 3 and history["config"]["batch_real"] == 8

    # The same command again resumes the finished run: same images, nothing recomputed.
    assert gmlib(*argv) == 0
    assert torch.equal(load_synthetic(out / "synthetic.pt").images, syn.images)
    assert json.loads((out / "history.json").read_text())["resumed_at"] == [2]
    # Other settings on the same directory are refused unless --no-resume.
    other = [a if a != "3" else "4" for a in argv]
    assert gmlib(*other) == 1
    assert "seed=3 there, 4 here" in capsys.readouterr().err
    assert gmlib(*other, "--no-resume") == 0


def test_distill_takes_its_configuration_from_the_presets(tmp_path) -> None:
    from gmlib.book.presets import dc_config, dm_config, get_profile

    profile = get_profile("ci")

    def config(*options: str):
        args = cli.build_parser().parse_args(["distill", "--dataset", "mnist", "--out", str(tmp_path), *options])
        return cli._distill_config(args, profile)

    assert config("--iterations", "3") == dc_config(profile, 1, "mnist", iterations=3)
    dsa = config("--method", "dsa", "--ipc", "10", "--width", "8")
    assert dsa == dc_config(profile, 10, "mnist", method="dsa", network_kwargs={"width": 8})
    assert dsa.eval_config.augment == "dsa" and dict(dsa.eval_config.network_kwargs) == {"width": profile.eval_width}
    dm = config("--method", "dm", "--ipc", "10", "--lr-img", "2")
    assert dm == dm_config(profile, 10, "mnist", lr_img=2.0)
    assert dm.init == "real" and dm.iterations == profile.dm_iterations and dm.eval_config.augment == "dsa"
    assert not dm.compile and config("--method", "dm", "--compile").compile
    assert config().compile == "auto" and config("--no-compile").compile is False and config("--compile").compile
    assert config("--precision", "fp32").precision == "fp32" and config().precision == "auto"


def test_distill_refuses_gradient_matching_options_for_dm(tmp_path, capsys) -> None:
    for option in (["--outer-loop", "3"], ["--distance", "mse"], ["--no-per-class"]):
        assert gmlib("distill", "--dataset", "mnist", "--method", "dm", "--out", str(tmp_path / "x"), *option) == 2
        assert f"{option[0].replace('no-', '')} is an option of gradient matching" in capsys.readouterr().err
    assert gmlib("distill", "--dataset", "mnist", "--method", "mtt", "--compile", "--out", str(tmp_path / "x")) == 2
    assert "--compile is an option of dc, dsa and dm, not of --method mtt" in capsys.readouterr().err


def test_distill_dm_runs_resumes_and_extends(tmp_path, capsys) -> None:
    out = tmp_path / "dm"
    argv = ["distill", "--dataset", "mnist", "--method", "dm", "--profile", "ci", "--out", str(out), "--no-progress"]
    assert gmlib(*argv, "--iterations", "2") == 0
    assert "dm on mnist, ipc 1, profile ci, seed 0: 2 iterations" in capsys.readouterr().out
    assert gmlib(*argv, "--iterations", "4") == 0
    history = json.loads((out / "history.json").read_text())
    assert history["method"] == "dm" and history["resumed_at"] == [2] and len(history["losses"]) == 4
    extended = torch.load(out / "synthetic.pt", weights_only=False)
    assert gmlib(*[a if a != str(out) else str(tmp_path / "straight") for a in argv], "--iterations", "4") == 0
    straight = torch.load(tmp_path / "straight" / "synthetic.pt", weights_only=False)
    assert torch.equal(extended["images"], straight["images"])


def test_evaluate_prints_mean_and_std_per_network_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert gmlib("distill", "--dataset", "mnist", "--method", "dsa", "--profile", "ci", "--iterations", "1",
                 "--out", out, *TINY) == 0
    capsys.readouterr()
    report_path = tmp_path / "acc.json"
    assert gmlib("evaluate", out / "synthetic.pt", "--networks", "convnet", "mlp", "--models", "2", "--epochs", "2",
                 "--profile", "ci", "--width", "8", "--json", report_path, "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "convnet:" in printed and "mlp:" in printed and "+-" in printed
    report = json.loads(report_path.read_text())
    assert set(report["results"]) == {"convnet", "mlp"} and report["dataset"] == "mnist"
    convnet = report["results"]["convnet"]
    assert len(convnet["accuracies"]) == 2 and convnet["config"]["augment"] == "dsa"  # a DSA set
    assert convnet["config"]["dsa_strategy"] == "color_crop_cutout_scale_rotate"  # digits: no flip
    assert gmlib("evaluate", tmp_path / "missing.pt", "--profile", "ci") == 2
    assert "missing.pt" in capsys.readouterr().err
    assert gmlib("evaluate", out / "synthetic.pt", "--learned-lr", "--profile", "ci") == 2  # a DSA set has none
    assert "no metadata['learned_lr']: it was not distilled by MTT" in capsys.readouterr().err
    # gmlib 0.1's protocol by name: its MNIST augmentation and schedule reach the config.
    old_path = tmp_path / "old.json"
    assert gmlib("evaluate", out / "synthetic.pt", "--models", "1", "--epochs", "2", "--profile", "ci", "--width", "8",
                 "--augment", "mnist", "--protocol", "gmlib-0.1", "--json", old_path, "--no-progress") == 0
    old = json.loads(old_path.read_text())
    assert old["protocol"] == "gmlib-0.1"
    config = old["results"]["convnet"]["config"]
    assert (config["schedule"], config["reset_momentum"], config["num_epochs"]) == ("halves", False, 2)
    assert config["classic"]["resample"] == "affine" and "noise" in config["classic"]["ops"]
    capsys.readouterr()
    assert gmlib("evaluate", out / "synthetic.pt", "--protocol", "newest") == 2
    assert "invalid choice: 'newest'" in capsys.readouterr().err


def test_distill_takes_the_matching_variants_and_records_them(tmp_path, capsys) -> None:
    out = tmp_path / "variants"
    assert gmlib("distill", "--dataset", "mnist", "--ipc", "1", "--profile", "ci", "--iterations", "1", "--out", out,
                 "--match-level", "multi", "--distance", "d1+d2", "--inner-steps", "schedule",
                 "--hessian-weight", "0.1", "--hessian-kind", "gauss_newton", "--no-progress", *TINY) == 0
    config = json.loads((out / "history.json").read_text())["config"]
    assert (config["match_level"], config["distance"], config["inner_steps"]) == ("multi", "d1+d2", "schedule")
    assert (config["hessian_weight"], config["hessian_kind"], config["hessian_loss"]) == (0.1, "gauss_newton", "synthetic")
    capsys.readouterr()
    # A combination the loop cannot run is refused with the reason, not run half-way.
    assert gmlib("distill", "--dataset", "mnist", "--profile", "ci", "--out", tmp_path / "bad",
                 "--match-level", "multi", "--no-per-class", *TINY) != 0
    assert "per_class" in capsys.readouterr().err


def test_unavailable_data_exits_1_with_its_message_for_every_command(tmp_path, monkeypatch, capsys) -> None:
    from gmlib.data import DataError

    assert gmlib("distill", "--dataset", "mnist", "--profile", "ci", "--iterations", "1", "--out", tmp_path / "run",
                 *TINY) == 0
    capsys.readouterr()

    def unavailable(name, device, cache_dir):
        raise DataError(f"{name}: the cached file failed its checksum")

    monkeypatch.setattr(cli, "_load_dataset", unavailable)
    for argv in (["distill", "--dataset", "mnist", "--profile", "ci", "--out", tmp_path / "other"],
                 ["experts", "--dataset", "mnist", "--profile", "ci", "--out", tmp_path / "buffer"],
                 ["evaluate", tmp_path / "run" / "synthetic.pt", "--profile", "ci"]):
        assert gmlib(*argv) == 1, argv[0]
        assert "error: mnist: the cached file failed its checksum" in capsys.readouterr().err


def test_evaluate_and_convert_read_sets_made_by_the_authors_code(tmp_path, capsys) -> None:
    """A results file as DC's code writes it (its dataset unrecorded, accuracies as numpy numbers)
    is evaluated under gmlib's protocol with --dataset, and converted both ways."""
    import numpy as np

    fake = fake_mnist()
    images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([2, 0, 1, 0, 2, 1])  # out of class order, as another implementation may keep them
    res = tmp_path / "res_DSA_MNIST_ConvNet_2ipc.pt"
    torch.save({"data": [[images, labels]], "accs_all_exps": {"ConvNet": [np.float64(0.5), np.float64(0.7)]}}, res)
    report_path = tmp_path / "acc.json"
    assert gmlib("evaluate", res, "--dataset", "mnist", "--models", "1", "--epochs", "2", "--profile", "ci",
                 "--width", "8", "--json", report_path, "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "convnet:" in printed and "the file reports ConvNet: 60.00 +- 10.00 % (2 models" in printed
    report = json.loads(report_path.read_text())
    assert report["format"] == "dc" and report["source"]["reported"] == {"ConvNet": [0.5, 0.7]}
    assert report["ipc"] == 2 and report["results"]["convnet"]["config"]["augment"] == "dsa"  # DSA's file name
    # Without its dataset a foreign file cannot be read; the message says what to add.
    assert gmlib("evaluate", res, "--profile", "ci") == 2
    assert "does not record its dataset; name it with --dataset" in capsys.readouterr().err
    assert gmlib("evaluate", res, "--dataset", "mnist", "--experiment", "3", "--profile", "ci") == 2
    assert "experiment 3 is not in" in capsys.readouterr().err

    # convert needs no data, only the catalogue's shapes: real MNIST-sized sets here (10 classes, 28x28).
    # DC's layout -> gmlib's -> MTT's folder, pixels unchanged and labels in class order.
    assert len(fake.class_names) == 3 and gmlib("convert", res, tmp_path / "x.pt", "--to", "gmlib",
                                                "--dataset", "mnist") == 2
    assert "images are (1, 8, 8), but mnist images are (1, 28, 28)" in capsys.readouterr().err
    images = torch.randn(20, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(10).repeat(2)  # 0..9, 0..9
    torch.save({"data": [[images, labels]], "accs_all_exps": {}}, res)
    assert gmlib("convert", res, tmp_path / "ours.pt", "--to", "gmlib", "--dataset", "mnist") == 0
    assert "wrote" in capsys.readouterr().out
    ours = load_synthetic(tmp_path / "ours.pt")
    assert ours.metadata["source"]["format"] == "dc" and ours.ipc == 2 and ours.dataset == "mnist"
    order = torch.sort(labels, stable=True).indices
    assert torch.equal(ours.images.detach(), images[order]) and ours.labels.tolist() == [c for c in range(10) for _ in "ab"]
    assert gmlib("convert", tmp_path / "ours.pt", tmp_path / "mtt", "--to", "mtt") == 0
    assert torch.equal(torch.load(tmp_path / "mtt" / "images_best.pt", weights_only=True), images[order])
    assert gmlib("convert", tmp_path / "ours.pt", tmp_path / "x.pt", "--to", "gmlib", "--dataset", "fashion-mnist") == 2
    assert "the set is of mnist, not --dataset fashion-mnist" in capsys.readouterr().err
    assert gmlib("convert", tmp_path / "missing.pt", tmp_path / "x.pt", "--to", "dc") == 2
    assert "no synthetic set at" in capsys.readouterr().err
    assert gmlib("convert", tmp_path / "ours.pt", tmp_path / "x.pt", "--to", "npz") == 2
    assert "invalid choice: 'npz'" in capsys.readouterr().err


def test_compare_runs_a_grid_writes_its_table_and_skips_finished_cells(tmp_path, capsys) -> None:
    out = tmp_path / "grid"
    argv = ["compare", "--methods", "random", "dc", "--ipc", "1", "--seeds", "0", "1", "--profile", "ci",
            "--iterations", "1", "--models", "1", "--device", "cpu", "--out", out, "--no-progress"]
    assert gmlib(*argv) == 0
    printed = capsys.readouterr().out
    assert "dc_mnist_ipc1_seed1: convnet" in printed and "1 iterations" in printed and "4 cells, 0 failed" in printed
    table = json.loads((out / "table.json").read_text())
    rows = table["rows"]
    assert [(r["method"], r["seed"]) for r in rows] == [("random", 0), ("random", 1), ("dc", 0), ("dc", 1)]
    assert table["written_by"]["command"] == f"python -m gmlib compare --methods random dc --ipc 1 --seeds 0 1 " \
        f"--profile ci --iterations 1 --models 1 --device cpu --out {out} --no-progress"
    assert gmlib(*argv) == 0  # finished: skipped, the same table
    assert json.loads((out / "table.json").read_text())["rows"] == rows
    capsys.readouterr()
    assert gmlib(*[("2" if a == "1" and argv[i - 1] == "--iterations" else a) for i, a in enumerate(argv)]) == 2
    assert "holds an experiment of other settings" in capsys.readouterr().err
    assert gmlib("compare", "--methods", "dc", "--iterations", "1", "--seconds", "5", "--out", out) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert gmlib("compare", "--methods", "dd", "--out", out) == 2
    assert "invalid choice: 'dd'" in capsys.readouterr().err
    assert gmlib("compare", "--methods", "dc", "dc", "--out", out) == 2
    assert "methods lists a value twice" in capsys.readouterr().err
