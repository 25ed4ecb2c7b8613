"""Our L-BFGS: torch.optim.LBFGS's iterates, without a single host-device synchronisation."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from nstvideo.optim.lbfgs import LBFGS

SYNCING = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "nonzero"}


class NoHostSync(TorchFunctionMode):
    """Fails on any tensor-to-Python conversion: on a GPU each one waits for the queue."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in SYNCING:
            raise AssertionError(f"host-device sync through {func.__name__}")
        return func(*args, **(kwargs or {}))


def smooth(n: int = 40):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(n, n, generator=generator, dtype=torch.float64)
    a = q @ q.T / n + 0.1 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=generator, dtype=torch.float64)
    return lambda x: 0.5 * x @ a @ x - b @ x + 0.1 * (x ** 4).sum()


def linear(n: int = 40):
    c = torch.linspace(-1, 1, n, dtype=torch.float64)
    return lambda x: (c * x).sum()  # y = 0 at every step: every curvature pair is rejected


def run_both(loss, history: int, iterations: int, lr: float = 0.5, method: str = "auto"):
    n = 40
    theirs = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    ours = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.LBFGS([theirs], lr=lr, max_iter=1, history_size=history,
                                  tolerance_grad=-1, tolerance_change=-1)
    optimizer = LBFGS(ours, lr=lr, history=history, method=method)

    def closure():
        reference.zero_grad()
        value = loss(theirs)
        value.backward()
        return value

    for _ in range(iterations):
        reference.step(closure)
        ours.grad = None
        loss(ours).backward()
        optimizer.step(ours.grad)
    return theirs.detach(), ours.detach()


METHODS = ["two-loop", "compact"]  # the CPU's and the GPU's


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("history", [3, 100])
def test_same_iterates_as_torch_lbfgs(history, method):
    """History 3 over 15 iterations exercises the ring buffer's wrap-around."""
    theirs, ours = run_both(smooth(), history, 15, method=method)
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_rejected_curvature_pairs_act_as_skipped(method):
    theirs, ours = run_both(linear(), 4, 8, method=method)
    assert ours.abs().max() > 1  # it moved
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("method", METHODS)
def test_a_step_never_waits_for_the_device(method):
    canvas = torch.rand(1, 3, 8, 8, requires_grad=True)
    target = torch.rand(1, 3, 8, 8)
    optimizer = LBFGS(canvas, history=3, method=method)
    for _ in range(6):
        canvas.grad = None
        (((canvas - target) ** 2).sum() + (canvas ** 4).sum()).backward()
        with NoHostSync():
            optimizer.step(canvas.grad)


def test_the_sync_detector_catches_torch_lbfgs():
    """The detector is not vacuous: torch's own L-BFGS converts device scalars every step."""
    canvas = torch.rand(10, requires_grad=True)
    reference = torch.optim.LBFGS([canvas], max_iter=1)

    def closure():
        reference.zero_grad()
        value = (canvas ** 2).sum()
        value.backward()
        return value

    with pytest.raises(AssertionError, match="host-device sync"):
        with NoHostSync():
            for _ in range(3):
                reference.step(closure)
