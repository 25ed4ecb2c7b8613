"""``nstvideo stylize INPUT --net STYLE.nstnet``: one pass of a trained network per image or video
frame (a still in overlapping tiles when it does not fit), and ``--init net:STYLE.nstnet``: the
optimization starts from the network's painting instead of the content.

A video goes through the same frame accounting as the optimization's video job (``cli.video``):
the selected range, the processing size, the work folder with its resume state, the encoder at
the source's exact rate or frame times, and the source's audio for the span.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from ..config import StylizeConfig
from ..errors import UsageError
from .nets import load_net, painter
from .options import EXIT_INTERRUPTED, EXIT_OK, check_output, default_output

def net_size(args: argparse.Namespace, config: StylizeConfig) -> Optional[int]:
    """--size when given; without it a network paints at the input's own size."""
    return config.schedule.size if hasattr(args, "ScheduleConfig.size") else None


def check_net_args(args: argparse.Namespace) -> None:
    if args.style:
        raise UsageError("--net paints the style it was trained on; drop --style (or drop --net "
                         "to optimize for the style images)")
    if hasattr(args, "ScheduleConfig.init"):
        raise UsageError("--init is for the optimization; with --net every pixel comes from the "
                         "network (--init net:FILE starts an optimization from it)")


def run_net_still(args: argparse.Namespace, config: StylizeConfig) -> int:
    from .. import images, runtime
    from ..still.stylize import resize_long_side

    output = Path(args.output) if args.output else default_output(args.input, [args.net])
    check_output(output, [args.input, args.net])
    if config.output.bit_depth:
        images.check_bit_depth(images.output_format(output), config.output.bit_depth)
    content = images.load(args.input)
    size = net_size(args, config)
    if size:
        content = resize_long_side(content, size)
    device = runtime.resolve_device(config.model.device)
    net = load_net(args.net, device, config.output.quiet)
    if config.output.dry_run:
        print(f"plan: {content.shape[-1]}x{content.shape[-2]} through {args.net} on {device}; "
              f"output {output}")
        return EXIT_OK
    started = time.perf_counter()
    painted = painter(net, config, device)(content)
    images.write_image(output, painted, config.output.bit_depth)
    if not config.output.quiet:
        print(f"wrote {output} ({painted.shape[-1]}x{painted.shape[-2]}, "
              f"{time.perf_counter() - started:.2f} s)", file=sys.stderr)
    return EXIT_OK


def run_net_video(args: argparse.Namespace, config: StylizeConfig) -> int:
    import itertools

    from .. import runtime
    from ..records.progress import FrameBar
    from ..video.frames import quantise
    from ..video.io import probe
    from ..video.sequence import ImageSequence, is_pattern, plain_stem
    from ..video.sink import FrameSink, encoding
    from ..video.source import processing_size, read_selection, select_range
    from ..video.workdir import WorkDir, fingerprint
    from .video import check_video_output, truncation

    sequence_in = is_pattern(args.input) and not Path(args.input).is_file()
    named = plain_stem(args.input) if sequence_in else args.input
    output = Path(args.output) if args.output else default_output(named, [args.net], ".mp4")
    check_video_output(output, [args.input, args.net], config.output.bit_depth)
    sequence_out = is_pattern(output)
    if config.video.fps is not None and not sequence_in:
        raise UsageError(f"--fps is for image-sequence inputs such as f_%04d.png; {args.input} "
                         "keeps its own frame rate")
    info = ImageSequence.find(args.input).info(config.video.fps) if sequence_in else probe(args.input)
    quiet = config.output.quiet
    if info.truncated and not quiet:
        print(f"nstvideo: warning: {truncation(info)}", file=sys.stderr)
    first, count = select_range(info, config)
    size = net_size(args, config) or max(info.width, info.height)
    height, width, changed = processing_size(info.height, info.width, size, even=not sequence_out)
    if changed and not quiet:
        print(f"nstvideo: note: frames are {width}x{height} (H.264 yuv420p needs even sides)",
              file=sys.stderr)
    device = runtime.resolve_device(config.model.device)
    work = WorkDir(config.video.work_dir or output.with_name(
        (f"{plain_stem(output)}{output.suffix}" if sequence_out else output.name) + ".work"))
    if config.output.dry_run:
        print(f"plan: {count} frame(s) {first}..{first + count - 1} of {info.frames} at "
              f"{info.describe_rate()}, {width}x{height} through {args.net} on {device}; audio: "
              f"{info.audio_codec or 'none'}; work dir {work.path}; output {output}")
        return EXIT_OK
    paint = painter(load_net(args.net, device, quiet), config, device)  # before the folder exists
    record = fingerprint(args.input, [args.net], config, first, count, height, width)
    done = work.open(record)
    try:
        if done and not quiet:
            print(f"nstvideo: resuming at frame {done + 1}/{count} from {work.path}", file=sys.stderr)
        started = time.perf_counter()
        bar = FrameBar(count, done, disable=quiet)
        try:
            with encoding(work, output, info, args.input, first, count, height, width,
                          start_number=config.video.start_number,
                          bit_depth=config.output.bit_depth) as writer:
                for index in range(done):
                    writer.write(work.load_frame(index))
                source = read_selection(args.input, first, count, height, width, skip=done, back=0)
                sink = FrameSink(work, writer, threaded=runtime.workers_pay(device))
                try:
                    for index, frame in itertools.islice(source, count - done):
                        sink.put(index, quantise(paint(frame)))
                        bar.frame_done(1, {})
                except BaseException:
                    sink.close(raise_errors=False)
                    raise
                else:
                    sink.close()
                finally:
                    source.close()
        except KeyboardInterrupt:
            bar.close()
            print(f"nstvideo: interrupted after {work.frames_done}/{count} frames; state kept in "
                  f"{work.path}; run the same command again to resume", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            bar.close()
        if not config.video.keep_work:
            work.remove(count)
        if not quiet:
            seconds = time.perf_counter() - started
            print(f"wrote {output} ({count} frames, {width}x{height}, {info.describe_rate()}, "
                  f"audio {'copied' if info.has_audio and not sequence_out else 'none'}, "
                  f"{seconds:.1f} s, {(count - done) / max(seconds, 1e-9):.1f} frames/s)",
                  file=sys.stderr)
        return EXIT_OK
    finally:
        work.close()

