"""Bad input through the command line and the Python API: one row per case, each a clear message.

The CLI rows run ``python -m gmlib`` in-process on a tiny fake MNIST and assert exit status 2 (an
input error; 130 for an interrupt) with the message on stderr and no traceback: an exception that
escaped the CLI would fail the test instead. The API rows assert the exception type and message.
Data-layer cases are in ``test_bad_input_data.py``, the chapters' parameters in
``test_bad_input_notebooks.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from fakes import brightness_classes

import gmlib.cli as cli
import gmlib.synthetic
from gmlib.book.presets import get_profile
from gmlib.checks import WrongTypeError
from gmlib.data import dataset_info
from gmlib.eval_config import EvalConfig
from gmlib.evaluate import evaluate_set
from gmlib.methods.dc_config import MatchingConfig
from gmlib.networks import get_network
from gmlib.runinfo import resolve_device
from gmlib.synthetic import SyntheticSet, check_fits_dataset, class_ordered_labels, init_synthetic, save_synthetic

pytestmark = pytest.mark.usefixtures("one_thread")

PER_CLASS = 16  # training images per class of the fake MNIST


def fake_mnist(*args: Any, **kwargs: Any):
    return brightness_classes(PER_CLASS, 4, name="mnist")


def set_file(tmp_path: Path, name: str, *, classes: int = 3, shape=(1, 8, 8), dataset: str = "mnist") -> Path:
    """A valid synthetic-set file of 1 image per class with the given shape, classes and dataset."""
    images = torch.randn(classes, *shape)
    syn = SyntheticSet(images, class_ordered_labels(classes, 1), 1, classes, (0.0,) * shape[0], (1.0,) * shape[0],
                       [str(c) for c in range(classes)], dataset)
    return save_synthetic(syn, tmp_path / f"{name}.pt")


def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "taken"
    path.write_text("not a folder")
    return path


def run_cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as stop:
        cli.main([str(a) for a in argv])
    return stop.value.code


@pytest.fixture
def fake_world(monkeypatch):
    monkeypatch.setattr(cli, "_load_dataset", fake_mnist)


TINY = ["--width", "8", "--batch-real", "8", "--iterations", "1", "--no-progress"]

# (id, argv builder given tmp_path, expected exit status, message fragment on stderr)
CLI_CASES: list[tuple[str, Callable[[Path], list], int, str]] = [
    ("evaluate-set-3-channels-as-mnist", lambda t: ["evaluate", set_file(t, "rgb", shape=(3, 8, 8))], 2,
     "the set's images are 3x8x8 (channels x height x width) but mnist images are 1x8x8"),
    ("evaluate-set-larger-images-as-mnist", lambda t: ["evaluate", set_file(t, "big", shape=(1, 32, 32))], 2,
     "the set's images are 1x32x32"),
    ("evaluate-set-with-fewer-classes", lambda t: ["evaluate", set_file(t, "two", classes=2)], 2,
     "the set has 2 classes but mnist has 3"),
    ("evaluate-set-naming-unknown-dataset", lambda t: ["evaluate", set_file(t, "odd", dataset="mnits")], 2,
     "unknown dataset 'mnits'; choose one of mnist, fashion-mnist"),
    ("evaluate-missing-file", lambda t: ["evaluate", t / "missing.pt"], 2, "no synthetic set at"),
    ("evaluate-not-a-set", lambda t: ["evaluate", (t / "notes.pt", (t / "notes.pt").write_text("hi"))[0]], 2,
     "could not read"),
    ("evaluate-device-mps", lambda t: ["evaluate", set_file(t, "ok"), "--device", "mps"], 2,
     "device 'mps' is not available on this machine; use 'auto' or one of: cpu"),
    ("evaluate-device-unknown", lambda t: ["evaluate", set_file(t, "ok"), "--device", "gpu0"], 2,
     "unknown device 'gpu0'"),
    ("evaluate-protocol-unknown", lambda t: ["evaluate", set_file(t, "ok"), "--protocol", "newest"], 2,
     "invalid choice: 'newest'"),
    ("evaluate-models-zero", lambda t: ["evaluate", set_file(t, "ok"), "--models", "0"], 2,
     "must be an integer >= 1, got 0"),
    ("distill-device-mps", lambda t: ["distill", "--dataset", "mnist", "--device", "mps", "--out", t / "r", *TINY], 2,
     "device 'mps' is not available"),
    ("distill-real-init-more-than-a-class",
     lambda t: ["distill", "--dataset", "mnist", "--ipc", "20", "--init", "real", "--out", t / "r", *TINY], 2,
     f"init 'real' needs 20 images per class, but class 0 ('a') of mnist has only {PER_CLASS}"),
    ("distill-ipc-too-big-for-memory",
     lambda t: ["distill", "--dataset", "mnist", "--ipc", "100000000", "--out", t / "r", *TINY], 2,
     "ipc 100000000 makes 300,000,000 synthetic images of 1x8x8, which need at least 214.6 GiB"),
    ("distill-ipc-zero", lambda t: ["distill", "--dataset", "mnist", "--ipc", "0", "--out", t / "r", *TINY], 2,
     "must be an integer >= 1, got 0"),
    ("distill-lr-img-negative",
     lambda t: ["distill", "--dataset", "mnist", "--lr-img", "-1", "--out", t / "r", *TINY], 2,
     "must be a number > 0"),
    ("distill-width-on-fixed-network",
     lambda t: ["distill", "--dataset", "mnist", "--network", "lenet", "--out", t / "r", *TINY], 2,
     "--width applies only to convnet and convnet_bn, not 'lenet'"),
    ("distill-profile-unknown",
     lambda t: ["distill", "--dataset", "mnist", "--profile", "laptop", "--out", t / "r", *TINY], 2,
     "invalid choice: 'laptop'"),
    ("distill-dataset-unknown", lambda t: ["distill", "--dataset", "mnits", "--out", t / "r", *TINY], 2,
     "invalid choice: 'mnits'"),
    ("distill-out-is-a-file", lambda t: ["distill", "--dataset", "mnist", "--out", a_file(t), *TINY], 2,
     "is a file, not a folder: choose another output folder"),
    ("distill-out-under-a-file", lambda t: ["distill", "--dataset", "mnist", "--out", a_file(t) / "run", *TINY], 2,
     "cannot write into"),
    ("evaluate-json-is-a-folder", lambda t: ["evaluate", set_file(t, "ok"), "--json", t], 2,
     "is a folder; give a file name such as"),
    ("evaluate-json-under-a-file", lambda t: ["evaluate", set_file(t, "ok"), "--json", a_file(t) / "eval.json"], 2,
     "taken is a file, not a folder"),
]


@pytest.mark.parametrize("argv, status, message", [case[1:] for case in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_clear_line_and_exit_2(fake_world, monkeypatch, tmp_path, capsys, argv, status, message):
    monkeypatch.setattr(gmlib.synthetic, "available_bytes", lambda device="cpu": 8 * 2**30)  # the same on every machine
    assert run_cli(argv(tmp_path)) == status
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_interrupt_during_start_up_is_a_message_not_a_traceback(monkeypatch, tmp_path, capsys) -> None:
    def interrupted(*args: Any, **kwargs: Any):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load_dataset", interrupted)
    assert run_cli(["distill", "--dataset", "mnist", "--out", tmp_path / "r", *TINY]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "interrupted" and "Traceback" not in err


# ------------------------------------------------------------------------------------------
# The Python API
# ------------------------------------------------------------------------------------------


def mlp_for_rgb_given_grey():
    get_network("mlp", 3, 10, 28)(torch.zeros(2, 1, 28, 28))


def convnet_for_28_given_32():
    get_network("convnet", 1, 10, 28, width=8)(torch.zeros(2, 1, 32, 32))


def five_class_set_against_mnist():
    syn = SyntheticSet(torch.randn(5, 1, 28, 28), class_ordered_labels(5, 1), 1, 5, (0.0,), (1.0,),
                       list("abcde"), "mnist")
    check_fits_dataset(syn, dataset_info("mnist"))


def labels_beyond_the_sets_classes():
    images, labels = torch.randn(5, 1, 8, 8), torch.arange(5)
    evaluate_set(images, labels, images, torch.tensor([0, 1, 2, 3, 9]), EvalConfig(network="mlp", epochs=1),
                 num_classes=5, device="cpu")


# (id, call, exception type, message fragment)
API_CASES: list[tuple[str, Callable[[], Any], type, str]] = [
    ("matching-misspelled-network-keyword", lambda: MatchingConfig(ipc=1, network_kwargs={"widht": 8}), ValueError,
     "network 'convnet' takes no keyword 'widht'; the keywords it takes: width, depth, norm, act, pool"),
    ("matching-variant-keyword-on-fixed-network",
     lambda: MatchingConfig(ipc=1, network="lenet", network_kwargs={"width": 8}), ValueError,
     "lenet does not take width=8"),
    ("matching-momentum-as-string", lambda: MatchingConfig(ipc=1, momentum_img="0.5"), TypeError,
     "momentum_img must be a number in [0, 1), got '0.5' (str)"),
    ("matching-momentum-one", lambda: MatchingConfig(ipc=1, momentum_img=1.0), ValueError,
     "momentum_img must be a number in [0, 1), got 1.0"),
    ("matching-lr-as-string", lambda: MatchingConfig(ipc=1, lr_img="0.1"), TypeError,
     "lr_img must be a finite number > 0, got '0.1' (str)"),
    ("matching-lr-infinite", lambda: MatchingConfig(ipc=1, lr_img=float("inf")), ValueError,
     "lr_img must be a finite number > 0, got inf"),
    ("matching-ipc-as-float", lambda: MatchingConfig(ipc=1.0), TypeError,
     "ipc (images per class) must be an integer >= 1, got 1.0 (float)"),
    ("eval-misspelled-network-keyword", lambda: EvalConfig(network_kwargs={"dpeth": 2}), ValueError,
     "network 'convnet' takes no keyword 'dpeth'"),
    ("eval-unknown-network", lambda: EvalConfig(network="resnet"), ValueError, "'resnet'"),
    ("eval-lr-as-string", lambda: EvalConfig(lr="0.01"), TypeError, "lr must be a finite number > 0, got '0.01' (str)"),
    ("eval-momentum-negative", lambda: EvalConfig(momentum=-0.1), ValueError, "momentum must be a number in [0, 1)"),
    ("network-built-for-rgb-given-grey", mlp_for_rgb_given_grey, ValueError,
     "MLP was built for 3x28x28 images (channels x height x width), got a batch of shape (2, 1, 28, 28)"),
    ("network-built-for-28-given-32", convnet_for_28_given_32, ValueError,
     "ConvNet was built for 1x28x28 images (channels x height x width), got a batch of shape (2, 1, 32, 32)"),
    ("set-with-other-classes-than-its-dataset", five_class_set_against_mnist, ValueError,
     "the set has 5 classes but mnist has 10"),
    ("evaluate-test-labels-beyond-the-classes", labels_beyond_the_sets_classes, ValueError,
     "the test labels range over [0, 9] but num_classes is 5"),
    ("device-mps", lambda: resolve_device("mps"), ValueError, "device 'mps' is not available on this machine"),
    ("device-cuda-index", lambda: resolve_device("cuda:7"), ValueError, "device 'cuda:7' is not available"),
    ("profile-negative-iterations", lambda: get_profile("ci", iterations=-5), ValueError,
     "iterations must be an integer >= 0, got -5"),
    ("profile-models-as-string", lambda: get_profile("ci", eval_models="2"), TypeError,
     "eval_models must be an integer >= 1, got '2' (str)"),
    ("profile-empty-ipcs", lambda: get_profile("ci", ipcs=()), ValueError, "ipcs must be a non-empty tuple"),
    ("profile-unknown-field", lambda: get_profile("ci", iteration=5), ValueError, "unknown profile field(s) ['iteration']"),
    ("init-real-more-than-a-class", lambda: init_synthetic(brightness_classes(4, 1), 5, "real"), ValueError,
     "init 'real' needs 5 images per class, but class 0 ('a') of fake has only 4"),
    ("init-unknown", lambda: init_synthetic(brightness_classes(4, 1), 1, "zeros"), ValueError, "unknown init 'zeros'"),
]


@pytest.mark.parametrize("call, error, message", [case[1:] for case in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input_raises_a_clear_error(call, error, message) -> None:
    with pytest.raises(error) as raised:
        call()
    assert message in str(raised.value)


def test_a_wrong_type_is_both_a_type_error_and_a_value_error() -> None:
    with pytest.raises(ValueError):  # code that catches bad input as ValueError still catches it
        MatchingConfig(ipc=1, momentum_img="0.5")
    assert issubclass(WrongTypeError, TypeError) and issubclass(WrongTypeError, ValueError)


def test_an_image_learning_rate_far_above_dcs_warns_but_runs() -> None:
    """Refused would be wrong (a user may explore it); silent would hide why the images saturate."""
    with pytest.warns(UserWarning, match=r"lr_img=50 is 500 times DC's 0.1"):
        MatchingConfig(ipc=1, lr_img=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MatchingConfig(ipc=1, lr_img=0.1)


def test_outputs_get_the_users_normal_permissions(tmp_path) -> None:
    """Files written through a temporary file (always 0600) end as a plain open would make them."""
    import os
    import stat

    umask = os.umask(0o022)
    try:
        path = set_file(tmp_path, "perm")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
