"""L-BFGS and the [0, 1] clamp: its memory must hold the step actually taken."""

from __future__ import annotations

import pytest
import torch

from nstvideo import images
from nstvideo.config import OptimConfig, StylizeConfig
from nstvideo.optim.engine import autograd_evaluator, optimize
from nstvideo.optim.lbfgs import LBFGS
from nstvideo.still.stylize import build_network, stylize_image


def test_lbfgs_memory_holds_the_clamped_step(monkeypatch):
    """A loss pulling pixels to 1.5: every step is clamped, and L-BFGS must know by how much."""
    remembered = []
    original = LBFGS._store

    def spy(self, s, y):
        remembered.append(s.clone())
        return original(self, s, y)

    monkeypatch.setattr(LBFGS, "_store", spy)
    target = torch.full((1, 3, 4, 4), 1.5)
    evaluate = autograd_evaluator(lambda x: {"total": ((x - target) ** 2).mean()})
    start = torch.linspace(0, 1, 48).reshape(1, 3, 4, 4)
    canvases = [start]
    optimize(start, evaluate, OptimConfig(iterations=3),
             callbacks=[lambda event: canvases.append(event.canvas.clone())])
    assert len(remembered) == 2  # pairs from iterations 2 and 3
    assert (canvases[1] == 1).any()  # the clamp did bite
    for i, s in enumerate(remembered):
        torch.testing.assert_close(s, (canvases[i + 1] - canvases[i]).reshape(-1))


@pytest.mark.slow
def test_lbfgs_default_settings_do_not_diverge(content_path, style_path):
    config = StylizeConfig().replace(model={"weights": "random", "device": "cpu"},
                                     schedule={"size": 64}, optim={"iterations": 48})
    network, _ = build_network(config)
    result = stylize_image(images.load(content_path), [images.load(style_path)], config,
                           network=network)
    totals = [h["total"] for h in result.scales[-1].result.history]
    worst_rise = max(later / min(totals[:i + 1]) for i, later in enumerate(totals))
    assert worst_rise < 1.5, f"loss rose {worst_rise:.1f}x above its best so far"
