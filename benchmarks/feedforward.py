"""Feed-forward networks against optimization, JSON out:

* frames per second of the transformer network at 256², 512² and 1280x720 (its speed does not
  depend on its weights);
* a small network trained here (samples/cat.jpg and coffee.jpg, style samples/mosaic.png): the
  style loss of its output against that of a 500-iteration optimization of the same image;
* the hybrid (--init net:): iterations and seconds for the optimization started from the network's
  painting to reach the final loss of the one started from the content.

    python benchmarks/feedforward.py --out ff.json     # random VGG; see the README for a smaller run
    python benchmarks/feedforward.py --sizes 256 --train-steps 2 --train-size 32 --size 32 --iterations 20  # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nstvideo import images, runtime  # noqa: E402
from nstvideo.config import StylizeConfig, TrainConfig  # noqa: E402
from nstvideo.network.objective import blended_grams  # noqa: E402
from nstvideo.network.transformer import new_transformer  # noqa: E402
from nstvideo.optim.training import Trainer  # noqa: E402
from nstvideo.still.painting import paint  # noqa: E402
from nstvideo.still.stylize import (build_network, resize_long_side, style_at_scale,  # noqa: E402
                                    stylize_image)

SIZES = {"256": (256, 256), "512": (512, 512), "720p": (720, 1280)}


def frames_per_second(device: torch.device, repeats: int, sizes) -> dict:
    net = new_transformer(0).to(device).eval()
    out = {}
    for name in sizes:
        height, width = SIZES[name]
        frame = torch.rand(1, 3, height, width)
        paint(net, frame)  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            paint(net, frame)
        seconds = (time.perf_counter() - started) / repeats
        out[name] = {"size": [width, height], "seconds_per_frame": round(seconds, 4),
                     "frames_per_second": round(1 / seconds, 3)}
        print(f"{name}: {1 / seconds:.2f} frames/s", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="feedforward.json")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", default="random", help="VGG weights: random, hed, or a file")
    parser.add_argument("--model", default="vgg19")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(SIZES), help="frame sizes to time: 256,512,720p")
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--train-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--size", type=int, default=128, help="long side of the compared stills")
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args()

    device = runtime.resolve_device(args.device)
    config = StylizeConfig().replace(model={"weights": args.weights, "model": args.model,
                                            "device": args.device},
                                     schedule={"size": args.size, "min_scale": args.size},
                                     optim={"iterations": args.iterations, "tolerance": 0},
                                     output={"quiet": True})
    precision = runtime.resolve_precision(config.model.precision, device)
    config = config.replace(model={"precision": precision})
    runtime.configure_precision(precision)
    report = {"device": runtime.describe_device(device), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "weights": args.weights, "settings": vars(args)}
    report["frames_per_second"] = frames_per_second(device, args.repeats, args.sizes.split(","))

    vgg, source = build_network(config, device)
    photos = [images.load(REPO / "samples" / name) for name in ("cat.jpg", "coffee.jpg")]
    style = images.load(REPO / "samples" / "mosaic.png")
    train = dataclasses.replace(TrainConfig(), train_size=args.train_size, steps=args.train_steps,
                                batch_size=args.batch_size)
    grams = blended_grams(vgg, [style_at_scale(style, train.train_size, 1.0).to(device)], [1.0],
                          vgg.layers, precision)
    trainer = Trainer(new_transformer(0).to(device), vgg, grams,
                      [resize_long_side(p, 2 * args.train_size) for p in photos], config.loss, train,
                      precision=precision)
    started = time.perf_counter()
    trainer.run(train.steps)
    history = [h["total"] for h in trainer.history]
    report["training"] = {"steps": train.steps, "train_size": train.train_size,
                          "batch_size": train.batch_size, "seconds": round(time.perf_counter() - started, 1),
                          "loss_first_10": round(sum(history[:10]) / 10, 3),
                          "loss_last_10": round(sum(history[-10:]) / 10, 3)}
    print(f"trained {train.steps} steps in {report['training']['seconds']} s", file=sys.stderr)
    net = trainer.net.eval()

    content = resize_long_side(photos[0], args.size)
    started = time.perf_counter()
    painting = paint(net, content)
    paint_seconds = time.perf_counter() - started
    images.write_image(Path(args.out).with_suffix(".net.png"), painting)
    from_content = stylize_image(content, [style], config, network=vgg).scales[-1].result
    hybrid = stylize_image(content, [style], config.replace(schedule={"init": "net:"}), network=vgg,
                           init_image=painting).scales[-1].result
    target = from_content.history[-1]["total"]
    totals = [h["total"] for h in hybrid.history]
    reached = next((i + 1 for i, t in enumerate(totals) if t <= target), None)
    per_iteration = hybrid.seconds / hybrid.iterations_run
    report["style_loss"] = {
        "size": list(content.shape[-2:][::-1]),
        # the first evaluation of the hybrid is the painting's own loss
        "network_output": {k: round(v, 4) for k, v in hybrid.history[0].items()},
        "network_seconds": round(paint_seconds, 4),
        f"optimization_{args.iterations}": {k: round(v, 4) for k, v in from_content.history[-1].items()},
        "optimization_seconds": round(from_content.seconds, 2),
        "content_init_loss_at_start": round(from_content.history[0]["total"], 4)}
    report["hybrid"] = {
        "content_init_final_total": round(target, 4),
        "hybrid_final_total": round(totals[-1], 4),
        "hybrid_iterations_to_reach_it": reached,
        "content_init_iterations": from_content.iterations_run,
        "hybrid_seconds_to_reach_it": (round(reached * per_iteration + paint_seconds, 2)
                                       if reached else None),
        "content_init_seconds": round(from_content.seconds, 2),
        "hybrid_loss_at": {str(n): round(totals[n - 1], 4) for n in (1, 10, 50, 100, 200)
                           if n <= len(totals)},
        "content_init_loss_at": {str(n): round(from_content.history[n - 1]["total"], 4)
                                 for n in (1, 10, 50, 100, 200) if n <= from_content.iterations_run}}
    # for each budget of the content start: the iterations the hybrid needs to reach its loss
    report["hybrid"]["iterations_to_match_content_init_at"] = {
        str(budget): next((i + 1 for i, t in enumerate(totals)
                           if t <= from_content.history[budget - 1]["total"]), None)
        for budget in (10, 20, 50, 100, 200, 500) if budget <= from_content.iterations_run}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("frames_per_second", "training", "style_loss", "hybrid")},
                     indent=1))


if __name__ == "__main__":
    main()
