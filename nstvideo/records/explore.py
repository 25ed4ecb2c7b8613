"""Exploration jobs: one texture per style layer (``layers``) and parameter sweeps (``sweep``).

Both write into an output folder: renders, their settings, and a labelled contact sheet. A sweep
keeps ``index.json`` up to date after every run, so re-running the same command skips what is
done. Runs are described as section changes for ``StylizeConfig.replace`` (``{"loss":
{"style_weight": 100.0}}``), so a run's settings are exactly the config it ran with.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from .. import images
from . import plot
from ..config import GATYS_STYLE_LAYERS, StylizeConfig
from ..optim.engine import Callback
from ..errors import InputError, UsageError
from ..network.features import VGGFeatures
from .recorder import ProgressVideo
from ..resume import settings_fingerprint
from ..scale.stills import LAYER, StillDone, StillJob, StillWorker
from ..still.stylize import StylizeResult, build_network, plan, stylize_image

Changes = dict[str, dict[str, Any]]

# Layer sets the random walk moves between (short to deep receptive fields).
LAYER_SETS = {
    "gatys": GATYS_STYLE_LAYERS,
    "shallow": ("relu1_1", "relu2_1", "relu3_1"),
    "middle": ("relu2_1", "relu3_1", "relu4_1"),
    "deep": ("relu3_1", "relu4_1", "relu5_1"),
}
# log10 bounds of the walk: a decade or two either side of the defaults.
WALK_BOUNDS = {"content_weight": (-1.0, 1.0), "style_weight": (1.0, 5.0), "tv_weight": (-2.0, 3.0)}
WALK_STEP = 0.5  # standard deviation of a step, in decades
LAYER_SET_SWITCH = 1 / 3  # chance that a step also picks another layer set
SHORT_NAMES = {"content_weight": "c", "style_weight": "s", "tv_weight": "tv", "style_layers": "L"}


def _reflect(value: float, low: float, high: float) -> float:
    span = high - low
    offset = (value - low) % (2 * span)
    return low + (offset if offset <= span else 2 * span - offset)


def _two_digits(value: float) -> float:
    return float(f"{value:.2g}")


def random_walk(base: StylizeConfig, runs: int, seed: int) -> list[Changes]:
    """A seeded walk over log-scaled content/style/TV weights and style-layer sets.

    Run 0 is the base settings; each later run takes one Gaussian step (in decades) from the
    previous one, reflected at the bounds, and sometimes switches layer set. The same base,
    runs and seed always give the same list, which is what makes a sweep resumable.
    """
    if runs < 1:
        raise UsageError("--runs must be at least 1")
    rng = random.Random(seed)
    position = {name: _reflect(math.log10(max(getattr(base.loss, name), 10 ** low)), low, high)
                for name, (low, high) in WALK_BOUNDS.items()}
    layers = tuple(base.loss.style_layers)
    walk: list[Changes] = []
    for number in range(runs):
        if number:
            for name, (low, high) in WALK_BOUNDS.items():
                position[name] = _reflect(position[name] + rng.gauss(0.0, WALK_STEP), low, high)
            if rng.random() < LAYER_SET_SWITCH:
                layers = rng.choice([s for s in LAYER_SETS.values() if s != layers])
        loss: dict[str, Any] = {name: _two_digits(10 ** position[name]) for name in WALK_BOUNDS}
        if number == 0:
            loss = {name: getattr(base.loss, name) for name in WALK_BOUNDS}
        if layers != tuple(base.loss.style_layers):
            loss.update(style_layers=layers, layer_weights=None)
        walk.append({"loss": loss})
    return walk


def flat_settings(changes: Changes) -> dict[str, Any]:
    """{"loss.style_weight": 100.0, ...} with JSON types (lists for tuples), for the index."""
    flat = {}
    for section, fields in sorted(changes.items()):
        for name, value in sorted(fields.items()):
            flat[f"{section}.{name}"] = list(value) if isinstance(value, tuple) else value
    return flat


def caption_lines(changes: Changes, max_items: int = 3) -> list[str]:
    """Short, readable settings for a contact-sheet caption, a few per line."""
    items = []
    for fields in changes.values():
        for name, value in fields.items():
            if value is None:
                continue
            short = SHORT_NAMES.get(name, name)
            if isinstance(value, tuple):
                text = "+".join(v.replace("relu", "") for v in value)
            elif isinstance(value, float):
                text = f"{value:.3g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
            else:
                text = str(value)
            items.append(f"{short}={text}")
    return [" ".join(items[i:i + max_items]) for i in range(0, len(items), max_items)] or ["base"]


@dataclass
class NetworkCache:
    """One network per model setting, holding every layer (content or style) any run of the
    job uses."""

    layers: tuple[str, ...]
    device: Optional[torch.device] = None
    networks: dict = field(default_factory=dict)

    def get(self, config: StylizeConfig):
        key = config.model
        if key not in self.networks:
            wide = config.replace(loss={"content_layers": (), "style_layers": self.layers,
                                        "layer_weights": None})
            self.networks[key] = build_network(wide, self.device)
        return self.networks[key][0]


def truncated(network: VGGFeatures, layers: Sequence[str]) -> VGGFeatures:
    """A copy of the network cut after the deepest of these layers (same weights, same device):
    a shallow layer's texture then costs a shallow network's time."""
    device = next(network.parameters()).device
    pooling = "max" if any(isinstance(m, torch.nn.MaxPool2d) for m in network.body) else "avg"
    copy = VGGFeatures(network.arch, layers, pooling, state_dict=network.body.state_dict())
    return copy.to(device, memory_format=torch.channels_last)


def write_sheet(path: Path, thumbnails: Sequence[np.ndarray], captions: Sequence[Sequence[str]],
                title: str, cell: int = 256) -> None:
    sheet = plot.captioned_grid(thumbnails, captions, cell=cell, title=title)
    images.write_image(path, sheet.astype(np.float32) / 255.0)


# --- layers -----------------------------------------------------------------------------------

@dataclass
class LayerRender:
    layer: str
    image_path: Path
    video_path: Path
    frames: int
    final_style_loss: float
    seconds: float


def layer_config(config: StylizeConfig, layer: str) -> StylizeConfig:
    """The settings of one layer's render: that style layer alone, from noise, no content."""
    return config.replace(loss={"style_layers": (layer,), "layer_weights": None,
                                "content_weight": 0.0}, schedule={"init": "noise"})


