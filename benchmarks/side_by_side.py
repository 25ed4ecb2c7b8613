"""nstvideo against neural-style-pt on the same inputs and machine: seconds per iteration.

    git clone https://github.com/ProGamerGov/neural-style-pt /path/to/neural-style-pt   # by you
    python benchmarks/side_by_side.py --nspt /path/to/neural-style-pt --size 256 --optimizer adam

neural-style-pt is never vendored here. Both run as whole processes with the same content and
style images, size, optimizer, layers and the same random VGG19 weights file (seeded He init in
neural-style-pt's own VGG class, saved to a temp file and loaded by both; nothing downloads).
The per-iteration time is the slope between two iteration counts, so start-up and model loading do
not count; runs alternate between the tools to spread machine noise. By default nstvideo is timed
twice against the same neural-style-pt runs: at fp32 (the arithmetic neural-style-pt does) and at
its default ``--precision auto`` (bf16 on CPUs with native bf16, TF32 on GPUs).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import emit  # noqa: E402


def shared_random_model(nspt: Path, folder: Path) -> Path:
    """One weights file both tools load: neural-style-pt's own VGG19 class (its keys are
    torchvision's ``features.N``), with our seeded He init in every convolution, so that both run
    the very same network (convolution speed on a CPU depends on the values, too)."""
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[3]);"
        "from CaffeLoader import VGG, buildSequential, channel_list;"
        "from nstvideo.network.features import VGGFeatures;"
        "model = VGG(buildSequential(channel_list['VGG-19'], 'max'));"
        "ours = VGGFeatures('vgg19', ['relu5_4']);"
        "state = model.state_dict();"
        "state.update({'features.' + k[len('body.'):]: v for k, v in ours.state_dict().items() if k.startswith('body.')});"
        "torch.save(state, sys.argv[2])")
    path = folder / "vgg19-random.pth"  # the name tells neural-style-pt the architecture
    subprocess.run([sys.executable, "-c", script, str(nspt), str(path), str(REPO)], check=True)
    return path


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nspt", required=True, type=Path, help="a neural-style-pt checkout")
    parser.add_argument("--content", default=str(REPO / "samples" / "cat.jpg"))
    parser.add_argument("--style", default=str(REPO / "samples" / "swirls.png"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--optimizer", default="adam", choices=("adam", "lbfgs"))
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--long", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="fp32,auto",
                        help="nstvideo's --precision, or several (comma-separated), each timed "
                             "against the same neural-style-pt runs [fp32 (what neural-style-pt "
                             "computes) and auto (nstvideo's default)]")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        model = shared_random_model(args.nspt, folder)
        gpu = "c" if args.device == "cpu" else "0"

        def nspt(n: int) -> list[str]:
            return [sys.executable, "neural_style.py", "-content_image", args.content,
                    "-style_image", args.style, "-image_size", str(args.size), "-gpu", gpu,
                    "-optimizer", args.optimizer, "-num_iterations", str(n), "-print_iter", "0",
                    "-save_iter", "0", "-model_file", str(model), "-init", "image",
                    "-output_image", str(folder / "nspt.png"),
                    # its fastest GPU settings: the default backend 'nn' turns cuDNN off, and
                    # -seed turns on cudnn.deterministic (slower algorithms); -init image needs
                    # no seed
                    "-backend", "cudnn", "-cudnn_autotune"]

        def ours(n: int, precision: str) -> list[str]:
            return [sys.executable, "-m", "nstvideo", "stylize", args.content, "--style", args.style,
                    "--size", str(args.size), "--min-scale", str(args.size),
                    "--optimizer", args.optimizer, "--iterations", str(n), "--tolerance", "0",
                    "--weights", str(model), "--device", args.device, "--precision", precision,
                    "--quiet", "-o", str(folder / "ours.png")]

        precisions = args.precision.split(",")
        tools = {"neural-style-pt": nspt, **{f"nstvideo {p}": lambda n, p=p: ours(n, p)
                                             for p in precisions}}
        times = {tool: {args.short: [], args.long: []} for tool in tools}
        for _ in range(args.repeats):  # alternating, so machine noise spreads over every tool
            for n in (args.short, args.long):
                for tool, argv in tools.items():
                    times[tool][n].append(timed(argv(n), args.nspt if tool == "neural-style-pt" else REPO))
    per_iteration = {tool: (min(t[args.long]) - min(t[args.short])) / (args.long - args.short)
                     for tool, t in times.items()}
    # the same slope per repeat (short and long runs back to back): its median resists one noisy run
    median = {tool: statistics.median((b - a) / (args.long - args.short)
                                      for a, b in zip(t[args.short], t[args.long]))
              for tool, t in times.items()}
    base, base_median = per_iteration["neural-style-pt"], median["neural-style-pt"]
    emit({"benchmark": "side_by_side", "size": args.size, "optimizer": args.optimizer,
          "device": args.device, "iterations": [args.short, args.long],
          "seconds_per_iteration": {k: round(v, 4) for k, v in per_iteration.items()},
          "ratio_to_nspt": {tool: round(v / base, 3) for tool, v in per_iteration.items()
                            if tool != "neural-style-pt"},
          "median_seconds_per_iteration": {k: round(v, 4) for k, v in median.items()},
          "median_ratio_to_nspt": {tool: round(v / base_median, 3) for tool, v in median.items()
                                   if tool != "neural-style-pt"},
          "raw_seconds": times})


if __name__ == "__main__":
    main()
