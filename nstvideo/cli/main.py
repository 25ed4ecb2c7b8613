"""Command line: ``nstvideo stylize|texture|eval|info`` (video commands in cli_video.py).

Options are generated from the config dataclasses (their defaults are never restated here).
Every user error ends as one line on stderr and exit code 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch  # already loaded by the package (nstvideo/__init__.py)

from . import __version__
from .config import MAX_LONG_TERM, SECTIONS, StylizeConfig
from .errors import NstError, UsageError

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130  # internal errors: Python's own exit 1


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage plus a line and exit
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _field_type(field: dataclasses.Field):
    parse = field.metadata.get("parse")
    if parse is not None:
        return parse
    annotation = str(field.type)
    if "int" in annotation:
        return int
    if "float" in annotation:
        return float
    return str


def add_section_options(parser: argparse.ArgumentParser, section: type, skip: Sequence[str] = ()) -> None:
    group = parser.add_argument_group(section.__name__.replace("Config", "").lower())
    for field in dataclasses.fields(section):
        meta = field.metadata
        if not meta.get("cli", True) or field.name in skip:
            continue
        flag = meta.get("flag") or "--" + field.name.replace("_", "-")
        default = field.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = meta["help"].replace("%", "%%")  # argparse formats help with %
        if meta.get("choices"):
            help_text += f" ({'|'.join(meta['choices'])})"
        if default is not None and default is not False:
            help_text += f" [default: {shown}]"
        dest = f"{section.__name__}.{field.name}"
        if field.type in ("bool", bool):
            group.add_argument(flag, action="store_true", default=argparse.SUPPRESS, dest=dest,
                               help=help_text)
        else:
            choices = meta.get("choices")
            metavar = meta.get("metavar") or ("{" + ",".join(choices) + "}" if choices else field.name.upper())
            group.add_argument(flag, type=_field_type(field), default=argparse.SUPPRESS, dest=dest,
                               help=help_text, metavar=metavar, nargs=meta.get("nargs"))


def _check_choice(value: str, choices: Sequence[str], flag: str) -> None:
    if value in choices:
        return
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise UsageError(f"{flag} {value!r} is not one of {', '.join(choices)}{hint}")


def section_values(args: argparse.Namespace, section: type) -> dict[str, Any]:
    """The fields of one config section that were given on the command line, choices checked."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(section):
        key = f"{section.__name__}.{field.name}"
        if hasattr(args, key):
            value = getattr(args, key)
            choices = field.metadata.get("choices")
            if choices:
                _check_choice(value, choices, "--" + field.name.replace("_", "-"))
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return values


def config_from_args(args: argparse.Namespace, base: StylizeConfig = StylizeConfig()) -> StylizeConfig:
    changes = {name: section_values(args, section) for name, section in SECTIONS.items()}
    config = base.replace(**{name: values for name, values in changes.items() if values})
    validate(config)
    return config


def validate(config: StylizeConfig) -> None:
    """Numbers that cannot work, caught before any heavy work starts."""
    from .features import canonical_layers

    checks = [
        (config.schedule.size >= 16, "--size must be at least 16 px"),
        (config.schedule.min_scale >= 16, "--min-scale must be at least 16 px"),
        (config.optim.iterations >= 1, "--iterations must be at least 1"),
        (config.optim.lbfgs_history >= 1, "--lbfgs-history must be at least 1"),
        (config.optim.lr is None or config.optim.lr > 0, "--lr must be positive"),
        (0.0 <= config.schedule.init_noise <= 1.0, "--init-noise must be between 0 and 1"),
        (config.loss.style_scale > 0, "--style-scale must be positive"),
        (config.output.save_every >= 0, "--save-every must be 0 or more"),
        (config.schedule.tile_size is None or config.schedule.tile_size >= 16,
         "--tile-size must be at least 16 px"),
        (config.output.bit_depth in (None, 8, 16), "--bit-depth must be 8 or 16"),
        (config.model.max_memory is None or config.model.max_memory > 0,
         "--max-memory must be positive (GiB)"),
        (config.video.temporal_weight >= 0, "--temporal-weight must be >= 0"),
        (config.video.first_iterations is None or config.video.first_iterations >= 1,
         "--first-iterations must be at least 1"),
        (config.video.max_frames is None or config.video.max_frames >= 1,
         "--max-frames must be at least 1"),
        (all(2 <= j <= MAX_LONG_TERM for j in config.video.long_term),
         f"--long-term distances must be from 2 to {MAX_LONG_TERM} frames (1, the previous "
         "frame, is always used)"),
        (not config.video.long_term or config.video.temporal == "flow",
         "--long-term needs --temporal flow"),
    ]
    for name in ("content_weight", "style_weight", "tv_weight"):
        checks.append((getattr(config.loss, name) >= 0, f"--{name.replace('_', '-')} must be >= 0"))
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    canonical_layers(config.loss.content_layers, config.model.model)
    canonical_layers(config.loss.style_layers, config.model.model)
    from .recorder import validate_record

    validate_record(config.record)
    if config.loss.layer_weights is not None and len(config.loss.layer_weights) != len(config.loss.style_layers):
        raise UsageError(f"--layer-weights has {len(config.loss.layer_weights)} values for "
                         f"{len(config.loss.style_layers)} style layers")


