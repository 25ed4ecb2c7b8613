"""GPU figures in one prepared run: every measurement of issue 18 in one process, one JSON file.

On a lent GPU, from the repository root (at most ~8 minutes on an H100/H200, random weights,
nothing downloads)::

    PYTHONUNBUFFERED=1 python benchmarks/gpu_suite.py --out gpu.json
    PYTHONUNBUFFERED=1 python benchmarks/gpu_suite.py --out gpu.json --nspt /path/to/neural-style-pt

It writes ``gpu.json`` (rewritten as each section finishes, so a killed run keeps the finished
sections) and prints a short table. The video section encodes through imageio-ffmpeg: where the
GPU machine lacks it, carry its wheel. The same code paths run in seconds on a CPU, with tiny
sizes, few iterations, small posters and shallow layers (``tests/test_gpu_suite.py`` runs it)::

    python benchmarks/gpu_suite.py --smoke --device cpu --out smoke.json

Sections, in this order, each with a time budget in seconds (``--budget NAME=SECONDS``; a section
that overruns is stopped where it is, and keeps and reports what it had measured):

* ``ceilings`` (15): what a large matmul and a large 3x3 convolution reach in fp32, tf32 and bf16,
  beside the datasheet peak where we know the GPU; every later figure is also given as a fraction
  of them.
* ``engine`` (75): 512x512, L-BFGS and Adam, fp32/tf32/bf16: ms per iteration (the slope between 50
  and 500 iterations, so set-up does not count) and the measured wall time of the 500 iterations.
* ``nspt`` (140, only with ``--nspt``): ``benchmarks/side_by_side.py`` at 512 px for L-BFGS and
  Adam (neural-style-pt with cuDNN on and autotuned, nstvideo at each precision; whole processes,
  the same weights file). neural-style-pt's source is never committed here: on a GPU machine
  that cannot download, copy a checkout into the working tree, ignored (e.g.
  ``benchmarks/neural-style-pt`` named in ``.git/info/exclude``), and pass that path.
* ``video`` (60): 720p frames of a pan through the real frame loop (``video.frames``) at the
  default later-frame budget (``FRAME_ITERATIONS``, no tolerance stop), --temporal flow with the
  next frame's flow and the saving (work-folder PNG and H.264 encoder) overlapped on worker
  threads: frames per second after the first.
* ``posters`` (140): 16, 64 and 100 MP squares through ``stylize_image`` under ``--max-memory 24``
  (the planner's blocks, placement and L-BFGS history), a few iterations each: seconds per
  iteration, peak memory, and the time to finish the whole coarse-to-fine poster, extrapolated from
  the measured iterations (and marked so).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import (device_peak_tflops, environment, iteration_gflop,  # noqa: E402
                               measured_gemm_tflops, synchronize)
from nstvideo import images, runtime  # noqa: E402
from nstvideo.config import FRAME_ITERATIONS, GATYS_STYLE_LAYERS, OptimConfig, StylizeConfig  # noqa: E402
from nstvideo.network.features import VGGFeatures, canonical_layers, deepest  # noqa: E402
from nstvideo.network.objective import StyleObjective  # noqa: E402
from nstvideo.optim.engine import Progress, autograd_evaluator, optimize  # noqa: E402
from nstvideo.still.stylize import build_network, plan, stylize_image  # noqa: E402

STYLE_IMAGE = REPO / "samples" / "swirls.png"


@dataclass(frozen=True)
class Sizes:
    """What each section measures. ``FULL`` is the GPU run; ``SMOKE`` the same paths, tiny."""

    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = GATYS_STYLE_LAYERS
    precisions: tuple[str, ...] = ("fp32", "tf32", "bf16")
    optimizers: tuple[str, ...] = ("lbfgs", "adam")
    gemm_n: int = 8192
    gemm_repeats: int = 10
    conv_shape: tuple[int, int, int] = (16, 512, 64)  # batch, channels in and out, side
    conv_repeats: int = 20
    engine_side: int = 512
    engine_iterations: int = 500
    engine_short: int = 50
    engine_warmup: int = 10  # iterations before timing: cuDNN's autotuning, allocator growth
    nspt_short: int = 20
    nspt_long: int = 100
    video_size: tuple[int, int] = (720, 1280)  # height, width
    video_frames: int = 7  # the first, then the later frames the figure is taken over
    video_first_iterations: int = 2 * FRAME_ITERATIONS
    video_iterations: int = FRAME_ITERATIONS  # the default later-frame budget
    poster_sides: tuple[int, ...] = (4000, 8000, 10000)  # 16, 64 and 100 MP
    poster_iterations: int = 5
    max_memory: float = 24.0  # GiB, --max-memory for every poster
    poster_tile: Optional[int] = None  # --tile-size; None: the planner's blocks
    budgets: dict = field(default_factory=lambda: {"ceilings": 15, "engine": 75, "nspt": 140,
                                                   "video": 60, "posters": 140})


FULL = Sizes()
SMOKE = Sizes(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1", "relu3_1"),
              gemm_n=512, gemm_repeats=3, conv_shape=(1, 64, 64), conv_repeats=3,
              engine_side=64, engine_iterations=5, engine_short=2, engine_warmup=1,
              nspt_short=2, nspt_long=4, video_size=(72, 128), video_frames=3,
              video_first_iterations=3, video_iterations=2, poster_sides=(96, 128, 160),
              # blocks forced: a budget small enough to cut 160 px in blocks would test the
              # planner's fixed costs (the network, the process), not the block-wise path
              poster_iterations=3, max_memory=4.0, poster_tile=64,
              budgets={"ceilings": 30, "engine": 60, "nspt": 300, "video": 60, "posters": 60})
SECTIONS = ("ceilings", "engine", "nspt", "video", "posters")


class SectionOverrun(Exception):
    """A section ran past its time budget."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise SectionOverrun in the main thread once ``seconds`` have passed, wherever the section
    is (between two operations, or waiting on a worker, a lock or a child process)."""

    def overrun(signum, frame):
        raise SectionOverrun(f"over its {seconds:g} s budget")

    previous = signal.signal(signal.SIGALRM, overrun)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Section:
    """One section's record, filled while it runs: what was measured stays when it is cut."""

    name: str
    budget_s: float
    results: list = field(default_factory=list)
    status: str = "pending"
    doing: str = ""  # the measurement under way, named when the section is cut or fails
    note: Optional[str] = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        entry = {"status": self.status, "budget_s": self.budget_s, "seconds": round(self.seconds, 2),
                 "results": self.results}
        if self.note:
            entry["note"] = self.note
        return entry