def render_layer(styles: Sequence[torch.Tensor], config: StylizeConfig, layer: str,
                 networks: NetworkCache, image_path: Path, video_path: Path, *,
                 callbacks: Sequence[Callback] = ()) -> LayerRender:
    """One layer's texture to ``image_path`` and its convergence to ``video_path``."""
    size_hw = (config.schedule.size, config.schedule.size)
    finest = plan(config, *size_hw)[-1]
    run_config = layer_config(config, layer)
    started = time.perf_counter()
    with ProgressVideo(video_path, (finest.height, finest.width),
                       every=config.record.progress_every, layout=config.record.progress_layout,
                       long_side=config.record.progress_size, style=styles[0]) as video:
        network = truncated(networks.get(run_config), (layer,))
        result = stylize_image(None, styles, run_config, network=network,
                               callbacks=[*callbacks, video], size_hw=size_hw)
    images.write_image(image_path, result.image, config.output.bit_depth)
    final = result.scales[-1].result.final_losses()
    return LayerRender(layer, image_path, video_path, video.frames_written,
                       final.get("style", float("nan")), time.perf_counter() - started)


def render_layers(styles: Sequence[torch.Tensor], config: StylizeConfig, layers: Sequence[str],
                  out_dir: Path, *, callbacks: Sequence[Callback] = (),
                  on_done: Optional[Callable[[LayerRender], None]] = None,
                  device: Optional[torch.device] = None) -> list[LayerRender]:
    """Synthesise the style from noise with one style layer at a time.

    Writes ``layer_<name>.png`` and ``layer_<name>.mp4`` (its convergence, per --progress-every
    and --progress-layout) per layer and ``layers_grid.png`` comparing them.
    """
    layers = tuple(layers)
    if not layers:
        raise UsageError("--layers needs at least one layer name")
    out_dir.mkdir(parents=True, exist_ok=True)
    networks = NetworkCache(layers, device)
    renders = []
    for layer in layers:
        image_path, video_path = layer_paths(out_dir, layer)
        render = render_layer(styles, config, layer, networks, image_path, video_path,
                              callbacks=callbacks)
        renders.append(render)
        if on_done:
            on_done(render)
    write_layers_grid(out_dir / "layers_grid.png", renders)
    return renders


