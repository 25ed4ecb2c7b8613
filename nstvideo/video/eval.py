"""Measure a stylized video: temporal consistency (Lai et al. 2018) and style loss.

Warping error: flow and occlusion from the *reference* (input) frames, resized to the output size;
for each pair of consecutive frames, the mean squared difference on [0, 1] RGB between output frame
t and output frame t+1 warped back onto it, over reliable pixels; averaged over pairs. The same
figure for the reference itself says how much change the footage has on its own. The style loss
(relative, unweighted, as in losses.py) is reported beside it, so that a lower warping error cannot
come from washing the style out.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import torch

from . import flow as flowlib
from .. import images
from ..config import StylizeConfig
from ..errors import InputError
from ..still.stylize import resize
from .io import open_frames, probe


def _as_array(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    tensor = resize(images.to_tensor(frame.astype(np.float32) / np.float32(255.0)), height, width)
    return images.to_array(tensor)


def evaluate(output: str | os.PathLike, reference: str | os.PathLike, styles: Sequence[str],
             config: StylizeConfig) -> dict:
    from .source import select_range

    out_info, ref_info = probe(output), probe(reference)
    first, count = select_range(ref_info, config)
    if out_info.frames != count:
        raise InputError(f"{output} has {out_info.frames} frames but the selected range of "
                         f"{reference} has {count}; give the clip the output was made from, "
                         "with the same --start/--end/--max-frames")
    height, width = out_info.height, out_info.width
    style_measure = _style_measure(styles, config, height, width) if styles else None
    dis = flowlib.make_dis(config.video.flow_preset)
    errors, ref_errors, reliable, style_losses = [], [], [], []
    previous: Optional[tuple[np.ndarray, np.ndarray]] = None
    with open_frames(output) as out_frames, open_frames(reference) as ref_frames:
        for _ in range(first):
            next(ref_frames)
        for out_raw, ref_raw in zip(out_frames, ref_frames):
            out = out_raw.astype(np.float32) / np.float32(255.0)
            ref = _as_array(ref_raw, height, width)
            if style_measure is not None:
                style_losses.append(style_measure(out))
            if previous is not None:
                out_prev, ref_prev = previous
                flow_ab, mask = flowlib.flow_and_mask(ref_prev, ref, dis)
                errors.append(flowlib.warping_error(out_prev, out, flow_ab, mask))
                ref_errors.append(flowlib.warping_error(ref_prev, ref, flow_ab, mask))
                reliable.append(float(mask.mean()))
            previous = (out, ref)
    figures = {"output": str(output), "reference": str(reference), "frames": out_info.frames,
               "first_reference_frame": first,
               "fps": str(out_info.fps), "size": [width, height], "pairs": len(errors),
               "warping_error": float(np.mean(errors)) if errors else 0.0,
               "warping_error_reference": float(np.mean(ref_errors)) if ref_errors else 0.0,
               "reliable_fraction": float(np.mean(reliable)) if reliable else 0.0}
    if style_measure is not None:
        figures["style_loss"] = float(np.mean(style_losses))
        figures["style_loss_max"] = float(np.max(style_losses))
    return figures


def _style_measure(styles: Sequence[str], config: StylizeConfig, height: int, width: int):
    """frame -> the relative style loss against the blended style Grams."""
    from ..network.features import canonical_layers
    from ..network.objective import StyleObjective
    from ..runtime import configure_precision
    from ..still.stylize import build_network
    from .frames import style_targets

    configure_precision(config.model.precision)  # TF32 only when asked for, as in stylize
    network, _ = build_network(config)
    device = next(network.parameters()).device
    grams = style_targets(network, [images.load(s) for s in styles], config, max(height, width))
    objective = StyleObjective(
        network, content_layers=(), style_layers=canonical_layers(config.loss.style_layers,
                                                                  config.model.model),
        content=None, styles=(), style_grams=grams, layer_weights=config.loss.layer_weights,
        style_weight=1.0, precision=config.model.precision)

    @torch.no_grad()
    def measure(frame: np.ndarray) -> float:
        return float(objective(images.to_tensor(frame).to(device))["style"])

    return measure