@dataclass
class Suite:
    device: torch.device
    sizes: Sizes
    network: VGGFeatures
    config: StylizeConfig  # precision auto-resolved; the poster and video settings start here
    style: torch.Tensor
    nspt: Optional[Path]
    ceilings: dict = field(default_factory=dict)  # precision -> {"matmul_tflops", "conv_tflops", ...}

    @property
    def deepest_layer(self) -> str:
        layers = self.sizes.content_layers + self.sizes.style_layers
        return deepest(canonical_layers(layers, "vgg19"), "vgg19").name

    def gflop(self, height: int, width: int) -> float:
        """Useful work of one iteration (forward and input gradient of the untiled pass)."""
        return iteration_gflop("vgg19", self.deepest_layer, height, width)


def fractions(suite: Suite, achieved_tflops: float, precision: str) -> dict:
    """An achieved TFLOP/s as fractions of the measured ceilings and the datasheet peak."""
    ceiling = suite.ceilings.get(precision, {})
    peak = device_peak_tflops(suite.device, precision)

    def share(of):
        return round(achieved_tflops / of, 4) if of else None

    return {"achieved_tflops": round(achieved_tflops, 3),
            "fraction_of_conv_ceiling": share(ceiling.get("conv_tflops")),
            "fraction_of_matmul_ceiling": share(ceiling.get("matmul_tflops")),
            "fraction_of_datasheet_peak": share(peak)}


# --- ceilings ------------------------------------------------------------------------------------