def layer_paths(out_dir: Path, layer: str) -> tuple[Path, Path]:
    return out_dir / f"layer_{layer}.png", out_dir / f"layer_{layer}.mp4"


class LayerWorker(StillWorker):
    """The body of a worker of ``layers --workers``: each job (``stills.LAYER``) is one layer's
    texture and convergence MP4, made in a folder of the worker's own and sent back as bytes."""

    def render(self, job: StillJob, network, styles, started: float) -> StillDone:
        import tempfile

        if job.kind != LAYER:
            return super().render(job, network, styles, started)
        networks = NetworkCache(job.layers)
        networks.networks[job.config.model] = self._network(job.config, job.layers)
        with tempfile.TemporaryDirectory(prefix="nstvideo-layer-") as folder:
            image_path, video_path = Path(folder) / "layer.png", Path(folder) / "layer.mp4"
            render = render_layer(styles, job.config, job.layer, networks, image_path, video_path)
            return StillDone(job.key, image_path.read_bytes(), {"style": render.final_style_loss},
                             0, time.perf_counter() - started, video_path.read_bytes(),
                             render.frames, **self.where())


def write_layers_grid(path: Path, renders: Sequence[LayerRender]) -> None:
    thumbnails = [images.to_uint8(images.read_image(r.image_path)) for r in renders]
    captions = [[r.layer, f"style loss {r.final_style_loss:.3g}"] for r in renders]
    write_sheet(path, thumbnails, captions, "one style layer per render (texture from noise)")


# --- sweep ------------------------------------------------------------------------------------

INDEX_NAME, SHEET_NAME = "index.json", "contact_sheet.png"


@dataclass
class SweepSummary:
    ran: list[str]
    skipped: list[str]
    index_path: Path
    sheet_path: Path


