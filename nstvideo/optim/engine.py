"""Optimize one unit: a canvas, a loss, a number of iterations -> the canvas and its loss history.

No files, processes or terminals here: progress goes out as ``Progress`` events to callbacks, and
loss values stay on the device as 0-d tensors until someone asks for a number, so the loop itself
does not wait on the GPU except at the relative-tolerance checks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import torch

from ..config import OptimConfig
from .lbfgs import LBFGS

Evaluate = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class Stage:
    """Where a unit sits in the whole job, for progress displays."""

    label: str = ""
    index: int = 0
    count: int = 1


@dataclass(frozen=True)
class Progress:
    """One iteration done. ``losses`` are 0-d tensors (call float() on the ones you show);
    ``canvas`` is the live canvas: clone it to keep it."""

    stage: Stage
    iteration: int
    iterations: int
    losses: Mapping[str, torch.Tensor]
    canvas: torch.Tensor
    elapsed: float


Callback = Callable[[Progress], None]


@dataclass
class OptimResult:
    canvas: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    iterations_run: int = 0
    stopped_early: bool = False
    seconds: float = 0.0

    def final_losses(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def autograd_evaluator(objective: Callable[[torch.Tensor], Mapping[str, torch.Tensor]]) -> Evaluate:
    """Turn a loss function into an evaluator that leaves d(total)/d(canvas) in canvas.grad."""

    def evaluate(canvas: torch.Tensor) -> Mapping[str, torch.Tensor]:
        canvas.grad = None
        terms = objective(canvas)
        terms["total"].backward()
        return {name: value.detach() for name, value in terms.items()}

    return evaluate


def make_optimizer(canvas: torch.Tensor, config: OptimConfig, iterations: int):
    if config.optimizer == "adam":
        return torch.optim.Adam([canvas], lr=config.step_size())
    # n iterations make at most n - 1 curvature pairs: no need to hold more
    return LBFGS(canvas, lr=config.step_size(), history=max(1, min(config.lbfgs_history,
                                                                    iterations - 1)))


def converged(history: Sequence[torch.Tensor], every: int, tolerance: float) -> bool:
    """Relative change of the total loss over the last ``every`` iterations below tolerance."""
    if tolerance <= 0 or every <= 0 or len(history) <= every or len(history) % every:
        return False
    before, now = float(history[-every - 1]), float(history[-1])
    return abs(before - now) <= tolerance * max(abs(before), 1e-12)


def optimize(canvas: torch.Tensor, evaluate: Evaluate, config: OptimConfig, *,
             iterations: Optional[int] = None, callbacks: Sequence[Callback] = (),
             stage: Stage = Stage()) -> OptimResult:
    """Minimise the evaluated loss over the canvas pixels, kept in [0, 1].

    ``evaluate(canvas)`` returns the loss terms (with ``total``) and leaves the gradient in
    ``canvas.grad``; ``autograd_evaluator`` builds one from a plain loss function.
    """
    iterations = config.iterations if iterations is None else iterations
    canvas = canvas.detach().clone().clamp_(0, 1).requires_grad_(True)
    optimizer = make_optimizer(canvas, config, iterations)
    totals: list[torch.Tensor] = []
    recorded: list[Mapping[str, torch.Tensor]] = []
    start = time.perf_counter()
    stopped_early = False
    for iteration in range(1, iterations + 1):
        terms = evaluate(canvas)
        if isinstance(optimizer, LBFGS):
            optimizer.step(canvas.grad)  # its next curvature pair uses the clamped step below
        else:
            optimizer.step()
        with torch.no_grad():
            canvas.clamp_(0, 1)
        totals.append(terms["total"])
        recorded.append(terms)
        event = Progress(stage, iteration, iterations, terms, canvas.detach(),
                         time.perf_counter() - start)
        for callback in callbacks:
            callback(event)
        if converged(totals, config.tolerance_every, config.tolerance):
            stopped_early = True
            break
    history = [{name: float(value) for name, value in terms.items()} for terms in recorded]
    return OptimResult(canvas.detach(), history, len(recorded), stopped_early,
                       time.perf_counter() - start)