def conv_tflops(device: torch.device, precision: str, shape: tuple[int, int, int],
                repeats: int) -> float:
    """What a 3x3 convolution of VGG's widest kind reaches (forward, channels_last)."""
    batch, channels, side = shape
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    conv = conv.to(device, dtype, memory_format=torch.channels_last).requires_grad_(False)
    x = torch.randn(batch, channels, side, side, device=device, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    conv(x)  # warm-up: cuDNN picks its algorithm
    best = float("inf")
    for _ in range(3):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            conv(x)
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * channels * 9 * channels * side * side * batch / best / 1e12


def section_ceilings(suite: Suite, section: Section) -> None:
    sizes = suite.sizes
    with torch.no_grad():
        for precision in sizes.precisions:
            section.doing = precision
            runtime.configure_precision(precision)
            row = {"precision": precision,
                   "matmul_tflops": round(measured_gemm_tflops(suite.device, precision, sizes.gemm_n,
                                                               sizes.gemm_repeats), 3),
                   "conv_tflops": round(conv_tflops(suite.device, precision, sizes.conv_shape,
                                                    sizes.conv_repeats), 3),
                   "datasheet_peak_tflops": device_peak_tflops(suite.device, precision),
                   "matmul_n": sizes.gemm_n, "conv_shape_bchw": list(sizes.conv_shape[:2]) +
                   [sizes.conv_shape[2]] * 2}
            section.results.append(row)
            suite.ceilings[precision] = row


# --- engine: 512 px ------------------------------------------------------------------------------

def timed_optimize(start: torch.Tensor, evaluate, config: OptimConfig, device) -> tuple[float, float]:
    synchronize(device)
    began = time.perf_counter()
    result = optimize(start, evaluate, config)
    synchronize(device)
    return time.perf_counter() - began, result.history[-1]["total"]


def section_engine(suite: Suite, section: Section) -> None:
    sizes, device = suite.sizes, suite.device
    side = sizes.engine_side
    generator = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, side, side, generator=generator).to(device)
    style = suite.style.to(device)
    for optimizer in sizes.optimizers:
        for precision in sizes.precisions:
            section.doing = f"{optimizer} {precision}"
            runtime.configure_precision(precision)
            runtime.reset_peak_memory(device)
            synchronize(device)
            began = time.perf_counter()
            objective = StyleObjective(
                suite.network, content=content, content_layers=sizes.content_layers,
                style_layers=sizes.style_layers, styles=[style], content_weight=1.0,
                style_weight=1000.0, tv_weight=10.0, precision=precision)
            synchronize(device)
            setup_s = time.perf_counter() - began
            evaluate = autograd_evaluator(objective)
            configs = {n: OptimConfig(optimizer=optimizer, iterations=n, tolerance=0)
                       for n in (sizes.engine_warmup, sizes.engine_short, sizes.engine_iterations)}
            timed_optimize(content, evaluate, configs[sizes.engine_warmup], device)
            short_s, _ = timed_optimize(content, evaluate, configs[sizes.engine_short], device)
            long_s, final_loss = timed_optimize(content, evaluate, configs[sizes.engine_iterations],
                                                device)
            ms = 1000 * (long_s - short_s) / (sizes.engine_iterations - sizes.engine_short)
            gflop = suite.gflop(side, side)
            section.results.append({
                "size": f"{side}x{side}", "optimizer": optimizer, "precision": precision,
                "ms_per_iteration": round(ms, 3), "iterations": sizes.engine_iterations,
                "seconds": round(long_s, 3), "setup_s": round(setup_s, 3),
                "gflop_per_iteration": round(gflop, 1), **fractions(suite, gflop / ms, precision),
                "final_loss": final_loss, "memory": runtime.peak_memory(device)})
    for row in section.results:  # the quality cost of the cheaper arithmetic
        reference = next((r for r in section.results if r["optimizer"] == row["optimizer"]
                          and r["precision"] == "fp32"), None)
        if reference:
            row["final_loss_vs_fp32"] = round(row["final_loss"] / reference["final_loss"], 4)
            row["speedup_vs_fp32"] = round(reference["ms_per_iteration"] / row["ms_per_iteration"], 3)


# --- neural-style-pt side by side ----------------------------------------------------------------

def run_to_end(argv: list[str]) -> subprocess.CompletedProcess:
    """A child process in its own process group, so a cut section also ends the processes it
    started (side_by_side.py runs each tool as a process of its own)."""
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def section_nspt(suite: Suite, section: Section) -> None:
    sizes = suite.sizes
    if suite.nspt is None:
        section.status = "skipped"
        section.note = "no --nspt PATH (a neural-style-pt checkout) given"
        return
    for optimizer in sizes.optimizers:
        section.doing = optimizer
        argv = [sys.executable, str(REPO / "benchmarks" / "side_by_side.py"), "--nspt",
                str(suite.nspt), "--size", str(sizes.engine_side), "--optimizer", optimizer,
                "--short", str(sizes.nspt_short), "--long", str(sizes.nspt_long), "--repeats", "1",
                "--device", "cpu" if suite.device.type == "cpu" else "cuda",
                "--precision", ",".join(sizes.precisions)]
        done = run_to_end(argv)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"side_by_side.py --optimizer {optimizer} exited {done.returncode}: "
                               f"{last}")
        figures = json.loads(done.stdout)
        section.results.append({key: figures[key] for key in
                                ("size", "optimizer", "device", "iterations",
                                 "seconds_per_iteration", "ratio_to_nspt")})


