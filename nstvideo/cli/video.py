"""The video side of the command line: ``stylize`` with a video input, and ``eval``.

Called from ``cli.main``; the same error contract holds (NstError -> one line, exit 2; Ctrl-C -> 130
with the resume state left in the work folder and no output file).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import cv2

from ..config import StylizeConfig, VideoConfig
from ..errors import OutputError, UsageError
from .nets import init_network_path, load_net, painter
from .options import with_preview
from .scaled import print_plan, run_scaled_video, scale_options, selection_cuts

EXIT_OK, EXIT_INTERRUPTED = 0, 130
VIDEO_OUTPUTS = (".mp4", ".m4v", ".mov")


def is_video_input(path: str) -> bool:
    """A known video suffix, an image-sequence pattern (``f_%04d.png``), or a file that no image
    decoder claims."""
    from ..video.io import looks_like_video
    from ..video.sequence import is_pattern

    if looks_like_video(path) or is_pattern(path) and not Path(path).is_file():
        return True
    return Path(path).is_file() and not cv2.haveImageReader(str(path))


def check_video_output(output: Path, inputs: Sequence[str], bit_depth=None) -> None:
    from ..video.sequence import check_output_pattern, is_pattern
    from .options import refuse_overwriting

    if is_pattern(output):
        check_output_pattern(output, bit_depth)
        if any(Path(item).resolve() == output.resolve() for item in inputs):
            raise UsageError(f"output {output} is the input sequence; choose another -o pattern")
        return
    if output.suffix.lower() not in VIDEO_OUTPUTS:
        raise UsageError(f"cannot write video {output.name}: use one of {', '.join(VIDEO_OUTPUTS)}")
    refuse_overwriting(output, inputs)


def truncation(info) -> str:
    """What a user hears about an input that ends before its header says (the run goes on with
    the frames that decoded)."""
    of = f" of {info.declared_frames}" if info.declared_frames else ""
    return (f"decoded {info.frames}{of} frames: the file is truncated or damaged; the output "
            f"has those {info.frames}, with the sound cut to them")


def frame_budgets(config: StylizeConfig, *, iterations_given: bool) -> StylizeConfig:
    """Without --iterations, a video's frames after the first get their own default (they start
    from the warped previous output) and the first frame twice the stills' per-scale default."""
    from ..config import FRAME_ITERATIONS
    from ..video.frames import first_iterations

    if iterations_given:
        return config
    return config.replace(optim={"iterations": FRAME_ITERATIONS},
                          video={"first_iterations": first_iterations(config)})


def frame_tiling(config: StylizeConfig, height: int, width: int, device):
    """The still planner's decision for one frame: block size (None: whole), canvas placement,
    L-BFGS history and memory, fitted to the memory there is (a frame that cannot fit is refused
    here, before any work). What it gave up to fit is said on stderr."""
    from ..still.stylize import plan

    long_side = max(height, width)
    single = config.replace(schedule={"size": long_side, "min_scale": long_side})
    step = plan(single, height, width, device)[-1]
    if not config.output.quiet:
        for note in step.notes:
            print(f"nstvideo: note: frames ({width}x{height}): {note}", file=sys.stderr)
    return step


