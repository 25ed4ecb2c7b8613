"""--device auto: CUDA, then Apple's MPS, then the CPU; what MPS lacks is said in one line."""

from __future__ import annotations

import warnings

import pytest
import torch

from nstvideo import runtime
from nstvideo.errors import DeviceError


@pytest.fixture
def machine(monkeypatch):
    def make(cuda: bool, mps: bool):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored afterwards
    return make


@pytest.mark.parametrize("cuda,mps,picked", [(True, True, "cuda"), (False, True, "mps"),
                                             (False, False, "cpu")])
def test_auto_picks_cuda_then_mps_then_cpu(machine, cuda, mps, picked):
    machine(cuda, mps)
    assert runtime.resolve_device("auto").type == picked


def test_mps_asked_for_without_it_is_one_line(machine):
    machine(False, False)
    with pytest.raises(DeviceError, match="no usable MPS"):
        runtime.resolve_device("mps")
    machine(False, True)
    assert runtime.resolve_device("mps") == torch.device("mps")
    assert runtime.resolve_precision("auto", torch.device("mps")) == "fp32"


def test_a_cpu_fallback_on_mps_is_said_once_in_our_words(machine, monkeypatch, capsys):
    machine(False, True)
    monkeypatch.setattr(runtime, "_fallback_said", False)
    runtime.resolve_device("auto")
    for op in ("aten::_linalg_solve_ex.result", "aten::grid_sampler_2d_backward"):
        warnings.warn_explicit(f"The operator '{op}' is not currently supported on the MPS backend "
                               "and will fall back to run on the CPU. This may have performance "
                               "implications.", UserWarning, "x.py", 1)
    assert capsys.readouterr().err.splitlines() == [
        "nstvideo: note: mps lacks aten::_linalg_solve_ex.result; it (and any other operation mps "
        "lacks) runs on the CPU, which is slower"]