# --- video: 720p ---------------------------------------------------------------------------------

def section_video(suite: Suite, section: Section) -> None:
    from benchmarks.bench_video import clip, flow_ms, save_ms
    from nstvideo.video.frames import stylize_frames, style_targets
    from nstvideo.video.io import VideoWriter
    from nstvideo.video.sink import FrameSink
    from nstvideo.video.workdir import WorkDir

    sizes, device = suite.sizes, suite.device
    height, width = sizes.video_size
    config = suite.config.replace(optim={"iterations": sizes.video_iterations, "tolerance": 0.0},
                                  video={"first_iterations": sizes.video_first_iterations,
                                         "temporal": "flow"})
    runtime.configure_precision(config.model.precision)
    section.doing = "making the clip"
    frames = clip(height, width, sizes.video_frames)
    row = {"size": f"{width}x{height}", "precision": config.model.precision, "temporal": "flow",
           "flow_preset": config.video.flow_preset, "frames": sizes.video_frames,
           "first_iterations": sizes.video_first_iterations, "iterations": sizes.video_iterations,
           "tolerance": 0.0, "overlapped": "next frame's flow and the saving on worker threads",
           "flow_ms_per_frame_alone": round(flow_ms(frames, config.video.flow_preset), 2),
           "save_ms_per_frame_alone": round(save_ms(frames[0]), 2),
           "frame_seconds": [], "done_at_s": [], "flow_seconds": []}
    section.results.append(row)
    grams = style_targets(suite.network, [suite.style], config, max(height, width))
    with tempfile.TemporaryDirectory() as temp:
        work = WorkDir(Path(temp) / "work")
        work.open({"benchmark": "gpu_suite video"})
        with VideoWriter(Path(temp) / "out.mp4", width, height, Fraction(30)) as writer:
            sink = FrameSink(work, writer, threaded=True)
            loop = stylize_frames(iter(frames), grams, config, network=suite.network,
                                  total=len(frames), flow_ahead=True)
            began = time.perf_counter()
            try:
                for item in loop:
                    section.doing = f"frame {item.index + 1}/{len(frames)}"
                    sink.put(item.index, item.image)
                    row["done_at_s"].append(round(time.perf_counter() - began, 4))
                    row["frame_seconds"].append(round(item.seconds, 4))
                    row["flow_seconds"].append(round(item.flow_seconds, 4))
                    row["iterations_run"] = item.result.iterations_run
                section.doing = "saving the last frames"
                sink.close()
                row["all_saved_at_s"] = round(time.perf_counter() - began, 4)
            finally:
                loop.close()
                sink.close(raise_errors=False)
    row["memory"] = runtime.peak_memory(device)


def summarize_video(suite: Suite, section: Section) -> None:
    for row in section.results:
        done = row["done_at_s"]
        if not done:
            continue
        row["first_frame_s"] = done[0]
        if len(done) < 2:
            continue
        later = (len(done) - 1) / (done[-1] - done[0])
        row["later_frames_per_s"] = round(later, 3)
        row["later_frame_s"] = round(1 / later, 4)
        height, width = suite.sizes.video_size
        tflops = suite.gflop(height, width) * row["iterations"] * later / 1000
        row.update(fractions(suite, tflops, row["precision"]))


# --- posters -------------------------------------------------------------------------------------

def poster_config(suite: Suite, side: int, *, single_scale: bool) -> StylizeConfig:
    schedule = {"size": side, "tile_size": suite.sizes.poster_tile}
    if single_scale:
        schedule["min_scale"] = side
    return suite.config.replace(schedule=schedule, model={"max_memory": suite.sizes.max_memory})