def run_frames(args: argparse.Namespace, config: StylizeConfig, *, device, network, layout,
               styles, work, writer, first: int, count: int, done: int, size: tuple[int, int],
               saved: Sequence = (), preview, painter=None) -> tuple[list[dict], list[tuple[str, list]]]:
    """Stylize frames ``done``..``count``-1, each saved and encoded as soon as it is finished.
    ``saved`` are the last finished frames of a resumed run, as many as its warm start reaches
    back to. ``painter`` (--init net:) paints each frame's start. Returns the report's
    per-frame rows and the loss histories for the plot."""
    from .. import images
    from .. import runtime
    from ..records.progress import FrameBar
    from ..records.recorder import job_recorders
    from ..video.frames import Carry, style_targets, stylize_frames
    from ..video.sink import FrameSink
    from ..video.source import read_frame, read_selection

    height, width = size
    per_frame: list[dict] = []
    histories: list[tuple[str, list]] = []
    bar = FrameBar(count, done, disable=config.output.quiet)
    source = read_selection(args.input, first, count, height, width, skip=done, back=len(saved))
    sink = FrameSink(work, writer, threaded=runtime.workers_pay(device))
    try:
        inputs = [frame for _, frame in itertools.islice(source, len(saved))]
        history = [Carry(images.to_array(frame), output) for frame, output in zip(inputs, saved)]
        frames = (frame for _, frame in source)
        # the selection's first frame: the progress video's content panel, and with
        # --preserve-colors the frame whose luminance the styles are matched to
        opening = None
        if not done and (config.record.progress_video or config.schedule.preserve_colors):
            opening = next(frames)
            frames = itertools.chain([opening], frames)
        elif config.schedule.preserve_colors:  # resumed: read back already, or read it again
            opening = inputs[0] if len(inputs) == done else read_frame(args.input, first, height, width)
        grams = style_targets(network, styles, config, max(height, width), colors_of=opening)
        panel = opening if config.record.progress_video and not done else None
        # a with block: on Ctrl-C or an error the progress video is dropped, not finished
        with job_recorders(config.record, (height, width), styles=styles,
                           content=panel) as recorders:
            for item in stylize_frames(frames, grams, config, network=network, total=count,
                                       start_index=done, history=history, callbacks=[bar, preview],
                                       first_frame_callbacks=recorders, layout=layout,
                                       painter=painter):
                sink.put(item.index, item.image)
                losses = item.result.final_losses()
                bar.frame_done(item.result.iterations_run, losses)
                histories.append((f"frame {item.index + 1}", item.result.history))
                per_frame.append({"frame": item.index, "seconds": round(item.seconds, 3),
                                  "flow_seconds": round(item.flow_seconds, 4),
                                  "iterations": item.result.iterations_run,
                                  "reliable_fraction": item.reliable_fraction,
                                  "tile_size": item.tile_size,
                                  "losses": losses})
    except BaseException:
        sink.close(raise_errors=False)  # the frames handed over are saved; the first error wins
        raise
    else:
        sink.close()  # every finished frame is saved before the MP4 is closed
    finally:
        bar.close()
        source.close()
    return per_frame, histories