def build_parser() -> Parser:
    parser = Parser(prog="nstvideo", description="Neural style transfer for stills of any size and video.")
    parser.add_argument("--version", action="version", version=f"nstvideo {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    stylize = commands.add_parser("stylize", help="paint an image in the style of one or more images")
    stylize.add_argument("input", help="content image or video")
    _add_job_options(stylize)

    texture = commands.add_parser("texture", help="synthesise the style as a texture from noise")
    _add_job_options(texture, texture=True)

    from .cli_explore import add_explore_commands

    add_explore_commands(commands)

    from .cli_video import add_eval_parser

    add_eval_parser(commands, add_section_options)
    commands.add_parser("info", help="device, weights, ffmpeg and versions")
    return parser


def _add_job_options(parser: argparse.ArgumentParser, texture: bool = False) -> None:
    parser.add_argument("--style", action="append", required=True, metavar="IMAGE",
                        help="style image (repeat to blend several)")
    parser.add_argument("-o", "--output", required=texture, metavar="PATH",
                        help="output image" + ("" if texture else
                                               " [default: INPUT_STYLE.png in the current folder]"))
    skip = {"init", "init_noise", "preserve_colors", "content_layers"} if texture else set()
    for section in SECTIONS.values():
        add_section_options(parser, section, skip=tuple(skip))


def warn_if_random(source, quiet: bool) -> None:
    """Say loudly that an untrained network paints textures, not art."""
    if source.is_random and not quiet:
        print("nstvideo: WARNING: --weights random: an untrained network; results are textures "
              "without semantic content. Use real VGG weights for art.", file=sys.stderr)


def default_output(input_path: str, styles: Sequence[str], suffix: str = ".png") -> Path:
    """INPUT_STYLE.png (or another suffix) in the current folder: never the input itself."""
    names = "_".join(Path(s).stem for s in styles)
    return Path.cwd() / f"{Path(input_path).stem}_{names}{suffix}"


def refuse_overwriting(output: Path, inputs: Sequence[str]) -> None:
    """An output may be neither a folder nor any of the inputs (by path or by inode)."""
    if output.is_dir():
        raise UsageError(f"output {output} is a folder; give a file name such as {output}/out{output.suffix or '.png'}")
    for item in inputs:
        same_path = Path(item).resolve() == output.resolve()
        if same_path or output.exists() and Path(item).exists() and os.path.samefile(item, output):
            raise UsageError(f"output {output} is one of the inputs; choose another -o path")


def check_output(output: Path, inputs: Sequence[str], image: bool = True) -> None:
    from .images import output_format

    if image:
        output_format(output)
    refuse_overwriting(output, inputs)


def run_image_job(args: argparse.Namespace, config: StylizeConfig, texture: bool) -> int:
    import torch

    from . import images, runtime
    from .progress import ProgressBar, SaveEvery, loss_summary, write_report
    from .resume import ResumePoint, StillState, file_digest, job_fingerprint
    from .recorder import job_recorders, write_loss_plot
    from .stylize import build_network, plan, stylize_image

    output = Path(args.output) if args.output else default_output(args.input, args.style)
    inputs = list(args.style) + ([] if texture else [args.input])
    if config.schedule.init not in ("content", "noise", "blend"):
        inputs.append(config.schedule.init)
    check_output(output, inputs)
    if config.record.progress_video:
        check_output(Path(config.record.progress_video), inputs, image=False)
    if config.record.plot:
        check_output(Path(config.record.plot), inputs)
    if config.output.bit_depth:
        images.check_bit_depth(images.output_format(output), config.output.bit_depth)
    if texture and config.schedule.init != "noise":
        config = config.replace(schedule={"init": "noise"}, loss={"content_weight": 0.0})

    content = None if texture else images.load(args.input)
    styles = [images.load(path) for path in args.style]
    init_image = None
    if config.schedule.init not in ("content", "noise", "blend"):
        init_image = images.load(config.schedule.init)
    device = runtime.resolve_device(config.model.device)
    height, width = (config.schedule.size, config.schedule.size) if texture else content.shape[-2:]
    steps = plan(config, height, width, device, has_content=not texture)

    if config.output.dry_run:
        print_plan(steps, config, device, output)
        return EXIT_OK

    runtime.configure_precision(config.model.precision)
    network, source = build_network(config, device)
    warn_if_random(source, quiet=False)
    runtime.reset_peak_memory(device)
    started = time.perf_counter()
    bar = ProgressBar(sum(s.iterations for s in steps), disable=config.output.quiet)

    def save_intermediate(event) -> None:
        path = output.with_name(f"{output.stem}_s{event.stage.index + 1}_i{event.iteration:05d}{output.suffix}")
        images.write_image(path, event.canvas, config.output.bit_depth)

    state = StillState(output)
    record = job_fingerprint(None if texture else args.input, args.style, config,
                             init=None if init_image is None else file_digest(config.schedule.init))
    resume = state.load(record)
    if resume is not None and not config.output.quiet:
        print(f"nstvideo: resuming at scale {resume.scale_index + 1}/{len(steps)}, iteration "
              f"{resume.iterations_done + 1}, from {state.path}", file=sys.stderr)
    last: dict[str, Any] = {}
    callbacks = [lambda event: last.__setitem__("event", event), bar]  # first: others may raise
    if config.output.save_every:
        callbacks.append(SaveEvery(config.output.save_every, save_intermediate))
    try:
        with job_recorders(config.record, (steps[-1].height, steps[-1].width), content=content,
                           styles=styles) as recorders:
            result = stylize_image(content, styles, config, network=network, init_image=init_image,
                                   callbacks=callbacks + recorders,
                                   size_hw=(height, width) if texture else None,
                                   on_block=bar.block, resume=resume)
    except KeyboardInterrupt:
        bar.close()
        event = last.get("event")
        if event is None:
            raise
        earlier = resume.iterations_done if resume and resume.scale_index == event.stage.index else 0
        state.save(record, ResumePoint(event.stage.index, earlier + event.iteration,
                                       event.canvas.detach().cpu()))
        print(f"nstvideo: interrupted at scale {event.stage.index + 1}, iteration "
              f"{earlier + event.iteration}; state saved in {state.path}; run the same command "
              "again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    images.write_image(output, result.image, config.output.bit_depth)
    state.remove()
    if config.record.plot:
        write_loss_plot(config.record.plot, result, title=f"losses: {output.name}")
    seconds = time.perf_counter() - started
    if config.output.report:
        report = {
            "nstvideo": __version__, "command": "texture" if texture else "stylize",
            "input": None if texture else args.input, "styles": args.style, "output": str(output),
            "settings": config.to_dict(), "weights": source.describe(),
            "device": runtime.describe_device(device), "torch": torch.__version__,
            "seconds": round(seconds, 3), "memory": runtime.peak_memory(device),
            "scales": [{"width": r.step.width, "height": r.step.height,
                        "tile_size": r.step.tile_size, "blocks": r.step.blocks,
                        "canvas_on_host": r.step.canvas_on_host,
                        "content_on_host": r.step.content_on_host,
                        "iterations_planned": r.step.iterations,
                        "iterations_run": r.result.iterations_run,
                        "stopped_early": r.result.stopped_early,
                        "seconds": round(r.result.seconds, 3),
                        "ms_per_iteration": round(1000 * r.result.seconds / max(1, r.result.iterations_run), 2),
                        "losses": loss_summary(r.result.history)} for r in result.scales],
        }
        write_report(config.output.report, report, images.atomic_write_bytes)
    if not config.output.quiet:
        print(f"wrote {output} ({result.image.shape[-1]}x{result.image.shape[-2]}, {seconds:.1f} s)",
              file=sys.stderr)
    return EXIT_OK


def print_plan(steps, config: StylizeConfig, device, output: Path) -> None:
    from .schedule import canvas_state_bytes

    print(f"plan: {len(steps)} scale(s) on {device}, {config.model.model} {config.model.precision}, "
          f"{config.optim.optimizer}; output {output}")
    for step in steps:
        history = (step.lbfgs_history or 0) if config.optim.optimizer == "lbfgs" else 0
        canvas_mib = canvas_state_bytes(step.height, step.width, history) / (1 << 20)
        where = "host" if step.canvas_on_host else str(device)
        print(f"  scale {step.index + 1}: {step.width}x{step.height}, {step.iterations} iterations, "
              f"{step.layout}, ~{step.activation_mib:.0f} MiB activations per pass, canvas+optimizer "
              f"~{canvas_mib:.0f} MiB on {where}"
              + (", content targets on host" if step.content_on_host else "")
              + (f", L-BFGS history {step.lbfgs_history}" if config.optim.optimizer == "lbfgs" else ""))
    print(f"  total: {sum(s.iterations for s in steps)} iterations")


def run_info() -> int:
    import cv2
    import imageio_ffmpeg
    import numpy
    import torch
    import torchvision

    from . import runtime, weights

    device = runtime.resolve_device("auto")
    lines = {
        "nstvideo": __version__, "python": platform.python_version(),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "opencv": cv2.__version__, "numpy": numpy.__version__,
        "device": f"{device} ({runtime.describe_device(device)})",
        "cuda": torch.version.cuda if torch.cuda.is_available() else "not available",
        "bf16 on this device": "yes" if (torch.cuda.is_bf16_supported() if device.type == "cuda"
                                         else runtime.cpu_has_native_bf16()) else "no",
    }
    for arch in ("vgg19", "vgg16"):
        try:
            found = weights.locate(None, arch)
        except NstError as exc:
            found_text = f"error: {exc}"
        else:
            found_text = found.describe() if found else (
                f"not found: place {weights.hub_cache_path(arch).name} in "
                f"{weights.hub_cache_path(arch).parent}/, set ${weights.ENV_VAR}, or go online")
        lines[f"{arch} weights"] = found_text
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
        lines["ffmpeg"] = f"{exe} ({imageio_ffmpeg.get_ffmpeg_version()})"
    except RuntimeError as exc:
        lines["ffmpeg"] = f"not found ({exc})"
    width = max(map(len, lines))
    for key, value in lines.items():
        print(f"{key:<{width}}  {value}")
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        if args.command == "info":
            return run_info()
        config = config_from_args(args)
        from . import runtime

        device = runtime.resolve_device(config.model.device)
        config = config.replace(model={"precision": runtime.resolve_precision(config.model.precision, device)})
        from . import cli_video

        if args.command == "eval":
            return cli_video.run_eval(args, config)
        if args.command == "stylize" and cli_video.is_video_input(args.input):
            return cli_video.run_video_job(args, config)

        from . import cli_explore

        if args.command in cli_explore.COMMANDS:
            return cli_explore.run(args, config)
        return run_image_job(args, config, texture=args.command == "texture")
    except NstError as exc:
        print(f"nstvideo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (MemoryError, torch.OutOfMemoryError) as exc:  # where no block shrinking applies
        where = "device" if isinstance(exc, torch.OutOfMemoryError) else "host"
        print(f"nstvideo: error: out of {where} memory; plan within less with --max-memory GIB, "
              "or lower --size or --tile-size", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("nstvideo: interrupted; no output written", file=sys.stderr)
        return EXIT_INTERRUPTED