def section_posters(suite: Suite, section: Section) -> None:
    sizes, device = suite.sizes, suite.device
    runtime.configure_precision(suite.config.model.precision)
    for side in sizes.poster_sides:
        section.doing = f"{side}x{side}"
        config = poster_config(suite, side, single_scale=True).replace(
            optim={"iterations": sizes.poster_iterations, "tolerance": 0.0})
        step = plan(config, side, side, device)[-1]
        row = {"size": f"{side}x{side}", "megapixels": round(side * side / 1e6, 2),
               "max_memory_gib": sizes.max_memory, "precision": config.model.precision,
               "optimizer": config.optim.optimizer, "blocks": step.blocks, "tile_size": step.tile_size,
               "canvas_on_host": step.canvas_on_host, "content_on_host": step.content_on_host,
               "lbfgs_history_planned": step.lbfgs_history, "iteration_done_at_s": []}
        section.results.append(row)
        generator = torch.Generator().manual_seed(side)
        content = torch.rand(1, 3, side, side, generator=generator)
        runtime.reset_peak_memory(device)
        began = time.perf_counter()

        def timer(event: Progress, row=row, began=began) -> None:
            synchronize(device)  # at poster sizes one wait per iteration costs nothing
            row["iteration_done_at_s"].append(round(time.perf_counter() - began, 3))
            row["memory"] = runtime.peak_memory(device)

        result = stylize_image(content, [suite.style], config, network=suite.network,
                               callbacks=[timer])
        used = result.scales[-1].step
        row.update(blocks=used.blocks, tile_size=used.tile_size)  # after any out-of-memory shrink
        row["memory"] = runtime.peak_memory(device)
        del content, result
        gc.collect()


def iteration_model(done_at: list[float]) -> Optional[dict]:
    """Seconds per iteration from the times iterations ended: t_k = a + b·(k − 1) for iterations
    k ≥ 2, k − 1 being the L-BFGS pairs the direction reads (iteration 1 also holds the set-up:
    targets, autotuning). b is 0 with fewer than three such iterations."""
    durations = [later - earlier for earlier, later in zip(done_at, done_at[1:])]
    if not durations:
        return None
    pairs = list(range(1, len(durations) + 1))
    slope = 0.0
    if len(durations) >= 3:
        slope = max(0.0, statistics.linear_regression(pairs, durations).slope)
    base = statistics.median(d - slope * k for d, k in zip(durations, pairs))
    return {"s_per_iteration": round(statistics.median(durations), 4),
            "s_per_iteration_base": round(base, 4), "s_per_extra_pair": round(slope, 5),
            "setup_s": round(max(0.0, done_at[0] - base), 3)}


def finish_time(suite: Suite, side: int, measured: dict[int, dict]) -> dict:
    """The whole coarse-to-fine poster at this side: each planned scale's iterations at the
    measured cost of the nearest measured size, scaled by pixels (for scales smaller than any
    measured one this overstates: small scales run whole, faster per pixel)."""
    steps = plan(poster_config(suite, side, single_scale=False), side, side, suite.device)
    scales, total = [], 0.0
    for step in steps:
        nearest = min(measured, key=lambda s: abs(s * s - step.height * step.width))
        model = measured[nearest]
        ratio = step.height * step.width / (nearest * nearest)
        history = step.lbfgs_history or suite.config.optim.lbfgs_history
        pairs = (sum(min(k - 1, history) for k in range(2, step.iterations + 1))
                 if suite.config.optim.optimizer == "lbfgs" else 0)
        seconds = ratio * (model["setup_s"] + model["s_per_iteration_base"] * step.iterations
                           + model["s_per_extra_pair"] * pairs)
        total += seconds
        scales.append({"size": f"{step.width}x{step.height}", "iterations": step.iterations,
                       "blocks": step.blocks, "from_measured": f"{nearest}x{nearest}",
                       "pixel_ratio": round(ratio, 4), "seconds": round(seconds, 2)})
    return {"extrapolated": True, "seconds": round(total, 1), "minutes": round(total / 60, 2),
            "method": "planned iterations per scale x seconds per iteration measured here "
                      "(the nearest measured size, scaled by pixels; the L-BFGS direction's cost "
                      "per stored pair fitted on the measured iterations, carried to the planned "
                      "history) + that size's set-up; not a measured run",
            "scales": scales}


