"""``nstvideo stylize IMAGE`` and ``nstvideo texture``: a still (or a texture from noise) through
the coarse-to-fine, block-wise still job, with resume state, recorders and the JSON report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import StylizeConfig
from .blocks import block_cost, warn_costly_blocks
from .nets import init_network_path, init_painting
from .options import (EXIT_INTERRUPTED, EXIT_OK, check_output, default_output, warn_if_random,
                      with_preview)


@with_preview
def run_image_job(args: argparse.Namespace, config: StylizeConfig, texture: bool, *,
                  preview) -> int:
    import torch

    from .. import images
    from .. import runtime
    from ..records.progress import ProgressBar, SaveEvery, loss_summary, write_report
    from ..resume import ResumePoint, StillState, file_digest, job_fingerprint
    from ..records.recorder import job_recorders, write_loss_plot
    from ..still.stylize import build_network, plan, stylize_image

    output = Path(args.output) if args.output else default_output(args.input, args.style)
    preview.output = output
    inputs = list(args.style) + ([] if texture else [args.input])
    init_net = init_network_path(config.schedule.init)  # --init net:STYLE.nstnet
    if config.schedule.init not in ("content", "noise", "blend"):
        inputs.append(init_net or config.schedule.init)
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
    if config.schedule.init not in ("content", "noise", "blend") and not init_net:
        init_image = images.load(config.schedule.init)
    device = runtime.resolve_device(config.model.device)
    height, width = (config.schedule.size, config.schedule.size) if texture else content.shape[-2:]
    steps = plan(config, height, width, device, has_content=not texture)
    if init_net and not config.output.dry_run:
        init_image = init_painting(config.schedule.init, content, config, steps[-1].height,
                                   steps[-1].width)

    warn_costly_blocks(steps, config)
    if config.output.dry_run:
        print_plan(steps, config, device, output)
        return EXIT_OK
    report_fitting(steps, config.output.quiet)

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
                             init=None if init_image is None else file_digest(init_net or config.schedule.init))
    resume = state.load(record)
    if resume is not None and not config.output.quiet:
        print(f"nstvideo: resuming at scale {resume.scale_index + 1}/{len(steps)}, iteration "
              f"{resume.iterations_done + 1}, from {state.path}", file=sys.stderr)
    last: dict[str, Any] = {}
    callbacks = [lambda event: last.__setitem__("event", event), bar, preview]  # first: others may raise
    if config.output.save_every:
        callbacks.append(SaveEvery(config.output.save_every, save_intermediate))
    try:
        with job_recorders(config.record, (steps[-1].height, steps[-1].width), content=content,
                           styles=styles) as recorders:
            result = stylize_image(content, styles, config, network=network, init_image=init_image,
                                   callbacks=callbacks + recorders,
                                   size_hw=(height, width) if texture else None,
                                   on_block=preview.blocks(steps, then=bar.block), resume=resume)
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
                        "lbfgs_history": r.step.lbfgs_history,
                        "planned_peak_mib": round(r.step.peak_mib, 1),
                        "budget_mib": round(r.step.budget_mib, 1),
                        "planned_host_peak_mib": round(r.step.host_peak_mib, 1),
                        "host_budget_mib": round(r.step.host_budget_mib, 1),
                        "notes": list(r.step.notes),
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
    print(f"plan: {len(steps)} scale(s) on {device}, {config.model.model} {config.model.precision}, "
          f"{config.optim.optimizer}; output {output}")
    gpu = device.type == "cuda"
    for step in steps:
        where = "host" if step.canvas_on_host else str(device)
        memory = (f"peak ~{step.peak_mib:.0f} of {step.budget_mib:.0f} MiB on {device}"
                  + (f", ~{step.host_peak_mib:.0f} of {step.host_budget_mib:.0f} MiB on the host"
                     if gpu else ""))
        print(f"  scale {step.index + 1}: {step.width}x{step.height}, {step.iterations} iterations, "
              f"{step.layout}{block_cost(step, config)}, ~{step.activation_mib:.0f} MiB "
              "activations per pass, canvas on "
              f"{where}" + (", content targets on host" if step.content_on_host else "")
              + (f", L-BFGS history {step.lbfgs_history}" if config.optim.optimizer == "lbfgs" else "")
              + f"; {memory}")
        for note in step.notes:
            print(f"    note: {note}")
    print(f"  total: {sum(s.iterations for s in steps)} iterations")


def report_fitting(steps, quiet: bool) -> None:
    """Say what a plan gave up to fit the memory there is, before the run starts."""
    if quiet:
        return
    for step in steps:
        for note in step.notes:
            print(f"nstvideo: note: scale {step.index + 1} ({step.width}x{step.height}): {note}",
                  file=sys.stderr)
