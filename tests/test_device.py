"""One device rule for train.device and eval --device."""

from __future__ import annotations

import pytest
import torch

from froster_edge.device import resolve_device
from froster_edge.errors import ConfigError, MissingCapability


def test_cpu_auto_and_bad_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    with pytest.raises(ConfigError, match="'gpu' is not a torch device"):
        resolve_device("gpu", what="train.device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the missing-GPU error cannot happen")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_missing_capability_naming_the_setting(name):
    with pytest.raises(MissingCapability, match=f"train.device is '{name}'"):
        resolve_device(name, what="train.device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_without_an_index_is_this_process_gpu():
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
