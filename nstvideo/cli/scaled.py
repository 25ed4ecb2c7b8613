"""``stylize VIDEO --workers N``: the video's frames spread over Ray workers (``scale``), into the
same work folder, resume state and output as a single run: the same frame count, exact times and
sound. Called from ``cli.video`` once the job is checked; owns the terminal (one bar over frames
with per-worker counts) and the encoder, which runs only when every frame is in the folder.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

from ..config import ScaleConfig, StylizeConfig
from ..errors import OutputError, UsageError
from .options import EXIT_INTERRUPTED, EXIT_OK, section_values


def scale_options(args: argparse.Namespace, config: StylizeConfig) -> ScaleConfig:
    """--workers and its companions, checked; with workers, Ray must import (exit 2 naming the
    install command otherwise), and the records that watch one optimization are refused."""
    scale = ScaleConfig(**section_values(args, ScaleConfig))
    if scale.workers is None:
        given = [f"--{name.replace('_', '-')}" for name in section_values(args, ScaleConfig)]
        if given:
            raise UsageError(f"{', '.join(given)} need --workers N")
        return scale
    checks = [(scale.workers >= 1, "--workers must be at least 1"),
              (scale.threads is None or scale.threads >= 1, "--threads must be at least 1"),
              (scale.window >= 0, "--window must be 0 or more"),
              (scale.join_passes >= 0, "--join-passes must be 0 or more"),
              (scale.join_iterations is None or scale.join_iterations >= 1,
               "--join-iterations must be at least 1"),
              (scale.max_restarts >= 0, "--max-restarts must be 0 or more")]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    record = config.record
    for flag, value in (("--progress-video", record.progress_video), ("--plot", record.plot),
                        ("--preview", record.preview)):
        if value:
            raise UsageError(f"{flag} watches one optimization; it does not go with --workers")
    from ..scale.cluster import import_ray

    import_ray()
    return scale


def join_iterations(scale: ScaleConfig, config: StylizeConfig) -> int:
    return scale.join_iterations or max(1, config.optim.iterations // 2)


def selection_cuts(config: StylizeConfig, source: str, first: int, count: int, height: int,
                   width: int) -> list[int]:
    """The frames of the selection that open a new shot, as the frame loop sees them (one pass
    over the input at processing size; none with independent frames or a threshold of 1)."""
    from .. import images
    from ..video import cuts
    from ..video.source import read_selection

    if config.video.temporal == "none" or config.video.cut_threshold >= 1:
        return []
    frames = read_selection(source, first, count, height, width, skip=0, back=0)
    try:
        return cuts.find_cuts((images.to_array(frame) for _, frame in frames),
                              config.video.cut_threshold)
    finally:
        frames.close()


def new_plan(scale: ScaleConfig, config: StylizeConfig, count: int, cuts=()):
    from ..scale.plan import plan_segments

    window = 0 if config.video.temporal == "none" else scale.window  # independent frames: no seam
    return plan_segments(count, scale.workers, window, scale.join_passes,
                         join_iterations(scale, config) / config.optim.iterations, cuts)


def print_plan(scale: ScaleConfig, config: StylizeConfig, count: int, work_path: Path,
               cuts) -> None:
    """The plan a run would follow: the one kept in the work folder of a job begun before.
    ``cuts()`` finds the scene cuts (a pass over the input) for a new plan."""
    import json

    from ..scale.plan import SegmentPlan, describe

    kept = None
    try:
        kept = json.loads((work_path / "state.json").read_text()).get("plan")
    except (OSError, ValueError, AttributeError):
        pass
    if kept:
        plan = SegmentPlan.from_dict(kept)
        print(f"(the plan of the job begun in {work_path}, which a rerun resumes)")
    else:
        plan = new_plan(scale, config, count, cuts())
    for line in describe(plan, scale.workers):
        print(line)
    print(f"each refining pass: {join_iterations(scale, config)} iterations per window frame; "
          f"Ray: {scale.ray or 'a local instance started for the run (or $RAY_ADDRESS)'}")


def run_scaled_video(args: argparse.Namespace, config: StylizeConfig, scale: ScaleConfig, *,
                     info, output: Path, work, record: dict, first: int, count: int,
                     height: int, width: int, sequence_out: bool) -> int:
    from ..scale import cluster
    from ..scale.state import SegmentedWork
    from ..scale.worker import SegmentWorker, VideoJob
    from .options import warn_if_random

    quiet = config.output.quiet
    job = VideoJob(args.input, tuple(args.style), config, first, count, height, width)
    record = {**record, "segmented": True}
    started = time.perf_counter()
    try:
        with cluster.connected(scale, scale.workers, scale.threads, quiet=quiet) as ray_cluster:
            threads = scale.threads or cluster.default_threads(ray_cluster, scale.workers)
            pool = cluster.WorkerPool(SegmentWorker, (job,), config.model.device, ray_cluster,
                                      scale.workers, threads, scale.max_restarts)
            try:
                hellos = pool.greet()  # every input readable on every worker's node
                # the network is built on every worker before the work folder exists: bad
                # weights are refused with nothing left behind
                prepared = pool.prepare()
                warn_if_random(types.SimpleNamespace(is_random=prepared[0]["random"]), quiet)
                ready_seconds = time.perf_counter() - started  # Ray and the workers' start-up
                segmented = SegmentedWork(work)
                plan, begun = segmented.open(record, lambda: new_plan(
                    scale, config, count,
                    selection_cuts(config, args.input, first, count, height, width)))
                try:
                    return _render_and_encode(
                        args, config, scale, info=info, output=output, segmented=segmented,
                        plan=plan, begun=begun, pool=pool, hellos=hellos, threads=threads,
                        ray_cluster=ray_cluster, first=first, count=count, height=height,
                        width=width, sequence_out=sequence_out, started=started,
                        ready_seconds=ready_seconds)
                finally:
                    segmented.close()
            finally:
                pool.stop()
    except KeyboardInterrupt:
        print(f"nstvideo: interrupted; state kept in {work.path}; run the same command again "
              "to resume every segment where it stopped", file=sys.stderr)
        return EXIT_INTERRUPTED


def _render_and_encode(args, config, scale, *, info, output, segmented, plan, begun, pool, hellos,
                       threads, ray_cluster, first, count, height, width, sequence_out,
                       started, ready_seconds) -> int:
    from .. import __version__
    from .. import images
    from ..records.progress import WorkerBar, write_report
    from ..scale import driver
    from ..video.sink import encoding

    quiet = config.output.quiet
    done = segmented.frames_done()
    if not quiet:
        print(workers_line(hellos, threads, ray_cluster, f"{len(plan.segments)} segment(s)"),
              file=sys.stderr)
        if begun:
            print(f"nstvideo: resuming with {done}/{count} frames done in {segmented.path}",
                  file=sys.stderr)
    bar = WorkerBar(count, done, disable=quiet)
    rendering = time.perf_counter()
    try:
        run = driver.render(plan, segmented, pool, scale, config=config,
                            join_iterations=plan_join_iterations(plan, config), callbacks=[bar])
    finally:
        bar.close()
    render_seconds = time.perf_counter() - rendering
    if segmented.frames_done() != count:  # the driver returns only when all are in: a bug if not
        raise RuntimeError(f"the workers finished with {segmented.frames_done()} of {count} "
                           f"frames in {segmented.path}")
    work = segmented.work
    try:
        with encoding(work, output, info, args.input, first, count, height, width,
                      start_number=config.video.start_number,
                      bit_depth=config.output.bit_depth) as writer:
            for index in range(count):
                writer.write(work.load_frame(index))
    except OutputError as error:
        raise OutputError(f"{error}; the finished frames stay in {work.path}: run the same "
                          "command again to write the video") from None
    seconds = time.perf_counter() - started
    if config.output.report:
        report = {"nstvideo": __version__, "command": "stylize", "input": args.input,
                  "styles": args.style, "output": str(output), "settings": config.to_dict(),
                  "fps": str(info.fps), "variable_frame_rate": info.variable_rate,
                  "frames": count, "first_frame": first, "size": [width, height],
                  "resumed_at": done, "seconds": round(seconds, 3),
                  "scale": {"workers": len(pool.actors), "threads": threads,
                            "nodes": sorted({hello["node"] for hello in hellos}),
                            "ray_started_here": ray_cluster.started_here,
                            "ray_start_seconds": round(ray_cluster.start_seconds, 3),
                            "ready_seconds": round(ready_seconds, 3),
                            "render_seconds": round(render_seconds, 3),
                            "anchors_seconds": round(run.anchors_seconds, 3),
                            "plan": plan.to_dict(), "restarts": run.restarts},
                  "frames_this_run": run.frames}
        write_report(config.output.report, report, images.atomic_write_bytes)
    if not config.video.keep_work:
        segmented.remove()
    if not quiet:
        print(f"wrote {output} ({count} frames, {width}x{height}, {info.describe_rate()}, "
              f"audio {'copied' if info.has_audio and not sequence_out else 'none'}, "
              f"{len(plan.segments)} segments, {seconds:.1f} s)", file=sys.stderr)
    return EXIT_OK


def workers_line(hellos, threads: int, ray_cluster, work: str) -> str:
    """The line that says where the work runs: workers, threads, nodes, device, Ray's start-up."""
    nodes = sorted({hello["node"] for hello in hellos})
    return (f"nstvideo: {len(hellos)} worker(s) x {threads} thread(s) on {', '.join(nodes)} "
            f"({hellos[0]['device']}); {work}; Ray "
            f"{'started' if ray_cluster.started_here else 'joined'} in "
            f"{ray_cluster.start_seconds:.1f} s")


