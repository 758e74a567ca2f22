import pytest
import torch

from gmlib.book.presets import PROFILE_NAMES, DCSettings, dc_loops, get_profile, resolve_profile_name


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
