"""gmlib must import and work without torchvision (absent, or broken as on CPU torch + CUDA torchvision)."""

import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import gmlib

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(m.name for m in pkgutil.walk_packages(gmlib.__path__, "gmlib.") if not m.name.endswith("__main__"))


def run_python(code: str, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env_path = [str(ROOT)] + ([str(extra_path)] if extra_path else [])
    prelude = f"import sys; sys.path[:0] = {env_path!r}\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_every_module_is_listed():
    assert {"gmlib.data", "gmlib.networks", "gmlib.evaluate", "gmlib.book.presets", "gmlib.methods.dc",
            "gmlib.run.loop", "gmlib.studies.crossarch"} <= set(MODULES)


def test_importing_gmlib_never_imports_torchvision():
    result = run_python(f"""
        import importlib
        for name in {MODULES!r}:
            importlib.import_module(name)
        assert 'torchvision' not in sys.modules, 'torchvision was imported'
        print('ok')
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_gmlib_works_with_torchvision_absent():
    result = run_python(f"""
        sys.modules['torchvision'] = None  # makes 'import torchvision' raise ImportError
        import importlib
        for name in {MODULES!r}:
            importlib.import_module(name)
        from gmlib.networks import get_network
        import torch
        print(get_network('convnet', 1, 10, (28, 28), seed=0)(torch.zeros(2, 1, 28, 28)).shape)
    """)
    assert result.returncode == 0, result.stderr
    assert "torch.Size([2, 10])" in result.stdout


def test_gmlib_works_with_torchvision_broken(tmp_path):
    broken = tmp_path / "torchvision"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    result = run_python(f"""
        import importlib
        for name in {MODULES!r}:
            importlib.import_module(name)
        print('ok')
    """, extra_path=tmp_path)
    assert result.returncode == 0, result.stderr
