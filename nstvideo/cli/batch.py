"""``nstvideo stylize DIR/ --style S -o OUTDIR/``: every image and video in a folder, one job at a
time through the same still and video jobs, each to ``OUTDIR/NAME_STYLE.EXT``.

Outputs are written to a temporary name and renamed, so an output that exists is complete: it is
skipped, and a rerun of the same command resumes the batch (a video interrupted half way resumes
from its work folder as usual). A file that fails is reported and the batch goes on; the last
lines name each failed file and why, and the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
import contextlib
from typing import Callable, ContextManager, Optional, Sequence

from ..config import StylizeConfig
from ..errors import NstError, UsageError
from .options import EXIT_INTERRUPTED, EXIT_OK

EXIT_SOME_FAILED = 1
# (input, output) pairs, a callback per output written -> the failed inputs with why
Spread = Callable[[Sequence[tuple[Path, Path]], Callable[[Path], None]], list[tuple[Path, str]]]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}


def batch_files(folder: Path, recursive: bool, skip: set[Path]) -> list[Path]:
    """Images and videos in ``folder`` (and its subfolders with ``recursive``), sorted by their
    path inside it; hidden files and folders, work folders and ``skip`` (the output folder, the
    styles) are left out."""
    from ..video.io import looks_like_video

    found = []
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        inside = path.relative_to(folder).parts
        if any(part.startswith(".") or part.endswith(".work") for part in inside):
            continue
        resolved = path.resolve()
        if resolved in skip or any(parent in skip for parent in resolved.parents):
            continue
        suffix = path.suffix.lower()
        if path.is_file() and (suffix in IMAGE_SUFFIXES or looks_like_video(path)):
            found.append(path)
    return found


def output_for(path: Path, folder: Path, out_folder: Path, styles: list[str]) -> Path:
    """OUTDIR/[subfolder/]NAME_STYLE.EXT: a video becomes .mp4, an image keeps its format."""
    from ..images import WRITABLE
    from ..video.io import looks_like_video

    names = "_".join(Path(s).stem for s in styles)
    suffix = ".mp4" if looks_like_video(path) else (path.suffix if path.suffix.lower() in WRITABLE else ".png")
    return out_folder / path.parent.relative_to(folder) / f"{path.stem}_{names}{suffix}"


def run_batch(args: argparse.Namespace, config: StylizeConfig,
              run_one: Callable[[argparse.Namespace, StylizeConfig, bool], int],
              spread: Optional[Spread] = None,
              session: Optional[Callable[[], ContextManager]] = None) -> int:
    """``run_one(args, config, is_video)`` runs one file's job; a file is a video by its suffix
    here (a damaged image must fail as an image, not be tried as a video). With ``spread``
    (--workers), the images go over the workers first, all at once
    (``spread(pairs, wrote) -> failures``), then each video is spread over them in turn, all
    inside one ``session()`` (Ray connected once), entered once the batch is checked."""
    from ..video.io import looks_like_video
    from tqdm import tqdm

    folder = Path(args.input)
    out_folder = Path(args.output) if args.output else Path.cwd()
    if out_folder.exists() and not out_folder.is_dir():
        raise UsageError(f"-o {out_folder}: a folder input needs an output folder, not a file")
    if config.video.work_dir:
        raise UsageError("--work-dir names one video's folder; a batch keeps one beside each output")
    one_file = [flag for flag, value in (("--report", config.output.report),
                                         ("--plot", config.record.plot),
                                         ("--progress-video", config.record.progress_video))
                if value]
    if one_file:
        raise UsageError(f"{one_file[0]} names one file, and a batch has many inputs; run that "
                         "input on its own for it")
    skip = {out_folder.resolve()} | {Path(s).resolve() for s in args.style}
    files = batch_files(folder, args.recursive, skip)
    if not files:
        raise UsageError(f"{folder}: no image or video in it"
                         + ("" if args.recursive else " (--recursive looks in its subfolders)"))
    jobs = [(path, output_for(path, folder, out_folder, args.style)) for path in files]
    todo = [(path, output) for path, output in jobs if not output.exists()]
    quiet = config.output.quiet
    if config.output.dry_run or not quiet:
        print(f"batch: {len(files)} file(s) in {folder}, {len(files) - len(todo)} already done; "
              f"output {out_folder}", file=sys.stdout if config.output.dry_run else sys.stderr)
    if config.output.dry_run:
        for path, output in todo:
            print(f"  {path} -> {output}")
        return EXIT_OK
    failed: list[tuple[Path, str]] = []
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="file", desc="files",
               position=0, dynamic_ncols=True, disable=quiet)
    try:
        with (session or contextlib.nullcontext)():
            if spread:
                stills = [(path, output) for path, output in todo if not looks_like_video(path)]
                todo = [pair for pair in todo if pair not in stills]
                for output in {output.parent for _, output in stills}:
                    output.mkdir(parents=True, exist_ok=True)

                def wrote(path: Path) -> None:
                    bar.set_postfix_str(path.name, refresh=False)
                    bar.update(1)

                if stills:
                    failures = spread(stills, wrote)
                    failed.extend(failures)
                    bar.update(len(failures))
            for path, output in todo:
                bar.set_postfix_str(path.name, refresh=True)
                one = argparse.Namespace(**vars(args))
                one.input, one.output = str(path), str(output)
                output.parent.mkdir(parents=True, exist_ok=True)
                try:
                    code = run_one(one, config, looks_like_video(path))
                except NstError as error:
                    failed.append((path, str(error)))
                except KeyboardInterrupt:
                    raise
                except Exception as error:  # one bad file must not end the batch
                    failed.append((path, f"internal error: {type(error).__name__}: {error}"))
                else:
                    if code == EXIT_INTERRUPTED:
                        raise KeyboardInterrupt
                    if code != EXIT_OK:
                        failed.append((path, f"exit code {code}"))
                bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        print(f"nstvideo: batch interrupted; run the same command again to go on ({len(failed)} "
              "failed so far)", file=sys.stderr)
        return EXIT_INTERRUPTED
    bar.close()
    for path, reason in failed:
        print(f"nstvideo: failed: {path}: {reason}", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK
