"""What every command shares: options generated from the config dataclasses (their defaults are
never restated here), the checks of numbers and outputs made before any heavy work, and the exit
codes. Every user error is a ``UsageError``; ``main`` turns it into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from ..config import MAX_LONG_TERM, SECTIONS, StylizeConfig
from ..errors import UsageError

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130  # internal errors: Python's own exit 1


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage plus a line and exit
        raise UsageError(f"{message} (see '{self.prog} --help')")


def field_type(field: dataclasses.Field):
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
            group.add_argument(flag, type=field_type(field), default=argparse.SUPPRESS, dest=dest,
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
    from ..network.features import canonical_layers

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
        (0.0 <= config.video.cut_threshold <= 1.0,
         "--cut-threshold must be between 0 and 1 (1: no scene-cut detection)"),
    ]
    for name in ("content_weight", "style_weight", "tv_weight"):
        checks.append((getattr(config.loss, name) >= 0, f"--{name.replace('_', '-')} must be >= 0"))
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    canonical_layers(config.loss.content_layers, config.model.model)
    canonical_layers(config.loss.style_layers, config.model.model)
    from ..records.recorder import validate_record

    validate_record(config.record)
    if config.loss.layer_weights is not None and len(config.loss.layer_weights) != len(config.loss.style_layers):
        raise UsageError(f"--layer-weights has {len(config.loss.layer_weights)} values for "
                         f"{len(config.loss.style_layers)} style layers")


def add_job_options(parser: argparse.ArgumentParser, texture: bool = False) -> None:
    parser.add_argument("--style", action="append", required=texture, metavar="IMAGE",
                        help="style image (repeat to blend several)")
    parser.add_argument("-o", "--output", required=texture, metavar="PATH",
                        help="output image" + ("" if texture else
                                               " [default: INPUT_STYLE.png in the current folder]"))
    skip = {"init", "init_noise", "preserve_colors", "content_layers"} if texture else set()
    for section in SECTIONS.values():
        add_section_options(parser, section, skip=tuple(skip))


def with_preview(job):
    """Run a command's job under the live page its --preview asks for (``records.preview``),
    passed to the job as ``preview=``; the page ends with the job's outcome: its exit code, or the
    exception that ends it. No page for a dry run."""

    @functools.wraps(job)
    def run(args: argparse.Namespace, config: StylizeConfig, *rest, **kwargs) -> int:
        from ..records.preview import live_preview

        with live_preview(config.record, command=args.command,
                          active=not config.output.dry_run) as preview:
            return preview.end(job(args, config, *rest, preview=preview, **kwargs))

    return run


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
    from ..images import output_format

    if image:
        output_format(output)
    refuse_overwriting(output, inputs)


def settle_weights(config: StylizeConfig) -> StylizeConfig:
    """The model and weights the run will use (``weights.settle``), saying so when they are not
    the ones asked for. A dry run only plans, so it downloads nothing."""
    from ..network import weights

    arch, spec, note = weights.settle(config.model.weights, config.model.model,
                                      may_download=not config.output.dry_run)
    if note and not config.output.quiet:
        print(f"nstvideo: note: {note}", file=sys.stderr)
    if (arch, spec) == (config.model.model, config.model.weights):
        return config
    return config.replace(model={"model": arch, "weights": spec})
