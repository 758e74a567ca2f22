"""Shared fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on 2 busy cores two OpenMP threads that wait
    for each other made loop tests 5-18x slower; the setting is restored afterwards.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset():
    """The standard fake dataset (tests/fakes.py), built once per test module."""
    from fakes import fake_dataset

    return fake_dataset()
