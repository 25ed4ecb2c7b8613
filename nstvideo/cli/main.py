"""Command line: ``nstvideo stylize|texture|train|layers|sweep|eval|info``; the parser and the dispatch
to one module per command family. Every user error ends as one line on stderr and exit code 2;
Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch  # already loaded by the package (nstvideo/__init__.py)

from .. import __version__
from ..config import ScaleConfig
from ..errors import NstError, UsageError
from . import explore, feedforward, still, train, video
from .options import (EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Parser, add_job_options,
                      add_section_options, config_from_args, settle_weights)


def build_parser() -> Parser:
    parser = Parser(prog="nstvideo", description="Neural style transfer for stills of any size and video.")
    parser.add_argument("--version", action="version", version=f"nstvideo {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    stylize = commands.add_parser("stylize", help="paint an image in the style of one or more images")
    stylize.add_argument("input", help="content image, video, image sequence (f_%%04d.png) or "
                         "folder (every image and video in it, to -o OUTDIR/NAME_STYLE.EXT)")
    stylize.add_argument("--recursive", action="store_true",
                         help="with a folder input, also the images and videos in its subfolders")
    stylize.add_argument("--net", metavar="STYLE.nstnet",
                         help="paint with a trained network (nstvideo train; a pytorch/examples "
                         "fast_neural_style .pth loads too): one pass per image or frame")
    add_job_options(stylize)
    add_section_options(stylize, ScaleConfig)

    texture = commands.add_parser("texture", help="synthesise the style as a texture from noise")
    add_job_options(texture, texture=True)

    train.add_train_parser(commands)
    explore.add_explore_commands(commands)
    video.add_eval_parser(commands, add_section_options)
    commands.add_parser("info", help="device, weights, ffmpeg and versions")
    return parser


def run_info() -> int:
    import cv2
    import imageio_ffmpeg
    import numpy
    import torch
    import torchvision

    from .. import runtime
    from ..network import hed, weights

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
    hed_file = hed.weights_file()
    lines["hed backbone"] = (f"{hed_file} ({hed.DESCRIPTION}; --model vgg16 --weights hed, and the "
                             "fallback when no other weights are found)" if hed_file else
                             f"not installed (a trained VGG16 offline: {hed.INSTALL})")
    try:  # the version only: nothing imports Ray without --workers
        from importlib.metadata import version

        lines["ray (--workers)"] = version("ray")
    except ImportError:
        lines["ray (--workers)"] = "not installed (pip install -e '.[ray]')"
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
        lines["ffmpeg"] = f"{exe} ({imageio_ffmpeg.get_ffmpeg_version()})"
    except RuntimeError as exc:
        lines["ffmpeg"] = f"not found ({exc})"
    width = max(map(len, lines))
    for key, value in lines.items():
        print(f"{key:<{width}}  {value}")
    return EXIT_OK


def run_with_net(args, config) -> int:
    """``stylize INPUT --net STYLE.nstnet``: a folder, a video or sequence, or a still."""
    feedforward.check_net_args(args)
    if Path(args.input).is_dir():
        from .batch import run_batch

        named = argparse.Namespace(**{**vars(args), "style": [args.net]})  # NAME_NETSTEM.EXT
        return run_batch(named, config, run_one=lambda one, cfg, is_video: (
            feedforward.run_net_video(one, cfg) if is_video else feedforward.run_net_still(one, cfg)))
    if args.recursive:
        raise UsageError("--recursive is for a folder input")
    if video.is_video_input(args.input):
        return feedforward.run_net_video(args, config)
    return feedforward.run_net_still(args, config)


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
        from .. import runtime

        device = runtime.resolve_device(config.model.device)
        config = config.replace(model={"precision": runtime.resolve_precision(config.model.precision, device)})
        if args.command == "stylize" and hasattr(args, "ScaleConfig.workers") and (
                args.net or str(config.schedule.init).startswith("net:")):
            raise UsageError("--workers does not take --net or --init net: yet; a network's "
                             "pass is one per frame: run it without --workers")
        if args.command == "stylize" and args.net:
            return run_with_net(args, config)
        if args.command == "stylize" and not args.style:
            raise UsageError("stylize needs --style IMAGE (or --net STYLE.nstnet)")
        if args.command != "eval" or args.style:  # eval without --style needs no network
            config = settle_weights(config)
        if args.command == "eval":
            return video.run_eval(args, config)
        if args.command == "train":
            return train.run_train(args, config)
        if args.command == "stylize" and hasattr(args, "ScaleConfig.workers") and not (
                video.is_video_input(args.input) or Path(args.input).is_dir()):
            raise UsageError("--workers spreads a video's frames or a folder's files; stylize a "
                             "single still image without it")
        if args.command == "stylize" and Path(args.input).is_dir():
            from .batch import run_batch

            spread, session = None, None
            if hasattr(args, "ScaleConfig.workers"):
                from .scaled import batch_spreader, one_cluster

                # one Ray for the whole folder: its images, then each of its videos
                spread, session = batch_spreader(args, config), lambda: one_cluster(args, config)
            return run_batch(args, config, run_one=lambda one, cfg, is_video: (
                video.run_video_job(one, cfg) if is_video
                else still.run_image_job(one, cfg, texture=False)), spread=spread,
                session=session)
        if args.command == "stylize" and args.recursive:
            raise UsageError("--recursive is for a folder input")
        if args.command == "stylize" and video.is_video_input(args.input):
            return video.run_video_job(args, config)
        if args.command in explore.COMMANDS:
            return explore.run(args, config)
        return still.run_image_job(args, config, texture=args.command == "texture")
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
