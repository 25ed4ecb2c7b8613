"""Mutation testing of the core modules with mutmut: which small changes to the code (a + for a
-, a 2 for a 1, a dropped call) the fast tests let through.

    pip install mutmut          # a developer tool: not a dependency of the package or of CI
    python benchmarks/mutation.py                               # every core module
    python benchmarks/mutation.py --modules losses,objective    # a few (seconds to minutes each)
    python benchmarks/mutation.py --modules flow --show         # also print each survivor's diff

It never mutates the checkout: the last commit (or, with --working-tree, the working tree's
tracked and untracked files) is copied to a scratch folder (--work DIR, default a temp folder,
removed afterwards unless --keep), where mutmut writes its mutants/; mutmut needs the selected
tests to pass there before it mutates anything. Each module is run with the test files that cover it (MODULES
below); the summary gives killed and surviving mutants per module, as JSON with --json PATH.
A surviving mutant is a change no test notices: read it (mutmut show NAME in the scratch folder,
or --show) and either add a test a user would care about or note why it does not matter.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# module -> the fast test files that exercise it
MODULES = {
    "losses": ("nstvideo/network/losses.py", ["tests/test_losses.py"]),
    "objective": ("nstvideo/network/objective.py", ["tests/test_losses.py", "tests/test_engine.py"]),
    "tiling": ("nstvideo/still/tiling.py", ["tests/test_tiling.py"]),
    "blockwise": ("nstvideo/still/blockwise.py", ["tests/test_tiling.py"]),
    "flow": ("nstvideo/video/flow.py", ["tests/test_flow.py"]),
    "lbfgs": ("nstvideo/optim/lbfgs.py", ["tests/test_lbfgs.py", "tests/test_engine_lbfgs.py"]),
    # the frame-loop tests of test_video.py, not its end-to-end CLI runs (minutes per mutant)
    "frames": ("nstvideo/video/frames.py", [
        "tests/test_video.py::test_preserve_colors_keeps_each_frames_chroma",
        "tests/test_video.py::test_long_term_consistency_restores_what_an_occluder_uncovers",
        "tests/test_video.py::test_flow_ahead_on_a_worker_thread_gives_the_same_frames",
        "tests/test_video.py::test_frames_follow_the_planned_history",
        "tests/test_video.py::test_blocks_shrunk_for_memory_stay_shrunk_for_later_frames",
        "tests/test_video.py::test_interrupted_run_resumes_to_the_same_frames"]),
}


def copy_checkout(target: Path, working_tree: bool) -> None:
    """The last commit (default: what the figures are about), or the working tree as it is."""
    if not working_tree:
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        return
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def write_config(work: Path, module_path: str, tests: list[str]) -> None:
    lines = ["[mutmut]", "source_paths = nstvideo/", f"only_mutate = {module_path}",
             "pytest_add_cli_args_test_selection =", *(f"    {t}" for t in tests),
             "pytest_add_cli_args =", "    -q", "    -p", "    no:cacheprovider"]
    (work / "setup.cfg").write_text("\n".join(lines) + "\n")


def mutmut(work: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    exe = Path(sys.executable).with_name("mutmut")
    return subprocess.run([str(exe), *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=timeout)


def statuses(work: Path, timeout: float) -> dict[str, str]:
    """mutant name -> killed / survived / timeout / no tests / ..."""
    out = mutmut(work, "results", "--all", "true", timeout=timeout).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status.strip()
    return found


def run_module(key: str, work_root: Path, workers: int, show: bool, timeout: float,
               working_tree: bool) -> dict:
    module_path, tests = MODULES[key]
    work = work_root / key
    work.mkdir(parents=True)
    copy_checkout(work, working_tree)
    write_config(work, module_path, tests)
    started = time.perf_counter()
    done = mutmut(work, "run", "--max-children", str(workers), timeout=timeout)
    seconds = time.perf_counter() - started
    found = statuses(work, timeout=600)
    counts = collections.Counter(found.values())
    survivors = sorted(name for name, status in found.items() if status == "survived")
    summary = {"module": module_path, "tests": tests, "seconds": round(seconds, 1),
               "mutants": len(found), "counts": dict(counts), "survived": survivors}
    if not found or counts.get("not checked") == len(found):
        summary["error"] = (done.stdout + done.stderr).strip().splitlines()[-20:]
    if show:
        summary["diffs"] = {name: mutmut(work, "show", name, timeout=120).stdout
                            for name in survivors}
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default=",".join(MODULES),
                        help=f"comma-separated, from {', '.join(MODULES)}")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--working-tree", action="store_true",
                        help="mutate the working tree's files (tracked and untracked) instead of "
                        "the last commit; the tests must pass there first")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per module")
    args = parser.parse_args()
    if shutil.which("mutmut", path=str(Path(sys.executable).parent)) is None:
        print("mutmut is not installed in this environment: pip install mutmut", file=sys.stderr)
        return 2
    keys = [k.strip() for k in args.modules.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODULES]
    if unknown:
        print(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}",
              file=sys.stderr)
        return 2
    work_root = args.work or Path(tempfile.mkdtemp(prefix="nstvideo-mutation-"))
    results = []
    try:
        for key in keys:
            summary = run_module(key, work_root, args.workers, args.show, args.timeout,
                                 args.working_tree)
            results.append(summary)
            counts = summary["counts"]
            print(f"{summary['module']}: {summary['mutants']} mutants, "
                  f"{counts.get('killed', 0)} killed, {counts.get('survived', 0)} survived, "
                  f"other {({k: v for k, v in counts.items() if k not in ('killed', 'survived')})}"
                  f" ({summary['seconds']} s; tests {' '.join(summary['tests'])})", flush=True)
            for name in summary["survived"]:
                print(f"  survived: {name}")
                if args.show:
                    print("    " + summary["diffs"][name].strip().replace("\n", "\n    "))
            if "error" in summary:
                print("  mutmut found no mutants; its last lines:\n    "
                      + "\n    ".join(summary["error"]))
    finally:
        if args.keep:
            print(f"scratch folder kept: {work_root}", file=sys.stderr)
        else:
            shutil.rmtree(work_root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
