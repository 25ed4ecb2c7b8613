"""``nstvideo train --style S --images DIR -o STYLE.nstnet``: a feed-forward style network, trained
with checkpoints and previews in a work folder (OUTPUT.work). Ctrl-C exits 130 with the last
finished step saved; the same command resumes it, step for step (the network, Adam's state and
the crop generator's state are all in the checkpoint). A larger --steps continues a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import (LossConfig, ModelConfig, OutputConfig, ScheduleConfig, StylizeConfig,
                      TrainConfig)
from ..errors import InputError, UsageError
from .options import (EXIT_INTERRUPTED, EXIT_OK, add_section_options, refuse_overwriting,
                      section_values, warn_if_random)

CHECKPOINT = "checkpoint.pt"
STATE = "state.json"
PREVIEWS = "previews"
# settings that change no step: they may differ between an interrupted run and its resumption
NEUTRAL_TRAIN = ("steps", "checkpoint_every", "preview_every", "work_dir")


def add_train_parser(commands) -> None:
    parser = commands.add_parser("train", help="train a feed-forward network for a style (one "
                                 "pass per image or frame afterwards: nstvideo stylize --net)")
    parser.add_argument("--style", action="append", required=True, metavar="IMAGE",
                        help="style image (repeat to blend several)")
    parser.add_argument("--images", required=True, metavar="DIR",
                        help="folder of training images (photos; random crops of them)")
    parser.add_argument("-o", "--output", required=True, metavar="STYLE.nstnet",
                        help="the trained network")
    add_section_options(parser, TrainConfig)
    add_section_options(parser, ModelConfig)
    add_section_options(parser, LossConfig)
    add_section_options(parser, ScheduleConfig,
                        skip=tuple(f.name for f in dataclasses.fields(ScheduleConfig) if f.name != "seed"))
    add_section_options(parser, OutputConfig,
                        skip=tuple(f.name for f in dataclasses.fields(OutputConfig) if f.name != "quiet"))


def train_config(args: argparse.Namespace) -> TrainConfig:
    train = dataclasses.replace(TrainConfig(), **section_values(args, TrainConfig))
    checks = [(train.train_size >= 32, "--train-size must be at least 32 px"),
              (train.steps >= 1, "--steps must be at least 1"),
              (train.batch_size >= 1, "--batch-size must be at least 1"),
              (train.lr > 0, "--lr must be positive"),
              (train.checkpoint_every >= 1, "--checkpoint-every must be at least 1"),
              (train.preview_every >= 0, "--preview-every must be 0 or more")]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    return train


class ImageFolder(Sequence):
    """The training images of a folder, decoded when drawn (a folder of photos need not fit in
    memory)."""

    def __init__(self, folder: str):
        from .batch import IMAGE_SUFFIXES

        root = Path(folder)
        if not root.is_dir():
            raise InputError(f"--images {folder}: no such folder")
        self.paths = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise InputError(f"--images {folder}: no images in it (png, jpg, tiff, webp, bmp)")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from .. import images

        return images.load(self.paths[index])

    def fingerprint(self) -> list[Any]:
        return [[p.name, p.stat().st_size] for p in self.paths]


def save_torch(path: Path, data: Any) -> None:
    from .. import images

    buffer = io.BytesIO()
    torch.save(data, buffer)
    images.atomic_write_bytes(path, buffer.getvalue())


def run_train(args: argparse.Namespace, config: StylizeConfig) -> int:
    from .. import images, runtime
    from ..network import netfile
    from ..network.features import canonical_layers
    from ..network.objective import blended_grams, normalised
    from ..network.transformer import new_transformer
    from ..optim.training import Trainer
    from ..records.progress import TrainBar, loss_summary
    from ..resume import file_digest, read_state, settings_fingerprint, write_state
    from ..still.stylize import build_network, resize_long_side, style_at_scale
    from ..video.lock import FolderLock

    train = train_config(args)
    output = Path(args.output)
    if output.suffix != netfile.SUFFIX:
        raise UsageError(f"-o {output}: a trained network is saved as {netfile.SUFFIX}, e.g. "
                         f"{output.with_suffix(netfile.SUFFIX).name}")
    refuse_overwriting(output, list(args.style))
    folder = ImageFolder(args.images)
    styles = [images.load(path) for path in args.style]
    device = runtime.resolve_device(config.model.device)
    runtime.configure_precision(config.model.precision)
    vgg, source = build_network(config, device)
    warn_if_random(source, config.output.quiet)

    settings = settings_fingerprint(config)
    settings["train"] = {k: v for k, v in dataclasses.asdict(train).items() if k not in NEUTRAL_TRAIN}
    record = json.loads(json.dumps({"styles": [file_digest(p) for p in args.style],
                                    "images": folder.fingerprint(), "settings": settings}))
    work = Path(train.work_dir or output.with_name(output.name + ".work"))
    if work.exists() and not work.is_dir():
        raise UsageError(f"--work-dir {work} is a file, not a folder")
    lock = FolderLock(work)
    lock.acquire()
    try:
        scaled = [style_at_scale(s, train.train_size, config.loss.style_scale).to(device) for s in styles]
        blend = normalised(config.loss.style_weights, len(styles), "--style-weights")
        style_layers = canonical_layers(config.loss.style_layers, vgg.arch)
        grams = blended_grams(vgg, scaled, blend, style_layers, config.model.precision)
        net = new_transformer(config.schedule.seed).to(device)
        trainer = Trainer(net, vgg, grams, folder,
                          config.loss, train, seed=config.schedule.seed,
                          precision=config.model.precision)
        state_path, checkpoint_path = work / STATE, work / CHECKPOINT
        if state_path.is_file():
            read_state(state_path, record, (), holds="the training of a different network",
                       start_over=f"remove {work}")
            try:
                trainer.load_state_dict(torch.load(checkpoint_path, map_location="cpu",
                                                   weights_only=True))
            except Exception:
                raise InputError(f"{checkpoint_path} is missing or damaged; remove {work} to "
                                 "start over") from None
            if not config.output.quiet:
                print(f"nstvideo: resuming at step {trainer.step + 1}/{train.steps} from {work}",
                      file=sys.stderr)

        def checkpoint() -> None:
            save_torch(checkpoint_path, trainer.state_dict())
            write_state(state_path, record, step=trainer.step)  # after the file it names

        preview_image = resize_long_side(folder[0], train.train_size)

        def on_step(event) -> None:
            if event.step % train.checkpoint_every == 0:
                checkpoint()
            if train.preview_every and event.step % train.preview_every == 0:
                images.write_image(work / PREVIEWS / f"step_{event.step:06d}.png",
                                   trainer.paint(preview_image))

        work.mkdir(parents=True, exist_ok=True)
        bar = TrainBar(train.steps, trainer.step, disable=config.output.quiet)
        started = time.perf_counter()
        try:
            trainer.run(train.steps, callbacks=[on_step, bar])
        except KeyboardInterrupt:
            bar.close()
            if trainer.consistent and trainer.step:
                checkpoint()
            saved = (torch.load(checkpoint_path, weights_only=True)["step"]
                     if checkpoint_path.is_file() else 0)
            print(f"nstvideo: interrupted after step {trainer.step}; "
                  + (f"step {saved} is saved in {work}; run the same command again to resume"
                     if saved else "nothing was saved yet"), file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            bar.close()
        header = {"styles": [{"name": Path(p).name, "sha256": file_digest(p)} for p in args.style],
                  "settings": {"train": dataclasses.asdict(train),
                               "loss": dataclasses.asdict(config.loss),
                               "model": {"model": config.model.model, "pooling": config.model.pooling,
                                         "weights": source.describe()},
                               "seed": config.schedule.seed},
                  "steps": trainer.step, "images": len(folder),
                  "losses": loss_summary(trainer.history)}
        trainer.net.eval()
        images.atomic_write_bytes(output, netfile.to_bytes(trainer.net, header))
        for item in (checkpoint_path, state_path):
            item.unlink(missing_ok=True)
    finally:
        lock.release(remove=True)
        try:
            work.rmdir()  # kept when it holds previews
        except OSError:
            pass
    if not config.output.quiet:
        first, last = trainer.history[0]["total"], trainer.history[-1]["total"]
        kept = f"; previews in {work / PREVIEWS}" if (work / PREVIEWS).is_dir() else ""
        print(f"wrote {output} ({trainer.step} steps, loss {first:.4g} -> {last:.4g}, "
              f"{time.perf_counter() - started:.1f} s{kept})", file=sys.stderr)
    return EXIT_OK

