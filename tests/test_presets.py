from pathlib import Path

import pytest
import torch

from gmlib.book.budgets import (
    CHAPTER_BUDGETS,
    SEED002_DISTANCES,
    SEED002_SETTINGS,
    BilevelBudget,
    ComparisonBudget,
    CrossArchitectureBudget,
    GenerativeTeachingBudget,
    HessianBudget,
    InitialisationBudget,
    ReproducibilityBudget,
    WhatHowWhereBudget,
    chapter_budget,
)
from gmlib.book.presets import PROFILE_NAMES, dc_config, eval_config, get_profile, resolve_profile_name
from gmlib.dsa import DEFAULT_DSA_STRATEGY
from gmlib.eval_config import EvalConfig
from gmlib.methods.bilevel import ImplicitConfig, UnrollConfig
from gmlib.methods.dc_config import DCSettings, MatchingConfig, dc_loops
from gmlib.methods.gtn import GTNConfig
from gmlib.studies.crossarch import DC_CROSS_ARCH_NETWORKS
from gmlib.studies.grid import GRID_METHODS
from gmlib.studies.protocol import CHAPTER_12_VARIANTS

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def test_auto_follows_cuda():
    assert resolve_profile_name("auto") == ("gpu" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_profile_resolves(name):
    profile = get_profile(name)
    assert profile.name == name
    assert profile.eval_models >= 1 and profile.iterations >= 1 and profile.ipcs


def test_profiles_grow_with_budget():
    ci, cpu, gpu, paper = (get_profile(n) for n in PROFILE_NAMES)
    assert ci.eval_models <= cpu.eval_models <= gpu.eval_models <= paper.eval_models
    assert ci.iterations <= cpu.iterations <= gpu.iterations <= paper.iterations
    assert paper.iterations == 1000 and paper.eval_models == 100 and paper.eval_width == 128


def test_unknown_profile_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown profile 'laptop'.*'ci'.*'paper'"):
        get_profile("laptop")


def test_overrides_and_unknown_fields():
    assert get_profile("ci", eval_models=7).eval_models == 7
    assert get_profile("ci").eval_models == 2  # the registry itself is unchanged
    with pytest.raises(ValueError, match="unknown profile field"):
        get_profile("ci", eval_model=3)


@pytest.mark.parametrize("ipc, loops", [(1, (1, 1)), (10, (10, 50)), (20, (20, 25)), (50, (50, 10)), (5, (10, 50)), (100, (50, 10))])
def test_dc_loops(ipc, loops):
    assert dc_loops(ipc) == loops


@pytest.mark.parametrize("bad", [0, -3, 1.5])
def test_dc_loops_rejects_bad_ipc(bad):
    with pytest.raises(ValueError, match="images per class"):
        dc_loops(bad)


def test_dc_settings_match_the_reference():
    s = DCSettings()
    assert (s.iterations, s.batch_real, s.lr_img, s.momentum_img, s.lr_net) == (1000, 256, 0.1, 0.5, 0.01)


# ------------------------------------------------------------------------------------------
# From a profile to a configuration
# ------------------------------------------------------------------------------------------


def test_dc_config_reads_the_budget_and_lets_overrides_win() -> None:
    profile = get_profile("ci")
    config = dc_config(profile, 10, "mnist", iterations=3)
    assert config.iterations == 3 and config.batch_real == profile.batch_real and config.ipc == 10
    assert dict(config.network_kwargs) == {"width": profile.net_width}
    assert config.eval_models == profile.eval_models and config.eval_config == eval_config(profile, "mnist")
    assert config.eval_config.augment == "mnist"
    dsa_config = dc_config(profile, 1, "fashion-mnist", method="dsa", network="mlp")
    assert dsa_config.eval_config.augment == "dsa" and dsa_config.network_kwargs == ()
    assert dsa_config.eval_config.network == "mlp" and dsa_config.eval_config.network_kwargs == ()
    assert dc_config("ci", 1, "mnist") == dc_config(profile, 1, "mnist")  # a name or a Profile
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        dc_config("huge", 1, "mnist")


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_eval_config_takes_the_profiles_budget(name):
    profile = get_profile(name)
    config = eval_config(profile, "mnist")
    assert isinstance(config, EvalConfig) and config.network == "convnet"
    assert dict(config.network_kwargs) == {"width": profile.eval_width}
    assert config.epochs == profile.eval_epochs and config.test_size == profile.eval_test_size


@pytest.mark.parametrize("dataset, method, augment, strategy", [
    ("mnist", "dc", "mnist", DEFAULT_DSA_STRATEGY),  # DC's classic MNIST augmentation
    ("fashion-mnist", "dc", "none", DEFAULT_DSA_STRATEGY),
    ("cifar10", "dc", "none", DEFAULT_DSA_STRATEGY),
    ("svhn", "dc", "none", DEFAULT_DSA_STRATEGY),
    ("mnist", "dsa", "dsa", "color_crop_cutout_scale_rotate"),  # digits: no flip
    ("svhn", "dsa", "dsa", "color_crop_cutout_scale_rotate"),
    ("fashion-mnist", "dsa", "dsa", DEFAULT_DSA_STRATEGY),  # a mirrored shirt is still a shirt
    ("cifar10", "dsa", "dsa", DEFAULT_DSA_STRATEGY),
])
def test_eval_config_picks_the_papers_augmentation(dataset, method, augment, strategy):
    config = eval_config("ci", dataset, method)
    assert (config.augment, config.dsa_strategy) == (augment, strategy)


def test_eval_config_overrides_win():
    config = eval_config("ci", "mnist", width=8, epochs=2, test_size=None, augment="none")
    assert (dict(config.network_kwargs), config.epochs, config.test_size, config.augment) == ({"width": 8}, 2, None, "none")
    # an explicit DSA augmentation takes the dataset's strategy, unless one is given too
    assert eval_config("ci", "mnist", augment="dsa").dsa_strategy == "color_crop_cutout_scale_rotate"
    assert eval_config("ci", "mnist", augment="dsa", dsa_strategy="color").dsa_strategy == "color"
    assert eval_config("ci", "mnist", network="lenet").network_kwargs == ()  # LeNet takes no width
    with pytest.raises(ValueError, match="method"):
        eval_config("ci", "mnist", "gtn")


# ------------------------------------------------------------------------------------------
# The chapters' budgets: the values the chapters' CHAPTER_BUDGET dicts held
# ------------------------------------------------------------------------------------------

BILEVEL = {
    "ci": dict(steps=(1, 3, 6), iterations=2, width=16, batch_real=32, eval_models=1, eval_epochs=30),
    "cpu": dict(steps=(1, 2, 5, 10), iterations=30, width=16, batch_real=128, eval_models=2, eval_epochs=100),
    "gpu": dict(steps=(1, 2, 5, 10, 20), iterations=200, width=128, batch_real=256, eval_models=5, eval_epochs=None),
    "paper": dict(steps=(1, 2, 5, 10, 20), iterations=1000, width=128, batch_real=256, eval_models=15,
                  eval_epochs=None),
}
# 03, 05 and 06 start from defaults derived from the profile and take the small profiles' cuts.
WHAT_HOW_WHERE = {
    "ci": (dict(iterations=2, eval_models=2, eval_test_size=1000),
           dict(ipc10_iterations=1, ipc10_loops=(3, 50), distances=("d1", "d1+d2"), settings=("MDA",), per_class_ipc=1,
                probe_per_class=10)),
    "cpu": (dict(iterations=10, eval_models=2, eval_test_size=2000),
            dict(ipc10_iterations=1, ipc10_loops=(10, 50), distances=("d1", "d2", "d1+d2"), settings=("dc", "MDA"),
                 per_class_ipc=1, probe_per_class=None)),
    "gpu": (dict(iterations=200, eval_models=10, eval_test_size=None),
            dict(ipc10_iterations=200, ipc10_loops=None, distances=SEED002_DISTANCES, settings=SEED002_SETTINGS,
                 per_class_ipc=10, probe_per_class=None)),
    "paper": (dict(iterations=1000, eval_models=100, eval_test_size=None),
              dict(ipc10_iterations=1000, ipc10_loops=None, distances=SEED002_DISTANCES, settings=SEED002_SETTINGS,
                   per_class_ipc=10, probe_per_class=None)),
}
# 04: paper falls back to gpu.
_HESSIAN_GPU = dict(iterations=25, outer_loop=10, batch_real=256, convnet_width=128, eval_models=10, test_size=None,
                    sign_iterations=25, sign_outer=10)
HESSIAN = {
    "ci": dict(iterations=1, outer_loop=2, batch_real=16, convnet_width=16, eval_models=1, test_size=500,
               sign_iterations=3, sign_outer=4),
    "cpu": dict(iterations=10, outer_loop=10, batch_real=32, convnet_width=32, eval_models=3, test_size=2000,
                sign_iterations=10, sign_outer=10),
    "gpu": _HESSIAN_GPU,
    "paper": _HESSIAN_GPU,
}
INITIALISATION = {
    "ci": (dict(iterations=2, eval_models=1, eval_test_size=1000),
           dict(ipc10_iterations=1, ipc10_loops=(1, 1), ipc10_eval_start=False)),
    "cpu": (dict(iterations=20, eval_models=2, eval_test_size=2000),
            dict(ipc10_iterations=2, ipc10_loops=(10, 10), ipc10_eval_start=True)),
    "gpu": (dict(iterations=200, eval_models=10, eval_test_size=None),
            dict(ipc10_iterations=200, ipc10_loops=None, ipc10_eval_start=True)),
    "paper": (dict(iterations=1000, eval_models=100, eval_test_size=None),
              dict(ipc10_iterations=1000, ipc10_loops=None, ipc10_eval_start=True)),
}
_SMALL_NETWORKS = ("mlp", "convnet", "lenet")
CROSS_ARCHITECTURE = {
    "ci": (dict(iterations=2, eval_models=1, eval_test_size=1000),
           dict(networks=_SMALL_NETWORKS, variants=("lenet_original",), ipc10_iterations=1, ipc10_loops=(1, 1),
                nas_real_per_class=20, nas_real_epochs=2, nas_models=1)),
    "cpu": (dict(iterations=20, eval_models=2, eval_test_size=2000),
            dict(networks=_SMALL_NETWORKS, variants=("lenet_original",), ipc10_iterations=2, ipc10_loops=(10, 10),
                 nas_real_per_class=200, nas_real_epochs=4, nas_models=2)),
    "gpu": (dict(iterations=200, eval_models=10, eval_test_size=None),
            dict(networks=DC_CROSS_ARCH_NETWORKS, variants=("lenet_original", "alexnet_original"), ipc10_iterations=200,
                 ipc10_loops=None, nas_real_per_class=None, nas_real_epochs=20, nas_models=10)),
    "paper": (dict(iterations=1000, eval_models=100, eval_test_size=None),
              dict(networks=DC_CROSS_ARCH_NETWORKS, variants=("lenet_original", "alexnet_original"),
                   ipc10_iterations=1000, ipc10_loops=None, nas_real_per_class=None, nas_real_epochs=20,
                   nas_models=100)),
}
_TEACHING_GPU = dict(width=128, batch_real=256, gm_iterations=110, outer_loop=10, gm_inner=10, ift_iterations=500,
                     ift_inner=10, terms=10, eval_models=5, eval_epochs=None, eval_width=128, test_size=None,
                     ks=(16, 32, 64, 128), cross=("lenet", "alexnet", "vgg11", "mlp"))
GENERATIVE_TEACHING = {
    "ci": dict(width=8, batch_real=8, gm_iterations=1, outer_loop=2, gm_inner=2, ift_iterations=2, ift_inner=5,
               terms=2, eval_models=1, eval_epochs=10, eval_width=8, test_size=500, ks=(16, 64), cross=("mlp",)),
    "cpu": dict(width=32, batch_real=32, gm_iterations=6, outer_loop=5, gm_inner=5, ift_iterations=25, ift_inner=20,
                terms=5, eval_models=3, eval_epochs=100, eval_width=32, test_size=2000, ks=(16, 64),
                cross=("lenet", "mlp")),
    "gpu": _TEACHING_GPU,
    "paper": {**_TEACHING_GPU, "ift_iterations": 1080, "eval_models": 15},
}


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_problem_budget_cuts_only_the_cpu_evaluation(name):
    budget = chapter_budget("00", name)
    expected = get_profile(name).replace(eval_models=2, eval_test_size=2000) if name == "cpu" else get_profile(name)
    assert budget.profile == expected and budget.as_dict() == {}


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_gradient_matching_budget_cuts_the_ten_image_run_at_small_profiles(name):
    budget = chapter_budget("02", name)
    profile = get_profile(name)
    expected = {"ci": (1, None), "cpu": (5, (10, 10))}.get(name, (profile.iterations, None))
    assert budget.profile == profile and (budget.ipc10_iterations, budget.ipc10_loops) == expected
    config = budget.ipc10_config("mnist")
    assert config.ipc == 10 and config.iterations == expected[0] and config.eval_at == (0, expected[0])
    assert config.loops == (expected[1] or (10, 50))


def profile_fields(profile, names):
    return {name: getattr(profile, name) for name in names}


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_bilevel_budget_holds_the_chapters_values_and_configs(name):
    budget = chapter_budget("01", name)
    assert isinstance(budget, BilevelBudget) and budget.as_dict() == BILEVEL[name]
    assert budget.profile == get_profile(name)
    unroll = budget.unroll_config(3, image_init="real", init_mode="fixed")
    implicit = budget.implicit_config(3)
    assert isinstance(unroll, UnrollConfig) and isinstance(implicit, ImplicitConfig)
    for config in (unroll, implicit):
        assert (config.ipc, config.inner_steps, config.iterations, config.batch_real) == \
            (10, 3, budget.iterations, budget.batch_real)
        assert dict(config.network_kwargs) == {"width": budget.width}
    assert (unroll.image_init, unroll.init_mode) == ("real", "fixed")
    evaluation = budget.eval_config()
    assert evaluation.augment == "none" and dict(evaluation.network_kwargs) == {"width": budget.width}
    assert evaluation.epochs == budget.eval_epochs and evaluation.test_size == budget.profile.eval_test_size


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_what_how_where_budget_holds_the_chapters_values_and_configs(name):
    cuts, values = WHAT_HOW_WHERE[name]
    budget = chapter_budget("03", name)
    assert isinstance(budget, WhatHowWhereBudget) and budget.as_dict() == values
    assert profile_fields(budget.profile, cuts) == cuts and budget.profile.name == name
    config = budget.ipc10_config("mnist")
    assert isinstance(config, MatchingConfig) and config.ipc == 10 and config.iterations == budget.ipc10_iterations
    assert config.loops == (budget.ipc10_loops or dc_loops(10)) and config.eval_at == (budget.ipc10_iterations,)
    assert config.eval_models == budget.profile.eval_models
    assert config.eval_config == eval_config(budget.profile, "mnist")
    # the chapter's iterations parameter replaces the 1-image runs' iterations only
    changed = chapter_budget("03", name, iterations=3)
    assert changed.profile.iterations == 3 and changed.ipc10_iterations == budget.ipc10_iterations


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_hessian_budget_holds_the_chapters_values_and_configs(name):
    budget = chapter_budget("04", name)
    assert isinstance(budget, HessianBudget) and budget.as_dict() == HESSIAN[name]
    assert list(budget.as_dict()) == list(HESSIAN["ci"])  # printed in this order
    for network in ("convnet", "mlp", "lenet"):
        config = budget.matching_config(network, distance="mse", hessian_weight=1.0, hessian_loss="real")
        assert isinstance(config, MatchingConfig) and config.network == network and config.engine == "loop"
        assert (config.ipc, config.iterations, config.loops, config.batch_real) == \
            (1, budget.iterations, (budget.outer_loop, 0), budget.batch_real)
        assert (config.distance, config.hessian_weight, config.hessian_loss) == ("mse", 1.0, "real")
        assert dict(config.network_kwargs) == budget.network_kwargs(network)
    assert budget.network_kwargs("convnet") == {"width": budget.convnet_width} and budget.network_kwargs("mlp") == {}


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_initialisation_budget_holds_the_chapters_values_and_configs(name):
    cuts, values = INITIALISATION[name]
    budget = chapter_budget("05", name)
    assert isinstance(budget, InitialisationBudget) and budget.as_dict() == values
    assert profile_fields(budget.profile, cuts) == cuts
    config = budget.ipc10_config("fashion-mnist")
    n = budget.ipc10_iterations
    assert config.ipc == 10 and config.iterations == n and config.loops == (budget.ipc10_loops or dc_loops(10))
    assert config.eval_at == ((0, n) if budget.ipc10_eval_start else (n,))
    assert config.eval_config.augment == "none"  # DC evaluates only MNIST with augmentation
    assert chapter_budget("05", name, iterations=4).profile.iterations == 4


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_cross_architecture_budget_holds_the_chapters_values_and_configs(name):
    cuts, values = CROSS_ARCHITECTURE[name]
    budget = chapter_budget("06", name)
    assert isinstance(budget, CrossArchitectureBudget) and budget.as_dict() == values
    assert profile_fields(budget.profile, cuts) == cuts
    config = budget.ipc10_config("mnist")
    assert config.ipc == 10 and config.iterations == budget.ipc10_iterations and config.eval_at == ()
    assert config.loops == (budget.ipc10_loops or dc_loops(10))
    assert config == dc_config(budget.profile, 1, "mnist").replace(ipc=10, iterations=budget.ipc10_iterations,
                                                                   **dict(zip(("outer_loop", "inner_loop"),
                                                                              budget.ipc10_loops or (None, None))))
    changed = chapter_budget("06", name, iterations=3, networks=["convnet", "mlp"])
    assert changed.profile.iterations == 3 and changed.networks == ("convnet", "mlp")


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_generative_teaching_budget_holds_the_chapters_values_and_configs(name):
    budget = chapter_budget("10", name)
    assert isinstance(budget, GenerativeTeachingBudget) and budget.as_dict() == GENERATIVE_TEACHING[name]
    gm, ift = budget.gm_config(64, 10), budget.ift_config(64, 10)
    assert isinstance(gm, GTNConfig) and isinstance(ift, GTNConfig)
    assert (gm.objective, gm.k, gm.ipc, gm.iterations, gm.outer_loop, gm.inner_steps, gm.batch_real) == \
        ("gm", 64, 10, budget.gm_iterations, budget.outer_loop, budget.gm_inner, budget.batch_real)
    assert ift == gm.replace(objective="ift", iterations=budget.ift_iterations, inner_steps=budget.ift_inner,
                             neumann_terms=budget.terms)
    dd = budget.dd_config(10)
    assert isinstance(dd, MatchingConfig) and dd.loops == (budget.outer_loop, budget.gm_inner)
    assert dict(dd.network_kwargs) == dict(gm.network_kwargs) == {"width": budget.width}
    evaluation = budget.eval_config()
    assert evaluation.augment == "mnist" and dict(evaluation.network_kwargs) == {"width": budget.eval_width}
    assert (evaluation.epochs, evaluation.test_size) == (budget.eval_epochs, budget.test_size)
    assert budget.eval_config("lenet").network_kwargs == () and budget.eval_config("lenet").network == "lenet"
    changed = chapter_budget("10", name, gm_iterations=2, ift_iterations=3)
    assert (changed.gm_iterations, changed.ift_iterations) == (2, 3)


def test_chapter_budget_names_the_chapters_and_refuses_bad_values():
    assert sorted(CHAPTER_BUDGETS) == ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"]
    with pytest.raises(ValueError, match="unknown chapter '13'"):
        chapter_budget("13", "ci")
    with pytest.raises(ValueError, match="chapter 01's budget takes no parameter 'iterations'; allowed: none"):
        chapter_budget("01", "ci", iterations=3)
    with pytest.raises(ValueError, match="allowed: 'gm_iterations', 'ift_iterations'"):
        chapter_budget("10", "ci", iterations=3)
    budget = chapter_budget("01", "ci")
    with pytest.raises(ValueError, match="steps must be a non-empty tuple"):
        budget.replace(steps=())
    with pytest.raises(ValueError, match="unknown field"):
        budget.replace(step=(1,))
    with pytest.raises(ValueError, match="ipc10_loops"):
        chapter_budget("05", "ci").replace(ipc10_loops=(1,))
    with pytest.raises(ValueError, match="iterations must be an integer >= 0"):
        chapter_budget("03", "ci", iterations=-1)


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_comparison_budget_gives_an_equal_wall_clock_grid(name):
    budget = chapter_budget("11", name)
    assert isinstance(budget, ComparisonBudget) and budget.methods == GRID_METHODS
    grid = budget.grid_budget()
    assert (grid.profile, grid.seconds, grid.iterations, grid.networks, grid.models, grid.expert_changes) == \
        (name, budget.seconds, None, budget.networks, budget.models, budget.expert_changes)
    assert grid.mode == "equal wall-clock"
    changed = chapter_budget("11", name, seconds=3, methods=["dc", "dm"])
    assert (changed.seconds, changed.methods) == (3.0, ("dc", "dm"))
    with pytest.raises(ValueError, match="seconds must be a positive number of seconds, got 0"):
        budget.replace(seconds=0)
    with pytest.raises(ValueError, match="ipcs must be a non-empty tuple"):
        budget.replace(ipcs=())


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_reproducibility_budget_names_study_variants_and_the_reference_protocol(name):
    budget = chapter_budget("12", name)
    assert isinstance(budget, ReproducibilityBudget) and budget.variants[0] == "reference"
    assert set(budget.variants) <= {"reference", *CHAPTER_12_VARIANTS}
    assert budget.reference_config() == eval_config(budget.profile, "mnist", "dc")
    if name in ("gpu", "paper"):
        assert budget.variants == ("reference",) + CHAPTER_12_VARIANTS
    with pytest.raises(ValueError, match="each of variants 'fast'"):
        budget.replace(variants=("reference", "fast"))


def test_no_chapter_defines_a_budget_of_its_own():
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md")):
        text = path.read_text()
        assert "CHAPTER_BUDGET" not in text and ".from_profile(" not in text, path.name


def test_the_distribution_matching_budget_builds_dm_and_dc_configs():
    from gmlib.book.presets import dm_config, get_profile

    budget = chapter_budget("08", "cpu", iterations=7)
    assert budget.dm_config("mnist") == dm_config(budget.profile, 1, "mnist", iterations=7)
    assert budget.dm_config("mnist", 10).iterations == budget.ipc10_iterations
    assert budget.dc_config("fashion-mnist").iterations == budget.dc_iterations
    assert budget.profile == get_profile("cpu").replace(eval_models=2, eval_test_size=2000)
    assert budget.dm_config("mnist").eval_models == 2
    paper = chapter_budget("08", "paper")
    assert paper.profile == get_profile("paper")
    assert paper.dm_iterations == get_profile("paper").dm_iterations == 20_000
    assert paper.dm_config("mnist").eval_config.augment == "dsa"
    with pytest.raises(ValueError, match="dm_iterations"):
        budget.replace(dm_iterations=0)


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_the_differentiable_augmentation_budget_builds_dsa_dc_and_family_configs(name):
    from gmlib.book.budgets import DifferentiableAugmentationBudget

    budget = chapter_budget("07", name)
    assert isinstance(budget, DifferentiableAugmentationBudget) and budget.profile.name == name
    n = budget.profile.iterations
    siamese = budget.dsa_config("mnist")
    assert (siamese.method, siamese.ipc, siamese.iterations, siamese.eval_at, siamese.dsa_siamese) == \
        ("dsa", 1, n, (n,), True)
    assert siamese == dc_config(budget.profile, 1, "mnist", method="dsa", eval_at=(n,))
    assert siamese.eval_config.augment == "dsa" and siamese.eval_config.dsa_strategy == "color_crop_cutout_scale_rotate"
    assert budget.dsa_config("mnist", dsa_siamese=False) == siamese.replace(dsa_siamese=False)
    dc = budget.dc_config("mnist")
    assert (dc.method, dc.iterations, dc.eval_at) == ("dc", n, ())
    crop = budget.family_config("fashion-mnist", "crop")
    assert (crop.dsa_strategy, crop.iterations, crop.eval_at) == ("crop", budget.family_iterations,
                                                                  (budget.family_iterations,))
    assert crop.eval_config.dsa_strategy == "color_crop_cutout_flip_scale_rotate"  # the same for every family
    ipc10 = budget.ipc10_config("mnist")
    assert (ipc10.method, ipc10.ipc, ipc10.iterations, ipc10.init) == ("dsa", 10, budget.ipc10_iterations, "real")
    assert ipc10.loops == (budget.ipc10_loops or dc_loops(10))
    for augment in ("none", "dsa"):
        evaluation = budget.eval_config("mnist", augment)
        assert evaluation.augment == augment and evaluation.test_size == budget.profile.eval_test_size
    changed = chapter_budget("07", name, iterations=3)
    assert changed.profile.iterations == changed.family_iterations == 3
    assert changed.ipc10_iterations == budget.ipc10_iterations
    with pytest.raises(ValueError, match="family_iterations"):
        budget.replace(family_iterations=0)


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_the_trajectory_matching_budget_builds_expert_mtt_and_dc_configs(name):
    from gmlib.book.budgets import TrajectoryMatchingBudget
    from gmlib.book.presets import expert_config, get_profile, mtt_config

    budget = chapter_budget("09", name)
    assert isinstance(budget, TrajectoryMatchingBudget) and budget.profile.name == name
    experts = budget.expert_config("fashion-mnist")
    assert experts == expert_config(budget.profile, "fashion-mnist", **dict(budget.expert_changes))
    mtt = budget.mtt_config("fashion-mnist")
    n = budget.mtt_iterations
    assert (mtt.ipc, mtt.iterations, mtt.eval_at, mtt.init) == (1, n, (n,), "real")
    assert mtt.eval_config.augment == "dsa" and dict(mtt.network_kwargs) == dict(experts.network_kwargs)
    assert mtt.max_start_epoch + mtt.expert_epochs <= len(experts.kept_epochs)  # the buffer serves the config
    assert budget.mtt_config("mnist", init="noise").init == "noise"
    dc = budget.dc_config("mnist", init="real")
    assert (dc.method, dc.iterations, dc.eval_at, dc.init) == ("dc", budget.dc_iterations, (budget.dc_iterations,),
                                                               "real")
    assert dict(dc.network_kwargs) == dict(mtt.network_kwargs)  # both methods distil with the same ConvNet
    assert chapter_budget("09", name, iterations=3).mtt_config("mnist").iterations == 3
    if name in ("gpu", "paper"):
        assert experts == expert_config(name, "fashion-mnist")
        assert mtt == mtt_config(name, 1, "fashion-mnist", eval_at=(n,)) and n == get_profile(name).mtt_iterations
    with pytest.raises(ValueError, match="memory_steps"):
        budget.replace(memory_steps=())
    with pytest.raises(ValueError, match="mtt_changes"):
        budget.replace(mtt_changes={"syn_steps": 3})


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_the_cpu_mtt_preset_is_the_validation_search_choice(dataset):
    """The cpu profile's lr_img and expert_epochs are the cell of the stored search
    (experiments/mtt_search.py) with the best mean accuracy on the validation split."""
    from gmlib.book.presets import mtt_config
    from gmlib.book.stored_runs import load_stored_json

    search = load_stored_json(f"mtt_search_{dataset}", "results.json")
    assert search["dataset"] == dataset and search["profile"] == "cpu" and len(search["cells"]) == 9
    best = max(search["cells"], key=lambda cell: cell["validation_mean"])
    config = mtt_config("cpu", 1, dataset)
    assert (config.lr_img, config.expert_epochs) == (best["lr_img"], best["expert_epochs"])
    searched = search["cells"][0]["config"]  # every other setting of the search is the preset's
    for name in ("syn_steps", "max_start_epoch", "lr_lr", "lr_teacher", "init", "network_kwargs"):
        assert searched[name] == config.as_dict()[name], name
