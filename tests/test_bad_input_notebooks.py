"""Bad chapter parameters fail early and clearly: the rules of gmlib.book.chapter_parameters, the check
cell every chapter runs right after its parameters cell, and one papermill run end to end."""

import ast
from pathlib import Path

import jupytext
import nbformat
import pytest

from gmlib.book.chapter_parameters import CHAPTER_DATASETS, PARAMETER_NAMES, check_chapter_parameters
from gmlib.checks import WrongTypeError
from gmlib.data import DATASET_NAMES

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHAPTERS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md"))


def parameters_index(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    return tagged[0]


def chapter_defaults(md_path: Path) -> dict:
    """The parameters cell's assignments, name -> literal value, in order."""
    nb = jupytext.read(md_path)
    tree = ast.parse(nb.cells[parameters_index(nb)].source)
    return {s.targets[0].id: ast.literal_eval(s.value) for s in tree.body}


def chapter(number: str) -> Path:
    (path,) = NOTEBOOKS.glob(f"{number}_*.md")
    return path


# (chapter, bad value(s), error class, fragment of the message). WrongTypeError is the TypeError
# (and ValueError) of gmlib.checks; a plain ValueError means a value of the right type out of range.
BAD_VALUES = [
    pytest.param("00", {"profile": "laptop"}, ValueError,
                 "unknown profile 'laptop'; allowed: 'auto', 'ci', 'cpu', 'gpu', 'paper'", id="00-profile-unknown"),
    pytest.param("00", {"seed": "abc"}, WrongTypeError, "seed must be an integer >= 0, got 'abc' (str)",
                 id="00-seed-string"),
    pytest.param("00", {"dataset": "cifar10"}, ValueError,
                 "unknown dataset 'cifar10'; allowed: 'mnist', 'fashion-mnist'", id="00-dataset-not-in-chapter"),
    pytest.param("02", {"seed": True}, WrongTypeError, "seed must be an integer >= 0, got True (bool)",
                 id="02-seed-bool"),
    pytest.param("02", {"seed": -1}, ValueError, "seed must be an integer >= 0, got -1", id="02-seed-negative"),
    pytest.param("01", {"toy_points": 0}, ValueError, "toy_points must be an integer >= 1, got 0",
                 id="01-toy_points-zero"),
    pytest.param("01", {"image_init": "gray"}, ValueError, "unknown image_init 'gray'; allowed: 'noise', 'real'",
                 id="01-image_init-not-in-chapter"),
    pytest.param("01", {"init_mode": "Fixed"}, ValueError, "unknown init_mode 'Fixed'; allowed: 'random', 'fixed'",
                 id="01-init_mode-case"),
    pytest.param("03", {"iterations": 0}, ValueError,
                 "iterations must be an integer >= 1, got 0 (iterations may also be None", id="03-iterations-zero"),
    pytest.param("03", {"inner_epochs_shown": 2.5}, WrongTypeError,
                 "inner_epochs_shown must be an integer >= 1, got 2.5 (float)", id="03-inner_epochs_shown-float"),
    pytest.param("04", {"hessian_loss": "reel"}, ValueError,
                 "unknown hessian_loss 'reel'; allowed: 'synthetic', 'real'", id="04-hessian_loss-typo"),
    pytest.param("04", {"hessian_loss": None}, WrongTypeError,
                 "hessian_loss must be one of 'synthetic', 'real', got None (NoneType)", id="04-hessian_loss-none"),
    pytest.param("04", {"hessian_weight": -1.0}, ValueError, "hessian_weight must be a finite number >= 0, got -1.0",
                 id="04-hessian_weight-negative"),
    pytest.param("04", {"hessian_weight": "one"}, WrongTypeError,
                 "hessian_weight must be a finite number >= 0, got 'one' (str)", id="04-hessian_weight-string"),
    pytest.param("05", {"iterations": "50"}, WrongTypeError, "iterations must be an integer >= 1, got '50' (str)",
                 id="05-iterations-string"),
    pytest.param("05", {"outer_loop": 0}, ValueError, "outer_loop must be an integer >= 1, got 0",
                 id="05-outer_loop-zero"),
    pytest.param("05", {"probe_networks": 0}, ValueError, "probe_networks must be an integer >= 1, got 0",
                 id="05-probe_networks-zero"),
    pytest.param("06", {"networks": "mlp"}, WrongTypeError, "networks must be a list of network names, got 'mlp' (str)",
                 id="06-networks-bare-string"),
    pytest.param("06", {"networks": ["mlp", "vgg"]}, ValueError, "unknown networks entry 'vgg'; allowed: 'mlp', ",
                 id="06-networks-unknown-name"),
    pytest.param("06", {"networks": ("mlp", "mlp")}, ValueError, "networks must be a list of distinct network names",
                 id="06-networks-repeated"),
    pytest.param("06", {"networks": []}, ValueError, "networks must be a non-empty list of network names, got []",
                 id="06-networks-empty"),
    pytest.param("06", {"nas_depths": (1, 6)}, ValueError, "nas_depths entry must be a ConvNet depth from 1 to 5",
                 id="06-nas_depths-too-deep"),
    pytest.param("06", {"nas_depths": "(1, 2)"}, WrongTypeError,
                 "nas_depths must be a list of ConvNet depths 1 to 5, got '(1, 2)' (str)", id="06-nas_depths-string"),
    pytest.param("07", {"iterations": 0}, ValueError,
                 "iterations must be an integer >= 1, got 0 (iterations may also be None", id="07-iterations-zero"),
    pytest.param("07", {"dataset": "svhn"}, ValueError,
                 "unknown dataset 'svhn'; allowed: 'mnist', 'fashion-mnist'", id="07-dataset-not-in-chapter"),
    pytest.param("10", {"ipc": 0}, ValueError, "ipc must be an integer >= 1, got 0", id="10-ipc-zero"),
    pytest.param("10", {"k": 2}, ValueError, "k must be an integer >= 4, got 2", id="10-k-below-minimum"),
    pytest.param("10", {"gm_iterations": -5}, ValueError, "gm_iterations must be an integer >= 1, got -5",
                 id="10-gm_iterations-negative"),
    pytest.param("10", {"ift_iterations": 1.0}, WrongTypeError,
                 "ift_iterations must be an integer >= 1, got 1.0 (float)", id="10-ift_iterations-float"),
    pytest.param("11", {"seconds": 0}, ValueError, "seconds must be a positive number of seconds, got 0",
                 id="11-seconds-zero"),
    pytest.param("11", {"seconds": "30"}, WrongTypeError, "seconds must be a number of seconds, got '30' (str)",
                 id="11-seconds-string"),
    pytest.param("11", {"methods": ["dc", "dx"]}, ValueError,
                 "unknown methods entry 'dx'; allowed: 'random', 'herding', 'dc', ", id="11-methods-unknown-name"),
    pytest.param("11", {"methods": "dc"}, WrongTypeError, "methods must be a list of method names, got 'dc' (str)",
                 id="11-methods-bare-string"),
    pytest.param("11", {"methods": ["dm", "dm"]}, ValueError, "methods must be a list of distinct method names",
                 id="11-methods-repeated"),
    pytest.param("11", {"dataset": "cifar"}, ValueError, "unknown dataset 'cifar'; allowed: 'mnist', 'fashion-mnist'",
                 id="11-dataset-unknown"),
    pytest.param("12", {"profile": "laptop"}, ValueError, "unknown profile 'laptop'", id="12-profile-unknown"),
    pytest.param("12", {"seed": 1.5}, WrongTypeError, "seed must be an integer >= 0, got 1.5 (float)", id="12-seed-float"),
]


@pytest.mark.parametrize("number, bad, error, fragment", BAD_VALUES)
def test_a_bad_parameter_names_itself_its_value_and_what_is_allowed(number, bad, error, fragment):
    defaults = chapter_defaults(chapter(number))
    assert set(bad) <= set(defaults), f"chapter {number} has no parameter {set(bad) - set(defaults)}"
    with pytest.raises(ValueError) as raised:  # WrongTypeError is a ValueError too
        check_chapter_parameters(**{**defaults, **bad})  # as papermill leaves them: defaults, then -p values
    assert type(raised.value) is error
    assert fragment in str(raised.value)


def test_a_parameter_without_a_rule_is_a_programming_error():
    with pytest.raises(ValueError, match=r"no rule for chapter parameter\(s\) 'epochs': add one"):
        check_chapter_parameters(seed=0, epochs=3)


def test_the_rules_cover_exactly_the_chapters_parameters():
    used = {name for path in CHAPTERS for name in chapter_defaults(path)}
    assert used == set(PARAMETER_NAMES), f"rules without a chapter: {set(PARAMETER_NAMES) - used}; " \
                                         f"parameters without a rule: {used - set(PARAMETER_NAMES)}"
    assert set(CHAPTER_DATASETS) <= set(DATASET_NAMES)


@pytest.mark.parametrize("md_path", CHAPTERS, ids=lambda p: p.stem)
def test_the_cell_after_the_parameters_checks_every_parameter(md_path):
    nb = jupytext.read(md_path)
    check_cell = nb.cells[parameters_index(nb) + 1]
    assert check_cell.cell_type == "code", f"{md_path.name}: the cell after the parameters must check them"
    calls = [node for node in ast.walk(ast.parse(check_cell.source))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_chapter_parameters"]
    assert len(calls) == 1, f"{md_path.name}: the cell after the parameters must call check_chapter_parameters"
    passed = {kw.arg: kw.value.id for kw in calls[0].keywords if isinstance(kw.value, ast.Name)}
    assert len(passed) == len(calls[0].keywords), f"{md_path.name}: pass each parameter as name=name"
    defaults = chapter_defaults(md_path)
    assert list(passed) == list(defaults), f"{md_path.name}: check {list(defaults)}, not {list(passed)}"
    assert all(kw == value for kw, value in passed.items()), f"{md_path.name}: pass each parameter as name=name"
    check_chapter_parameters(**defaults)  # the defaults themselves are allowed


@pytest.mark.slow
def test_papermill_stops_chapter_04_at_the_check_cell(tmp_path):
    papermill = pytest.importorskip("papermill")
    source = NOTEBOOKS / "04_hessian_terms.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), parameters={"hessian_loss": "reel"},
                                   cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False)
    error = raised.value
    assert error.ename == "ValueError"
    assert "unknown hessian_loss 'reel'; allowed: 'synthetic', 'real'" in str(error)
    # papermill injects its cell right after the parameters cell, so the check cell is 2 later,
    # and the only code that ran is the cells up to the parameters, the injected cell and the check.
    nb = nbformat.read(source, as_version=4)
    params = parameters_index(nb)
    assert error.cell_index == params + 2, f"failed at cell {error.cell_index}, not at the check cell"
    assert "check_chapter_parameters(" in error.source
    assert error.exec_count == sum(c.cell_type == "code" for c in nb.cells[:params + 1]) + 2