def plan_join_iterations(plan, config: StylizeConfig) -> int:
    """The refining passes' iterations the plan was made with (kept in the state)."""
    return max(1, round(plan.join_fraction * config.optim.iterations))


def spread_stills(scale: ScaleConfig, config: StylizeConfig, jobs, paths, on_done, *,
                  keep_going: bool = False, body=None):
    """Independent still jobs (``scale.stills.StillJob``) over Ray workers, as many as there are
    jobs up to --workers: every input checked readable on every worker's node, the network built
    on each before the first job, ``on_done(StillDone)`` as each comes back (the caller writes its
    bytes). Returns the failed jobs with their errors (with ``keep_going``; else the first
    failure is raised). ``body``: the worker class (default ``scale.stills.StillWorker``)."""
    from ..scale import cluster, driver
    from ..scale.stills import StillWorker
    from .options import warn_if_random

    quiet = config.output.quiet
    workers = max(1, min(scale.workers, len(jobs)))
    layers = jobs[0].layers
    with cluster.connected(scale, workers, scale.threads, quiet=quiet) as ray_cluster:
        threads = scale.threads or cluster.default_threads(ray_cluster, workers)
        pool = cluster.WorkerPool(body or StillWorker,
                                  (tuple(dict.fromkeys(paths)), config.model.device),
                                  config.model.device,
                                  ray_cluster, workers, threads, scale.max_restarts)
        try:
            hellos = pool.greet()
            prepared = pool.prepare(jobs[0].config, layers)
            warn_if_random(types.SimpleNamespace(is_random=prepared[0]["random"]), quiet)
            if not quiet:
                print(workers_line(hellos, threads, ray_cluster, f"{len(jobs)} still(s)"),
                      file=sys.stderr)
            return driver.run_stills(pool, jobs, on_done, keep_going=keep_going)
        finally:
            pool.stop()