def summarize_posters(suite: Suite, section: Section) -> None:
    measured = {}
    for row in section.results:
        side = int(row["size"].split("x")[0])
        model = iteration_model(row["iteration_done_at_s"])
        row["iterations_measured"] = len(row["iteration_done_at_s"])
        if model is None:
            continue
        row.update(model)
        measured[side] = model
        gflop = suite.gflop(side, side)
        row.update(fractions(suite, gflop / model["s_per_iteration"] / 1000, row["precision"]))
        device_mib = row.get("memory", {}).get("device_peak_allocated_mib")
        if device_mib is not None:
            row["within_max_memory"] = device_mib <= row["max_memory_gib"] * 1024
    for row in section.results:
        side = int(row["size"].split("x")[0])
        if measured:
            row["time_to_finish"] = finish_time(suite, side, measured)


# --- the run -------------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[Suite, Section], None]] = {
    "ceilings": section_ceilings, "engine": section_engine, "nspt": section_nspt,
    "video": section_video, "posters": section_posters}
SUMMARIES = {"video": summarize_video, "posters": summarize_posters}


def run_section(suite: Suite, section: Section) -> None:
    """Run one section inside its budget; a cut or failed section keeps what it measured."""
    section.status = "running"
    began = time.perf_counter()
    try:
        with time_limit(section.budget_s):
            RUNNERS[section.name](suite, section)
        if section.status == "running":
            section.status = "done"
    except SectionOverrun as overrun:
        section.status = "cut"
        section.note = (f"stopped {overrun} during {section.doing or 'its start'}; "
                        "results hold what it measured")
    except Exception as error:  # one section's failure (out of memory, a missing tool) is not the run's
        section.status = "failed"
        section.note = f"during {section.doing or 'its start'}: {type(error).__name__}: {error}"
    finally:
        synchronize(suite.device)  # a cut section's queued kernels do not count in the next one
        gc.collect()
        if suite.device.type == "cuda":
            torch.cuda.empty_cache()
        section.seconds = time.perf_counter() - began
    if section.name in SUMMARIES:  # derived figures: host arithmetic, outside the budget
        try:
            SUMMARIES[section.name](suite, section)
        except Exception as error:  # the measured figures are kept without them
            section.note = ((section.note + "; ") if section.note else "") + (
                f"derived figures failed: {type(error).__name__}: {error}")


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".part")
    temp.write_text(json.dumps(record, indent=2) + "\n")
    temp.replace(path)


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def table(record: dict) -> list[str]:
    """A short human summary of the JSON record, one line per figure."""
    lines = [f"device: {record['environment']['device_name']} ({record['environment']['device']}), "
             f"torch {record['environment']['torch']}{', SMOKE sizes' if record['smoke'] else ''}"]
    sections = record["sections"]
    for name, entry in sections.items():
        state = f"{entry['status']}, {entry['seconds']:.1f}/{entry['budget_s']:g} s"
        lines.append(f"[{name}: {state}]" + (f" {entry['note']}" if entry.get("note") else ""))
        for row in entry["results"]:
            lines.append("  " + row_line(name, row))
    return lines


def row_line(name: str, row: dict) -> str:
    share = (f", {fmt(row.get('fraction_of_conv_ceiling'), 2)} of conv ceiling"
             if "fraction_of_conv_ceiling" in row else "")
    if name == "ceilings":
        return (f"{row['precision']:5} matmul {fmt(row['matmul_tflops'])} TFLOP/s, conv "
                f"{fmt(row['conv_tflops'])} TFLOP/s, datasheet {fmt(row['datasheet_peak_tflops'])}")
    if name == "engine":
        return (f"{row['size']} {row['optimizer']:5} {row['precision']:5} "
                f"{fmt(row['ms_per_iteration'])} ms/it, {row['iterations']} it in "
                f"{fmt(row['seconds'])} s{share}")
    if name == "nspt":
        # ratio_to_nspt is our time over neural-style-pt's: its inverse is how many times faster
        speedups = ", ".join(f"{tool} {fmt(1 / r if r > 0 else None)}x"
                             for tool, r in row["ratio_to_nspt"].items())
        return (f"{row['size']} px {row['optimizer']:5} neural-style-pt "
                f"{fmt(row['seconds_per_iteration']['neural-style-pt'])} s/it; speed-up over it: {speedups}")
    if name == "video":
        return (f"{row['size']} {row['precision']} {row['iterations']} it/later frame: "
                f"{fmt(row.get('later_frames_per_s'))} frames/s after the first "
                f"({len(row['done_at_s'])} frames; first {fmt(row.get('first_frame_s'))} s){share}")
    if name == "posters":
        finish = row.get("time_to_finish", {})
        memory = row.get("memory", {})
        peak = memory.get("device_peak_allocated_mib", memory.get("host_peak_rss_mib"))
        return (f"{row['size']} ({row['megapixels']} MP) {row['blocks']} blocks: "
                f"{fmt(row.get('s_per_iteration'))} s/it over {row['iterations_measured']} it, "
                f"peak {fmt(peak, 4)} MiB{share}; whole poster ~{fmt(finish.get('minutes'))} min "
                f"(extrapolated)")
    return json.dumps(row)


