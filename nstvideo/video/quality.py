"""How evenly a stylized video is painted (DESIGN.md section 7): the style distance of the regions
that entered the frame against those that were there from the start, the detail late frames keep,
and flicker under a known camera motion.

Pure functions on tensors and arrays. The style distance is measured by a probe network of its own
(a VGG19 with a He initialisation seeded apart from ``--weights random``'s, or any trained network
passed in), so a video is not judged by the network that painted it.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..network.features import VGGFeatures
from ..network.losses import energy, gram

PROBE_SEED = 1234  # not features.RANDOM_WEIGHTS_SEED: the probe is not the painter
PROBE_LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def probe_network(arch: str = "vgg19", state_dict: Optional[Mapping[str, torch.Tensor]] = None,
                  layers: Sequence[str] = PROBE_LAYERS) -> VGGFeatures:
    network = VGGFeatures(arch, list(layers), state_dict=state_dict)
    if state_dict is None:
        network.init_random(PROBE_SEED)
    return network.eval()


@torch.no_grad()
def probe_grams(network: VGGFeatures, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gram matrices of a (1, 3, H, W) image in [0, 1] at the probe's layers."""
    return {name: gram(f.float()) for name, f in network(image).items()}


@torch.no_grad()
def style_distance(network: VGGFeatures, image: torch.Tensor,
                   style_grams: Mapping[str, torch.Tensor]) -> float:
    """Mean over the probe's layers of mean((G − Gs)²) / mean(Gs²): 0 is the style's statistics."""
    grams = probe_grams(network, image)
    return float(np.mean([float((grams[k] - g).pow(2).mean() / energy(g)) for k, g in style_grams.items()]))


def _masked(features: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(C, N): the features at the positions at least half inside the (1, 1, H, W) region, at the
    layer's resolution."""
    share = F.adaptive_avg_pool2d(region.float(), features.shape[-2:]).flatten()
    return features[0].flatten(1)[:, share >= 0.5].float()


@torch.no_grad()
def region_content(network: VGGFeatures, frame: torch.Tensor, region: torch.Tensor,
                   content: torch.Tensor) -> float:
    """How far a region of a (1, 3, H, W) frame has moved from the input frame ``content``: the
    probe's features at its deepest layer, of the whole frames, read at the (1, 1, H, W) region's
    positions: mean((F − Fc)²) / mean(Fc²). A fill that copies painted texture from beside the
    region can match the style while it loses what the region shows (a mirrored fill lost the eye
    an occluder uncovered); this figure, against a fresh frame's, says so."""
    painted, original = network(frame), network(content)
    deepest = list(painted)[-1]
    mine, theirs = _masked(painted[deepest], region), _masked(original[deepest], region)
    return float((mine - theirs).pow(2).mean() / theirs.pow(2).mean().clamp_min(1e-12))


def region_detail(frame: np.ndarray, region: np.ndarray) -> float:
    """Detail of a region of an (H, W, 3) [0, 1] frame in its poorer direction: the smaller of the
    mean squared horizontal and vertical Sobel derivatives of the luminance over the (H, W)
    boolean region (its one-pixel frame border left out). A fill drawn out from the pixels beside
    a hole, frame after frame, is a band of streaks along one direction, with next to no detail
    across them; painted strokes, and the content, have detail both ways. The style Gram of such
    a band matched the style's better than a fresh frame's paint did (0.23 of it, for the pale,
    streaked band at a pan's right edge)."""
    grey = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    inside = region.copy()
    inside[[0, -1], :] = False
    inside[:, [0, -1]] = False
    return min(float(np.square(cv2.Sobel(grey, cv2.CV_32F, dx, 1 - dx, ksize=3))[inside].mean())
               for dx in (0, 1))


def strip_ratios(network: VGGFeatures, frame: torch.Tensor, style_grams: Mapping[str, torch.Tensor],
                 right: int, bottom: int) -> dict[str, float]:
    """Style distance of the right strip (``right`` px wide) over the left one of the same width,
    and of the bottom strip over the top one: 1 is evenly painted, more is a strip less styled."""
    def distance(region: torch.Tensor) -> float:
        return style_distance(network, region, style_grams)

    return {"right_left": distance(frame[..., -right:]) / distance(frame[..., :right]),
            "bottom_top": distance(frame[..., -bottom:, :]) / distance(frame[..., :bottom, :])}


def blotches(frame: np.ndarray, window: int = 7, share: float = 0.005) -> float:
    """Speckled blotches of colour: how far each pixel's chroma (CIELAB a, b of an (H, W, 3) [0, 1]
    RGB frame) stands off its 3x3 median, averaged over ``window`` px boxes, at the ``share`` of
    boxes where it is highest. Strokes change colour in runs that a median keeps; a blotch is a
    cluster of single pixels of every hue, which a Gram of the frame took for strokes (the
    unscaled region term's blotched occlusion read 0.35 of the first frame's style distance),
    while the eye sees them first."""
    lab = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.float32), cv2.COLOR_RGB2LAB)
    off = np.sqrt(((lab - cv2.medianBlur(lab, 3))[..., 1:] ** 2).sum(-1))
    return float(np.quantile(cv2.blur(off, (window, window)), 1.0 - share))


def laplacian_variance(frame: np.ndarray) -> float:
    """Detail: the variance of the Laplacian of the luminance of an (H, W, 3) [0, 1] frame."""
    grey = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def shifted_warping_error(frames: Sequence[np.ndarray], shift: tuple[int, int],
                          moving: Optional[Sequence[np.ndarray]] = None) -> float:
    """Warping error under an exact camera motion: the scene moves by ``shift`` = (dx, dy) px per
    frame toward the top left, so frame t+1 at x shows what frame t showed at x + shift. Mean
    squared difference over the pixels both frames see, leaving out ``moving`` (boolean (H, W)
    masks, per frame, of objects that do not follow the camera), averaged over frame pairs."""
    dx, dy = shift
    errors = []
    for t in range(len(frames) - 1):
        a, b = frames[t], frames[t + 1]
        height, width = a.shape[:2]
        earlier = a[dy:, dx:]
        later = b[:height - dy, :width - dx]
        keep = np.ones(earlier.shape[:2], dtype=bool)
        if moving is not None:
            keep &= ~moving[t][dy:, dx:] & ~moving[t + 1][:height - dy, :width - dx]
        squared = ((earlier - later) ** 2).mean(-1)
        errors.append(float(squared[keep].mean()))
    return float(np.mean(errors))
