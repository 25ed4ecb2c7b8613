"""Train a feed-forward style network: tensors in, a trained network out; no files, no terminal.

Each step draws ``batch_size`` random square crops (``train_size``) from the images, paints them
with the network, and takes one Adam step on

    content_weight·content(crop) + style_weight·style + tv_weight·tv

with the same size-invariant terms as the optimization (``network.losses``) on the same frozen
VGG; the style targets are the styles' blended Grams at the crop size. Every random draw comes
from one seeded generator whose state is part of ``state_dict``, so a run resumed from a
checkpoint takes exactly the steps an uninterrupted one takes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..config import LossConfig, TrainConfig
from ..network.features import VGGFeatures, canonical_layers
from ..network.losses import StyleLoss, content_loss, energy, gram, tv_loss
from ..network.objective import normalised, precision_context, to_network_layout
from ..network.transformer import TransformerNet


@dataclass(frozen=True)
class TrainProgress:
    """One step done: its losses (weighted terms and ``total``, floats) and the time so far."""

    step: int
    steps: int
    losses: Mapping[str, float]
    elapsed: float


TrainCallback = Callable[[TrainProgress], None]


def random_crop(image: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """The image with its short side scaled to ``size`` (area when shrinking, bilinear when
    enlarging), then a ``size`` x ``size`` crop at a random position."""
    height, width = image.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        mode = "area" if scale < 1 else "bilinear"
        kwargs = {} if mode == "area" else {"align_corners": False}
        image = F.interpolate(image, size=(new_h, new_w), mode=mode, **kwargs).clamp(0, 1)
    top = int(torch.randint(0, new_h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, new_w - size + 1, (1,), generator=generator))
    return image[..., top:top + size, left:left + size]


class Trainer:
    """One network's training. ``images`` is any sequence of (1, 3, H, W) [0, 1] tensors (a list,
    or a lazy reader of files); ``style_grams`` the blended style targets per layer
    (``objective.blended_grams``)."""

    def __init__(self, net: TransformerNet, vgg: VGGFeatures, style_grams: Mapping[str, torch.Tensor],
                 images: Sequence[torch.Tensor], loss: LossConfig, train: TrainConfig, *,
                 seed: int = 0, precision: str = "fp32"):
        if len(images) == 0:
            raise ValueError("training needs at least one image")
        self.net, self.vgg, self.images = net, vgg, images
        self.loss, self.train, self.precision = loss, train, precision
        self.device = next(vgg.parameters()).device
        arch = vgg.arch
        self.content_layers = canonical_layers(loss.content_layers, arch)
        self.style_layers = canonical_layers(loss.style_layers, arch)
        self.layer_weights = normalised(loss.layer_weights, len(self.style_layers), "--layer-weights")
        self.style_losses = {name: StyleLoss(style_grams[name]).to(self.device)
                             for name in self.style_layers}
        self.net.train().requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=train.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.step = 0
        self.history: list[dict[str, float]] = []
        # the state as of the last finished step; False while a step changes it
        self.consistent = True

    def batch(self) -> torch.Tensor:
        picks = torch.randint(0, len(self.images), (self.train.batch_size,), generator=self.generator)
        crops = [random_crop(self.images[int(i)], self.train.train_size, self.generator) for i in picks]
        return torch.cat(crops).to(self.device)

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        with precision_context(self.precision, self.device):
            return self.vgg(to_network_layout(image))

    def objective(self, crops: torch.Tensor, painted: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted terms and their ``total`` for painted crops (B, 3, S, S)."""
        with torch.no_grad():
            targets = {name: f.float() for name, f in self.features(crops).items()
                       if name in self.content_layers}
        features = self.features(painted)
        terms: dict[str, torch.Tensor] = {}
        if self.loss.content_weight > 0:
            content = sum(content_loss(features[name], targets[name], energy(targets[name]))
                          for name in self.content_layers)
            terms["content"] = self.loss.content_weight * content / len(self.content_layers)
        style = sum(weight * self.style_losses[name](features[name])
                    for name, weight in zip(self.style_layers, self.layer_weights))
        terms["style"] = self.loss.style_weight * style
        if self.loss.tv_weight:
            terms["tv"] = self.loss.tv_weight * tv_loss(painted)
        terms["total"] = sum(terms.values())
        return terms

    def train_step(self) -> dict[str, float]:
        rng_before = self.generator.get_state()
        try:
            crops = self.batch()
            self.optimizer.zero_grad(set_to_none=True)
            terms = self.objective(crops, self.net(crops))
            terms["total"].backward()
        except BaseException:
            self.generator.set_state(rng_before)  # the step never happened
            raise
        self.consistent = False
        self.optimizer.step()
        self.step += 1
        losses = {name: float(value.detach()) for name, value in terms.items()}
        self.history.append(losses)
        self.consistent = True
        return losses

    def run(self, steps: int, callbacks: Sequence[TrainCallback] = ()) -> None:
        """Train up to ``steps`` steps in all (a resumed trainer goes on from ``self.step``)."""
        started = time.perf_counter()
        while self.step < steps:
            losses = self.train_step()
            event = TrainProgress(self.step, steps, losses, time.perf_counter() - started)
            for callback in callbacks:
                callback(event)

    @torch.no_grad()
    def paint(self, image: torch.Tensor) -> torch.Tensor:
        """The network's output for one image, in eval mode, back in training mode after."""
        self.net.eval()
        try:
            return self.net(image.to(self.device)).clamp(0, 1).cpu()
        finally:
            self.net.train()

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as of the last finished step (tensors and plain data:
        loadable with ``torch.load(weights_only=True)``)."""
        if not self.consistent:
            raise RuntimeError("the training state is half way through a step")
        return {"step": self.step, "net": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "history": list(self.history)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        self.history = [dict(h) for h in state["history"]]
