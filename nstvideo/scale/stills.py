"""What a worker does for the jobs made of independent stills (``cluster`` wraps this class, so
importing it needs no Ray): a folder's images, a sweep's runs, and (``records.explore.LayerWorker``
adds it) the layers of ``nstvideo layers``. It reads its inputs itself (every input must be readable on every node), keeps one network per
model and layer set for its life, and sends each result back as the encoded file's bytes (and a
layer's convergence MP4 too), so no filesystem is shared: the driver writes them.

A still job keeps no state on the worker: one whose worker died is run again from its start.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from .. import images, runtime
from ..config import StylizeConfig

IMAGE, RUN, LAYER = "image", "run", "layer"  # a folder's still, a sweep's run, a layer's texture


@dataclass(frozen=True)
class StillJob:
    """One still: ``kind`` IMAGE (``content`` painted, written as ``suffix``), RUN (a sweep's run:
    ``content`` painted, PNG) or LAYER (``layer`` alone from noise, PNG and convergence MP4).
    ``layers`` are those of the network that serves the job (the whole sweep's or layer set's,
    so one network serves every job of it)."""

    key: str  # how the driver knows it: an output path, a run number, a layer name
    kind: str
    content: Optional[str]
    styles: tuple[str, ...]
    config: StylizeConfig
    layers: tuple[str, ...]
    suffix: str = ".png"
    layer: Optional[str] = None


@dataclass(frozen=True)
class StillDone:
    """A finished still: its file's bytes (a layer's MP4 in ``video``), final losses, iterations,
    seconds, and where it ran."""

    key: str
    data: bytes
    losses: dict = field(default_factory=dict)
    iterations: int = 0
    seconds: float = 0.0
    video: Optional[bytes] = None
    frames: int = 0  # a layer's convergence video
    node: str = ""
    pid: int = 0


class StillWorker:
    """The body of one Ray actor for still jobs. ``paths`` are the files every job of the run
    reads (checked by ``hello``); ``device`` is --device (what ``hello`` reports)."""

    def __init__(self, paths: tuple[str, ...], device: str, threads: Optional[int]):
        self.paths, self.device = paths, device
        if threads:
            torch.set_num_threads(threads)
        self._networks: dict = {}
        self._styles: dict[tuple[str, ...], list[torch.Tensor]] = {}

    def hello(self) -> dict:
        unreadable = [path for path in self.paths if not os.access(path, os.R_OK)]
        return {"node": platform.node(), "pid": os.getpid(), "unreadable": unreadable,
                "device": str(runtime.resolve_device(self.device)),
                "threads": torch.get_num_threads()}

    def prepare(self, config: StylizeConfig, layers: tuple[str, ...]) -> dict:
        """Build the network now (a bad weights file fails here, before any output)."""
        _, source = self._network(config, layers)
        return {"random": bool(source.is_random)}

    def _network(self, config: StylizeConfig, layers: tuple[str, ...]):
        from ..still.stylize import build_network

        key = (config.model, layers)
        if key not in self._networks:
            runtime.configure_precision(config.model.precision)
            wide = config.replace(loss={"content_layers": (), "style_layers": layers,
                                        "layer_weights": None})
            self._networks[key] = build_network(wide, runtime.resolve_device(config.model.device))
        return self._networks[key]

    def _style_images(self, paths: tuple[str, ...]) -> list[torch.Tensor]:
        if paths not in self._styles:
            self._styles[paths] = [images.load(path) for path in paths]
        return self._styles[paths]

    def run(self, job: StillJob) -> StillDone:
        started = time.perf_counter()
        network, _ = self._network(job.config, job.layers)
        return self.render(job, network, self._style_images(job.styles), started)

    @staticmethod
    def where() -> dict:
        return {"node": platform.node(), "pid": os.getpid()}

    def render(self, job: StillJob, network, styles: list[torch.Tensor],
               started: float) -> StillDone:
        """An IMAGE or a RUN: ``content`` painted, encoded as ``suffix``. (A LAYER is
        ``records.explore.LayerWorker``'s: it makes a progress video.)"""
        from ..still.stylize import stylize_image

        if job.kind not in (IMAGE, RUN):
            raise ValueError(f"a {type(self).__name__} does not paint a {job.kind!r} job")
        config = job.config
        content = images.load(job.content)
        init = config.schedule.init
        init_image = None if init in ("content", "noise", "blend") else images.load(init)
        result = stylize_image(content, styles, config, network=network, init_image=init_image)
        name = Path("out" + job.suffix)
        depth = config.output.bit_depth or images.default_bit_depth(name)
        data = images.encode(images.to_array(result.image), images.output_format(name), depth)
        return StillDone(job.key, data, result.scales[-1].result.final_losses(),
                         sum(r.result.iterations_run for r in result.scales),
                         time.perf_counter() - started, **self.where())