def _load_index(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a readable sweep index ({exc}); move it away to start over")
    return index if isinstance(index, dict) else {}


def _write_index(path: Path, index: dict) -> None:
    images.atomic_write_bytes(path, (json.dumps(index, indent=2) + "\n").encode())


def sweep_layers(configs: Sequence[StylizeConfig]) -> tuple[str, ...]:
    """Every layer (content or style) any run uses: one network holds them all."""
    return tuple(dict.fromkeys(layer for c in configs
                               for layer in c.loss.content_layers + c.loss.style_layers))


@dataclass
class RunResult:
    """What the index keeps of a finished run."""

    losses: dict
    iterations_run: int
    seconds: float


class SweepFolder:
    """A sweep's output folder: the runs ``index.json`` says are done (same inputs, same base
    settings, same run settings, image there), the ones left (``todo``: number, name, config),
    and the index, rewritten atomically as each run comes back, in any order."""

    def __init__(self, out_dir: Path, base: StylizeConfig, runs: Sequence[Changes],
                 meta: Optional[dict] = None):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.runs = out_dir, list(runs)
        self.index_path, self.sheet_path = out_dir / INDEX_NAME, out_dir / SHEET_NAME
        self.configs = [base.replace(**changes) for changes in runs]
        # runs are reused only from a sweep over the same inputs (meta) and the same base settings
        job = json.loads(json.dumps({**(meta or {}), "settings": settings_fingerprint(base)},
                                    default=str))
        old_index = _load_index(self.index_path)
        same_job = all(old_index.get(key) == value for key, value in job.items())
        previous = ({entry.get("name"): entry for entry in old_index.get("runs", [])}
                    if same_job else {})
        self.head = {"command": "sweep", **job, "base": base.to_dict()}
        self.entries: dict[int, dict] = {}
        self.todo: list[tuple[int, str, StylizeConfig]] = []
        self.ran: list[str] = []
        self.skipped: list[str] = []
        for number, (changes, config) in enumerate(zip(self.runs, self.configs)):
            name = self.name(number)
            old = previous.get(name)
            if (old and old.get("settings") == flat_settings(changes)
                    and self.image_path(number).exists()):
                self.entries[number] = old
                self.skipped.append(name)
            else:
                self.todo.append((number, name, config))

    @staticmethod
    def name(number: int) -> str:
        return f"run_{number:03d}"

    def image_path(self, number: int) -> Path:
        return self.out_dir / f"{self.name(number)}.png"

    def record(self, number: int, result: RunResult) -> None:
        """Run ``number``'s image is written: add it to the index."""
        changes = self.runs[number]
        self.entries[number] = {
            "name": self.name(number), "file": self.image_path(number).name,
            "settings": flat_settings(changes), "caption": caption_lines(changes),
            "losses": result.losses, "iterations_run": result.iterations_run,
            "seconds": round(result.seconds, 3)}
        self.ran.append(self.name(number))
        self._write()

    def _write(self) -> None:
        _write_index(self.index_path, {**self.head, "runs": [self.entries[n]
                                                             for n in sorted(self.entries)]})

    def finish(self) -> SweepSummary:
        """The index and the contact sheet of every run."""
        self._write()
        entries = [self.entries[n] for n in sorted(self.entries)]
        thumbnails = [images.to_uint8(images.read_image(self.out_dir / entry["file"]))
                      for entry in entries]
        captions = [[entry["name"], *entry.get("caption", [])] for entry in entries]
        write_sheet(self.sheet_path, thumbnails, captions, f"sweep: {len(self.runs)} runs")
        return SweepSummary(self.ran, self.skipped, self.index_path, self.sheet_path)


def run_sweep(content: torch.Tensor, styles: Sequence[torch.Tensor], base: StylizeConfig,
              runs: Sequence[Changes], out_dir: Path, *, meta: Optional[dict] = None,
              callbacks: Sequence[Callback] = (),
              on_done: Optional[Callable[[str, bool], None]] = None,
              device: Optional[torch.device] = None) -> SweepSummary:
    """Stylize ``content`` once per run, each with ``base.replace(**changes)``.

    Each result goes to ``run_NNN.png``; ``index.json`` (rewritten atomically after every run)
    lists each run's settings and final losses. A run whose image exists and whose index entry
    has the same settings is skipped, so an interrupted sweep resumes where it stopped.
    """
    folder = SweepFolder(out_dir, base, runs, meta)
    networks = NetworkCache(sweep_layers(folder.configs), device)
    for name in folder.skipped:
        if on_done:
            on_done(name, True)
    for number, name, config in folder.todo:
        started = time.perf_counter()
        result: StylizeResult = stylize_image(content, styles, config, network=networks.get(config),
                                              callbacks=callbacks)
        images.write_image(folder.image_path(number), result.image, config.output.bit_depth)
        folder.record(number, RunResult(result.scales[-1].result.final_losses(),
                                        sum(r.result.iterations_run for r in result.scales),
                                        time.perf_counter() - started))
        if on_done:
            on_done(name, False)
    return folder.finish()