def job_files(config: StylizeConfig, *inputs: str) -> list[str]:
    """The files a still job reads besides its content: the styles given, a weights file, an
    init image."""
    from ..scale.worker import named_files

    return [*inputs, *named_files(config, init=True)]


def batch_spreader(args: argparse.Namespace, config: StylizeConfig):
    """A folder's images over the workers (``cli.batch.Spread``): each painted on a worker and
    sent back encoded in its output's format, written here under a temporary name and renamed.
    An output whose format or bit depth cannot be is a failure of that file, as in a batch run
    one file at a time."""
    from .. import images
    from ..errors import NstError
    from ..scale.stills import IMAGE, StillJob

    scale = scale_options(args, config)
    layers = tuple(dict.fromkeys(config.loss.content_layers + config.loss.style_layers))

    def spread(pairs, wrote):
        failed, jobs, inputs = [], [], {}
        for path, output in pairs:
            try:
                fmt = images.output_format(output)
                if config.output.bit_depth:
                    images.check_bit_depth(fmt, config.output.bit_depth)
            except NstError as error:
                failed.append((path, str(error)))
                continue
            inputs[str(output)] = path
            jobs.append(StillJob(str(output), IMAGE, str(path), tuple(args.style), config, layers,
                                 suffix=output.suffix))
        if not jobs:
            return failed

        def done(still) -> None:
            images.atomic_write_bytes(Path(still.key), still.data)
            wrote(Path(still.key))

        paths = [str(path) for path in inputs.values()] + job_files(config, *args.style)
        for job, error in spread_stills(scale, config, jobs, paths, done, keep_going=True):
            reason = (str(error) if isinstance(error, NstError)
                      else f"internal error: {type(error).__name__}: {error}")
            failed.append((inputs[job.key], reason))
        return failed

    return spread


def one_cluster(args: argparse.Namespace, config: StylizeConfig):
    """Ray connected (or started) once for a job of many runs, each of which then finds it."""
    from ..scale import cluster

    scale = scale_options(args, config)
    return cluster.connected(scale, scale.workers, scale.threads, quiet=config.output.quiet)
