"""Command line for the exploration jobs: ``nstvideo layers`` and ``nstvideo sweep``.

``cli.main`` calls ``add_explore_commands`` and ``run``; options come from the
config dataclasses as everywhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .options import (EXIT_OK, field_type, add_section_options, section_values, validate,
                      with_preview)
from ..config import SECTIONS, LayersConfig, ScaleConfig, StylizeConfig, SweepConfig
from ..errors import UsageError

COMMANDS = ("layers", "sweep")
RECORD_FLAGS = ("progress_video", "plot")
LAYERS_SKIP = ("init", "init_noise", "preserve_colors", "content_layers", "content_weight",
               "style_layers", "layer_weights", "report", "dry_run", *RECORD_FLAGS)
# the video-only options of --workers (segments and their joins)
SCALE_SKIP = ("window", "join_passes", "join_iterations")
SWEEP_SKIP = ("report", "dry_run", "progress_every", "progress_layout", "progress_size",
              *RECORD_FLAGS)


def add_explore_commands(commands) -> None:
    layers = commands.add_parser(
        "layers", help="one texture per style layer, each with a convergence MP4, plus a grid")
    _add_common(layers, "folder for layer_<name>.png/.mp4 and layers_grid.png")
    add_section_options(layers, LayersConfig)
    for section in SECTIONS.values():
        add_section_options(layers, section, skip=LAYERS_SKIP)
    add_section_options(layers, ScaleConfig, skip=SCALE_SKIP)

    sweep = commands.add_parser(
        "sweep", help="stylize with many settings: renders, index.json and a contact sheet")
    sweep.add_argument("input", help="content image")
    _add_common(sweep, "folder for run_NNN.png, index.json and contact_sheet.png")
    add_section_options(sweep, SweepConfig)
    for section in SECTIONS.values():
        add_section_options(sweep, section, skip=SWEEP_SKIP)
    add_section_options(sweep, ScaleConfig, skip=SCALE_SKIP)


def _add_common(parser: argparse.ArgumentParser, output_help: str) -> None:
    parser.add_argument("--style", action="append", required=True, metavar="IMAGE",
                        help="style image (repeat to blend several)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help=output_help)


def section_from_args(args: argparse.Namespace, section: type):
    return section(**section_values(args, section))


def _find_field(name: str) -> tuple[str, dataclasses.Field]:
    wanted_section, _, wanted_field = name.rpartition(".")
    matches = [(section_name, item) for section_name, section in SECTIONS.items()
               for item in dataclasses.fields(section)
               if item.name == wanted_field and wanted_section in ("", section_name)]
    if not matches:
        import difflib

        known = [item.name for section in SECTIONS.values() for item in dataclasses.fields(section)]
        close = difflib.get_close_matches(wanted_field, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UsageError(f"--grid: no setting named {name!r}{hint}")
    return matches[0]


def parse_grid(items: Sequence[str]) -> list[dict[str, dict[str, Any]]]:
    """["style_weight=100,1000", "tv_weight=0,10"] -> every combination, as section changes.

    Values are parsed like the matching flag; inside a list-valued setting (style_layers) the
    items of one value are joined with '+'.
    """
    axes = []
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not values.strip():
            raise UsageError(f"--grid {item!r}: expected FIELD=V1,V2 such as style_weight=100,1000")
        section, grid_field = _find_field(name.strip().replace("-", "_"))
        parse = field_type(grid_field)
        try:
            parsed = [parse(value.strip().replace("+", ",")) for value in values.split(",")]
        except ValueError:
            raise UsageError(f"--grid {item!r}: cannot read the values as {parse.__name__}") from None
        parsed = [tuple(v) if isinstance(v, list) else v for v in parsed]
        axes.append([(section, grid_field.name, value) for value in parsed])
    runs = []
    for combination in itertools.product(*axes):
        changes: dict[str, dict[str, Any]] = {}
        for section, name, value in combination:
            changes.setdefault(section, {})[name] = value
        if "style_layers" in changes.get("loss", {}):
            changes["loss"].setdefault("layer_weights", None)
        runs.append(changes)
    return runs


def _output_dir(path: str) -> Path:
    out_dir = Path(path)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {out_dir} is a file; give a folder")
    return out_dir


@with_preview
def run(args: argparse.Namespace, config: StylizeConfig, *, preview) -> int:
    from .. import images
    from .. import runtime
    from ..records.explore import random_walk, render_layers, run_sweep
    from ..network.features import canonical_layers
    from ..records.progress import ProgressBar
    from ..still.stylize import plan

    from .scaled import scale_options

    out_dir = _output_dir(args.output)
    preview.output = out_dir
    scale = scale_options(args, config)  # --workers: Ray must import
    if args.command == "layers":
        layers = canonical_layers(section_from_args(args, LayersConfig).layers, config.model.model)
    else:
        sweep = section_from_args(args, SweepConfig)
        runs = (parse_grid(sweep.grid) if sweep.grid
                else random_walk(config, sweep.runs, config.schedule.seed))
        for changes in runs:  # every run checked before the first one starts
            validate(config.replace(**changes))
    styles = [images.load(path) for path in args.style]
    content = images.load(args.input) if args.command == "sweep" else None
    device = runtime.resolve_device(config.model.device)
    runtime.configure_precision(config.model.precision)
    if config.model.weights == "random" and not scale.workers:  # the workers' own say it
        from .options import warn_if_random
        from ..network.weights import WeightsSource

        warn_if_random(WeightsSource("random", None), quiet=False)
    quiet = config.output.quiet
    started = time.perf_counter()

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr)

    if scale.workers:
        return _run_spread(args, config, scale, out_dir, layers if args.command == "layers"
                           else runs, started)
    if args.command == "layers":
        per_layer = sum(s.iterations for s in plan(config, config.schedule.size, config.schedule.size))
        bar = ProgressBar(per_layer * len(layers), disable=quiet)

        def rendered(render) -> None:
            if not quiet:
                bar.bar.write(f"{render.layer}: {render.image_path.name}, {render.frames} frames, "
                              f"{render.seconds:.1f} s")

        try:
            renders = render_layers(styles, config, layers, out_dir, callbacks=[bar, preview],
                                    device=device, on_done=rendered)
        finally:
            bar.close()
        say(f"wrote {len(renders)} layer renders and {out_dir / 'layers_grid.png'} "
            f"({time.perf_counter() - started:.1f} s)")
        return EXIT_OK

    planned = [sum(s.iterations for s in plan(config.replace(**changes), *content.shape[-2:]))
               for changes in runs]
    bar = ProgressBar(sum(planned), disable=quiet)

    def done(name: str, skipped: bool) -> None:
        if skipped:
            bar.bar.total = max(bar.bar.n, bar.bar.total - planned[int(name.split("_")[-1])])
        if not quiet:
            bar.bar.write(f"{name}: {'skipped (done before)' if skipped else 'done'}")

    meta = {"input": args.input, "styles": list(args.style)}
    try:
        summary = run_sweep(content, styles, config, runs, out_dir, meta=meta, callbacks=[bar, preview],
                            on_done=done, device=device)
    finally:
        bar.close()
    say(f"sweep: {len(summary.ran)} run(s) done, {len(summary.skipped)} skipped; wrote "
        f"{summary.index_path} and {summary.sheet_path} ({time.perf_counter() - started:.1f} s)")
    return EXIT_OK


def _run_spread(args: argparse.Namespace, config: StylizeConfig, scale: ScaleConfig,
                out_dir: Path, items: Sequence, started: float) -> int:
    """``layers`` or ``sweep`` with --workers: each layer or run on the next idle worker, its
    files sent back as bytes and written here; the grid, the index and the contact sheet as
    without workers. A bar over the layers or runs (the workers' iterations stay on them)."""
    from tqdm import tqdm

    from .. import images
    from ..records.explore import (LayerRender, LayerWorker, RunResult, SweepFolder,
                                   layer_paths, sweep_layers, write_layers_grid)
    from ..scale.stills import LAYER, RUN, StillJob
    from .scaled import job_files, spread_stills

    styles, quiet = tuple(args.style), config.output.quiet
    paths = job_files(config, *styles)
    if args.command == "layers":
        out_dir.mkdir(parents=True, exist_ok=True)
        layers = tuple(items)
        if not layers:
            raise UsageError("--layers needs at least one layer name")
        jobs = [StillJob(layer, LAYER, None, styles, config, layers, layer=layer)
                for layer in layers]
        renders: dict[str, LayerRender] = {}
        bar = tqdm(total=len(jobs), unit="layer", desc="layers", disable=quiet)

        def layer_done(done) -> None:
            image_path, video_path = layer_paths(out_dir, done.key)
            images.atomic_write_bytes(video_path, done.video)
            images.atomic_write_bytes(image_path, done.data)
            renders[done.key] = LayerRender(done.key, image_path, video_path, done.frames,
                                            done.losses.get("style", float("nan")), done.seconds)
            bar.write(f"{done.key}: {image_path.name}, {done.frames} frames, {done.seconds:.1f} s "
                      f"on {done.node}")
            bar.update(1)

        try:
            spread_stills(scale, config, jobs, paths, layer_done, body=LayerWorker)
        finally:
            bar.close()
        write_layers_grid(out_dir / "layers_grid.png", [renders[layer] for layer in layers])
        if not quiet:
            print(f"wrote {len(renders)} layer renders and {out_dir / 'layers_grid.png'} "
                  f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
        return EXIT_OK

    folder = SweepFolder(out_dir, config, items, {"input": args.input, "styles": list(styles)})
    layers = sweep_layers(folder.configs)
    jobs = [StillJob(str(number), RUN, args.input, styles, run_config, layers)
            for number, _, run_config in folder.todo]
    bar = tqdm(total=len(folder.runs), initial=len(folder.skipped), unit="run", desc="runs",
               disable=quiet)

    def run_done(done) -> None:
        number = int(done.key)
        images.atomic_write_bytes(folder.image_path(number), done.data)
        folder.record(number, RunResult(done.losses, done.iterations, done.seconds))
        bar.write(f"{folder.name(number)}: done on {done.node} ({done.seconds:.1f} s)")
        bar.update(1)

    try:
        if jobs:
            spread_stills(scale, config, jobs, [args.input, *paths], run_done)
    finally:
        bar.close()
    summary = folder.finish()
    if not quiet:
        print(f"sweep: {len(summary.ran)} run(s) done, {len(summary.skipped)} skipped; wrote "
              f"{summary.index_path} and {summary.sheet_path} "
              f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return EXIT_OK
