"""Peak-memory tracking: a big allocation inside the block shows up; time and kind are filled."""

import pytest
import torch

from gmlib.memory import MEMORY_KINDS, track_peak_memory


def test_a_big_allocation_raises_the_cpu_peak():
    with track_peak_memory("cpu") as small:
        torch.ones(1000).sum()
    with track_peak_memory("cpu") as big:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB of float32, touched so it is resident
        x.add_(1.0)
        del x
    assert small.kind == big.kind == "cpu resident" and big.kind in MEMORY_KINDS
    assert big.seconds >= 0 and small.seconds >= 0
    assert big.peak_mib >= big.start_mib
    if not big.note:  # the high-water mark could be reset: the block's own growth is visible
        assert big.added_mib > 48
        assert big.added_mib > small.added_mib + 48
    else:  # lifetime peak: at least as large as the allocation
        assert big.peak_mib > 64


def test_fields_are_filled_even_when_the_block_raises():
    with pytest.raises(RuntimeError, match="boom"):
        with track_peak_memory("cpu") as report:
            raise RuntimeError("boom")
    assert report.peak_mib > 0 and report.seconds >= 0 and "MiB cpu resident" in str(report)


def test_unknown_device_type_is_refused():
    with pytest.raises(ValueError, match="supports devices 'cpu' and 'cuda'"):
        with track_peak_memory(torch.device("meta")):
            pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak_counts_allocated_tensors():
    with track_peak_memory("cuda") as report:
        x = torch.ones(32 * 2**20 // 4, device="cuda")
        del x
    assert report.kind == "cuda allocated" and report.added_mib >= 31