def parse_budgets(items: list[str], defaults: dict) -> dict:
    budgets = dict(defaults)
    for item in items:
        name, _, seconds = item.partition("=")
        if name not in SECTIONS:
            close = difflib.get_close_matches(name, SECTIONS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"--budget {item}: no section {name!r} (sections: "
                             f"{', '.join(SECTIONS)}){hint}")
        try:
            budgets[name] = float(seconds)
        except ValueError:
            raise ValueError(f"--budget {item}: expected NAME=SECONDS such as posters=120") from None
    return budgets


def parse_sections(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in chosen:
        if name not in SECTIONS:
            close = difflib.get_close_matches(name, SECTIONS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"--sections: no section {name!r} (sections: {', '.join(SECTIONS)}){hint}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_suite.json",
                        help="the JSON file [benchmarks/results/gpu_suite.json]")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, few iterations, small posters, shallow layers: seconds on a CPU")
    parser.add_argument("--nspt", type=Path, default=None,
                        help="a neural-style-pt checkout: also time it side by side")
    parser.add_argument("--weights", default="random", help="VGG19 weights (timing does not depend on them)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, in the suite's order [{','.join(SECTIONS)}]")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch [--smoke: 1, faster than several fighting over "
                             "tiny tensors; else torch's default]")
    parser.add_argument("--budget", action="append", default=[], metavar="NAME=SECONDS",
                        help="a section's time budget (repeatable)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    try:
        sizes = replace(sizes, budgets=parse_budgets(args.budget, sizes.budgets))
        chosen = parse_sections(args.sections)
        device = runtime.resolve_device(args.device)
    except Exception as error:  # ValueError from our parsing, DeviceError from the probe
        print(f"gpu_suite: {error}", file=sys.stderr)
        return 2
    if args.nspt is not None and not (args.nspt / "neural_style.py").is_file():
        print(f"gpu_suite: --nspt {args.nspt}: no neural_style.py there (a neural-style-pt "
              "checkout is expected)", file=sys.stderr)
        return 2
    threads = args.threads or (1 if args.smoke else None)
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    config = StylizeConfig().replace(
        model={"weights": args.weights, "device": str(device),
               "precision": runtime.resolve_precision("auto", device)},
        loss={"content_layers": sizes.content_layers, "style_layers": sizes.style_layers},
        output={"quiet": True})
    network, _ = build_network(config, device)
    suite = Suite(device, sizes, network, config, images.load(STYLE_IMAGE), args.nspt)
    record = {"benchmark": "gpu_suite", "command": ["benchmarks/gpu_suite.py"] + list(argv or sys.argv[1:]),
              "smoke": args.smoke, "environment": environment(device),
              "layers": {"content": sizes.content_layers, "style": sizes.style_layers},
              "weights": args.weights, "default_precision": config.model.precision,
              "budgets_s": {name: sizes.budgets[name] for name in chosen}, "sections": {}}
    chosen_sections = [Section(name, sizes.budgets[name]) for name in SECTIONS if name in chosen]
    print(f"gpu_suite: {len(chosen_sections)} sections within "
          f"{sum(s.budget_s for s in chosen_sections):g} s on {record['environment']['device_name']}",
          file=sys.stderr)
    for section in chosen_sections:
        run_section(suite, section)
        record["sections"][section.name] = section.to_dict()
        record["seconds"] = round(time.perf_counter() - started, 2)
        write_json(args.out, record)  # as each section finishes: a killed run keeps the rest
        print(f"gpu_suite: {section.name} {section.status} in {section.seconds:.1f} s", file=sys.stderr)
    print("\n".join(table(record)))
    print(f"wrote {args.out} ({record['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