@with_preview
def run_video_job(args: argparse.Namespace, config: StylizeConfig, *, preview) -> int:
    import torch

    from .. import __version__
    from .. import images
    from .. import runtime
    from ..records.progress import write_report
    from ..records.recorder import loss_plot
    from ..video.io import probe
    from ..video.frames import first_iterations, temporal_distances
    from ..video.sequence import ImageSequence, is_pattern, plain_stem
    from ..video.sink import encoding
    from ..video.source import processing_size, select_range
    from ..video.workdir import WorkDir, fingerprint
    from ..resume import file_digest
    from ..still.stylize import build_network
    from .blocks import block_cost, warn_costly_blocks
    from .options import check_output, default_output, warn_if_random

    sequence_in = is_pattern(args.input) and not Path(args.input).is_file()
    named = plain_stem(args.input) if sequence_in else args.input
    output = Path(args.output) if args.output else default_output(named, args.style, ".mp4")
    preview.output = output
    inputs = [args.input] + list(args.style)
    check_video_output(output, inputs, config.output.bit_depth)
    sequence_out = is_pattern(output)
    if config.video.start_number < 0:
        raise UsageError("--start-number must be 0 or more")
    if config.video.start_number != 1 and not sequence_out:
        raise UsageError("--start-number numbers an image-sequence output such as -o out/f_%05d.png")
    if config.video.fps is not None and not sequence_in:
        raise UsageError(f"--fps is for image-sequence inputs such as f_%04d.png; {args.input} "
                         "keeps its own frame rate")
    if config.record.progress_video:
        check_output(Path(config.record.progress_video), inputs, image=False)
    if config.record.plot:
        check_output(Path(config.record.plot), inputs)
    init_net = init_network_path(config.schedule.init)
    if config.schedule.init not in ("content", "noise", "blend") and not init_net:
        raise UsageError("--init PATH is for still images; video frames take content, noise, "
                         "blend or net:STYLE.nstnet")
    config = frame_budgets(config, iterations_given=hasattr(args, "OptimConfig.iterations"))
    info = ImageSequence.find(args.input).info(config.video.fps) if sequence_in else probe(args.input)
    if info.truncated and not config.output.quiet:
        print(f"nstvideo: warning: {truncation(info)}", file=sys.stderr)
    first, count = select_range(info, config)
    size = config.schedule.size
    if not hasattr(args, "ScheduleConfig.size"):  # no --size: never enlarge a small video
        size = min(size, max(info.width, info.height))
    height, width, changed = processing_size(info.height, info.width, size, even=not sequence_out)
    if changed:
        print(f"nstvideo: note: frames are {width}x{height} (H.264 yuv420p needs even sides)",
              file=sys.stderr)
    device = runtime.resolve_device(config.model.device)
    step = frame_tiling(config, height, width, device)
    warn_costly_blocks([step], config, what="frame")
    styles = [images.load(path) for path in args.style]
    work = WorkDir(config.video.work_dir or output.with_name(
        (f"{plain_stem(output)}{output.suffix}" if sequence_out else output.name) + ".work"))
    if sequence_out and info.has_audio and not config.output.quiet:
        print("nstvideo: note: an image sequence has no sound; the input's audio is not kept",
              file=sys.stderr)
    scale = scale_options(args, config)
    mode = config.video.temporal
    long_term = (" with --long-term " + ",".join(map(str, config.video.long_term))
                 if config.video.long_term else "")

    if config.output.dry_run:
        layout = step.layout + block_cost(step, config) if step.tile_size else "whole frames"
        if step.tile_size:
            layout += (f", canvas on {'the host' if step.canvas_on_host else device}, "
                       f"content targets on {'the host' if step.content_on_host else device}, "
                       f"L-BFGS history {step.lbfgs_history}")
        print(f"plan: {count} frame(s) {first}..{first + count - 1} of {info.frames} at "
              f"{info.describe_rate()}, {width}x{height} on {device}, {layout}; "
              f"--temporal {mode}{long_term}; {first_iterations(config)} iterations for the first frame, "
              f"{config.optim.iterations} after; audio: {info.audio_codec or 'none'}; "
              f"work dir {work.path}; output {output}")
        if scale.workers:
            print_plan(scale, config, count, work.path, lambda: selection_cuts(
                config, args.input, first, count, height, width))
        return EXIT_OK
    if scale.workers:
        return run_scaled_video(args, config, scale, info=info, output=output, work=work,
                                record=fingerprint(args.input, args.style, config, first, count,
                                                   height, width),
                                first=first, count=count, height=height, width=width,
                                sequence_out=sequence_out)

    # the weights are the last input that can be bad: loaded before the work folder exists, so
    # a refused run leaves nothing behind
    runtime.configure_precision(config.model.precision)
    network, weights = build_network(config, device)
    warn_if_random(weights, config.output.quiet)
    paint = None  # --init net: paints each frame's start
    if init_net:
        paint = painter(load_net(init_net, device, config.output.quiet), config, device)
    record = fingerprint(args.input, args.style, config, first, count, height, width)
    if init_net:
        record["init"] = file_digest(init_net)
    done = work.open(record)
    try:  # the folder's lock is held until the run ends, however it ends
        quiet = config.output.quiet
        if done and not quiet:
            print(f"nstvideo: resuming at frame {done + 1}/{count} from {work.path}", file=sys.stderr)
        started = time.perf_counter()
        per_frame: list[dict] = []
        histories: list[tuple[str, list]] = []
        try:
            # the encoder runs for the whole job; the MP4 is kept only if all `count` frames went in
            with encoding(work, output, info, args.input, first, count, height, width,
                          start_number=config.video.start_number,
                          bit_depth=config.output.bit_depth) as writer:
                # a resumed run: the frames saved before come first; the last of them also start
                # the next frames
                saved = collections.deque(maxlen=temporal_distances(config)[-1])
                for index in range(done):
                    saved.append(work.load_frame(index))
                    writer.write(saved[-1])
                if done < count:
                    per_frame, histories = run_frames(
                        args, config, device=device, network=network, layout=step, styles=styles,
                        work=work, writer=writer, first=first, count=count, done=done,
                        size=(height, width), saved=saved, preview=preview, painter=paint)
        except OutputError as error:
            raise OutputError(f"{error}; the finished frames stay in {work.path}: run the same "
                              "command again to write the video") from None
        except KeyboardInterrupt:
            finished = work.frames_done  # every frame handed over is saved by now
            if finished < count:
                print(f"nstvideo: interrupted after {finished}/{count} frames; state kept in "
                      f"{work.path}; run the same command again to resume", file=sys.stderr)
            else:
                print(f"nstvideo: interrupted while encoding; all {count} frames are in {work.path}; "
                      "run the same command again to write the video", file=sys.stderr)
            return EXIT_INTERRUPTED
        if config.record.plot and histories:
            images.write_image(config.record.plot,
                               loss_plot(histories, title=f"losses: {output.name}") / 255.0)
        seconds = time.perf_counter() - started
        if config.output.report:
            report = {"nstvideo": __version__, "command": "stylize", "input": args.input,
                      "styles": args.style, "output": str(output), "settings": config.to_dict(),
                      "device": runtime.describe_device(device), "torch": torch.__version__,
                      "fps": str(info.fps), "variable_frame_rate": info.variable_rate,
                      "frames": count, "first_frame": first,
                      "input_frames": {"decoded": info.frames, "declared": info.declared_frames,
                                       "truncated": info.truncated, "damage": info.damage},
                      "size": [width, height], "resumed_at": done, "seconds": round(seconds, 3),
                      "frames_this_run": per_frame}
            write_report(config.output.report, report, images.atomic_write_bytes)
        if not config.video.keep_work:
            work.remove(count)
        if not quiet:
            print(f"wrote {output} ({count} frames, {width}x{height}, {info.describe_rate()}, "
                  f"audio {'copied' if info.has_audio and not sequence_out else 'none'}, {seconds:.1f} s)",
                  file=sys.stderr)
        return EXIT_OK
    finally:
        work.close()


# --- eval ----------------------------------------------------------------------------------------

def add_eval_parser(commands, add_section_options) -> None:
    from ..config import LossConfig, ModelConfig

    parser = commands.add_parser(
        "eval", help="temporal consistency (warping error) and style loss of a stylized video, JSON")
    parser.add_argument("output", help="the stylized video")
    parser.add_argument("--reference", required=True, metavar="VIDEO",
                        help="the input video it was made from (flow and occlusion come from it); "
        "--start/--end/--max-frames select the same range as for stylize")
    parser.add_argument("--style", action="append", metavar="IMAGE",
                        help="style image(s): also report the style loss of the output frames")
    add_section_options(parser, ModelConfig)
    add_section_options(parser, LossConfig)
    add_section_options(parser, VideoConfig,
                        skip=tuple(f for f in VideoConfig.__dataclass_fields__
                                   if f not in ("flow_preset", "start", "end", "max_frames")))


def run_eval(args: argparse.Namespace, config: StylizeConfig) -> int:
    from ..video.eval import evaluate

    figures = evaluate(args.output, args.reference, args.style or (), config)
    print(json.dumps(figures, indent=2))
    return EXIT_OK
