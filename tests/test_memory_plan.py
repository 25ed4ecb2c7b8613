"""Poster plans that fit: every scale's planned peak stays within the memory there is (or
--max-memory), room is made in order of least harm and said, and a job that cannot fit is refused
before any work with the figures and what would fit. Device and host memory are patched: these
are plans, not runs (benchmarks/bench_tiling.py measures a real run against its bound)."""

from __future__ import annotations

import re

import pytest
import torch

from nstvideo.cli.main import main
from nstvideo.config import StylizeConfig
from nstvideo.errors import UsageError
from nstvideo.network.features import canonical_layers, layer_table
from nstvideo.still import stylize
from nstvideo.still.schedule import (DEVICE_FILL, HOST_FILL, MIN_LBFGS_HISTORY, canvas_bytes,
                                     canvas_state_bytes, content_target_bytes,
                                     estimate_memory_mib, network_bytes)

GIB = 1 << 30
MIB = 1 << 20
HELD = 1 * GIB  # what "this process" holds when a CPU run under --max-memory is planned


def patch_memory(monkeypatch, device_gib: float, host_gib: float) -> None:
    monkeypatch.setattr(stylize, "available_memory", lambda device: int(device_gib * GIB))
    monkeypatch.setattr(stylize, "host_available_memory", lambda: int(host_gib * GIB))
    monkeypatch.setattr(stylize, "resident_memory", lambda: HELD)


def independent_peaks(config: StylizeConfig, step, gpu: bool) -> tuple[float, float]:
    """(device, host) bytes of a planned step, added up here from the published pieces of the
    memory model rather than by the planner's own sum."""
    table = layer_table("vgg19")
    layers = canonical_layers(config.loss.content_layers + config.loss.style_layers, "vgg19")
    value_bytes = 2 if config.model.precision == "bf16" else 4
    side = (step.tile_size, step.tile_size) if step.tile_size else (step.height, step.width)
    block = estimate_memory_mib(table, layers, *side, value_bytes) * MIB
    history = step.lbfgs_history if config.optim.optimizer == "lbfgs" else 0
    state = canvas_state_bytes(step.height, step.width, history, config.optim.optimizer)
    targets = content_target_bytes(table, ["relu4_2"], step.height, step.width)
    images = 2 * canvas_bytes(step.height, step.width)  # the start and the content at this scale
    if not gpu:
        return block + state + targets + images, 0.0
    device = block + (0 if step.canvas_on_host else state) + (0 if step.content_on_host else targets)
    host = images + (state if step.canvas_on_host else 0) + (2 * targets if step.content_on_host else 0)
    return device, host


WEIGHTS = network_bytes(layer_table("vgg19"), canonical_layers(
    StylizeConfig().loss.content_layers + StylizeConfig().loss.style_layers, "vgg19"))
SIZES = (1024, 2048, 3000, 4096, 6000, 8192, 12000, 16384)
# (device, device GiB, host GiB, --max-memory): CPUs with and without a bound, GPUs large and small
MACHINES = (("cpu", 24, 24, None), ("cpu", 64, 64, 4.0), ("cpu", 64, 64, 12.0),
            ("cuda", 80, 100, None), ("cuda", 80, 100, 24.0), ("cuda", 24, 32, None),
            ("cuda", 12, 16, None))


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: f"{m[0]}-{m[1]}G-host{m[2]}G-max{m[3]}")
def test_plans_never_exceed_the_budget_at_any_scale(monkeypatch, machine):
    """1k to 16k px, both optimizers, every precision: every scale of every plan fits the device
    (less the weights, and on a CPU under --max-memory less what the process holds) and the host,
    or the job is refused before it starts; never a plan that fails at a later scale."""
    kind, device_gib, host_gib, bound = machine
    patch_memory(monkeypatch, device_gib, host_gib)
    gpu = kind == "cuda"
    limit = min(device_gib, bound or device_gib) * GIB
    if bound is not None and not gpu:
        limit = min(device_gib * GIB, bound * GIB - HELD)
    device_room = DEVICE_FILL * (limit - WEIGHTS)
    host_room = HOST_FILL * host_gib * GIB
    refused = planned = 0
    for size in SIZES:
        for optimizer in ("lbfgs", "adam"):
            for precision in ("fp32", "tf32", "bf16"):
                config = StylizeConfig().replace(
                    schedule={"size": size}, optim={"optimizer": optimizer},
                    model={"precision": precision, "max_memory": bound})
                try:
                    steps = stylize.plan(config, size * 2 // 3, size, torch.device(kind))
                except UsageError as error:
                    assert "GiB" in str(error) and "does not fit" in str(error)
                    refused += 1
                    continue
                planned += 1
                assert steps[-1].long_side == size
                for step in steps:
                    device, host = independent_peaks(config, step, gpu)
                    assert device <= device_room, (size, optimizer, precision, step)
                    assert host <= host_room, (size, optimizer, precision, step)
                    assert step.peak_mib * MIB == pytest.approx(device)  # what --dry-run prints
                    assert step.peak_mib <= step.budget_mib
                    if optimizer == "lbfgs":
                        assert 1 <= step.lbfgs_history <= config.optim.lbfgs_history
                    if step.lbfgs_history is not None and step.lbfgs_history < MIN_LBFGS_HISTORY:
                        assert any("L-BFGS history" in note for note in step.notes)
    assert planned  # the sweep plans something on every machine
    if machine == ("cpu", 64, 64, 4.0):
        assert refused  # and 16k px within 4 GiB is refused


def test_room_is_made_in_order_of_least_harm_and_said(monkeypatch):
    """A CPU run under a tightening bound: first the history comes down to 5 pairs, then the
    blocks shrink (a note says so), then the history goes below 5 (a note suggests Adam), then
    the job is refused."""
    patch_memory(monkeypatch, 64, 64)
    config = StylizeConfig().replace(schedule={"size": 4096, "min_scale": 4096},
                                     model={"precision": "bf16"})
    cpu = torch.device("cpu")

    def final(bound):
        return stylize.plan(config.replace(model={"max_memory": bound}), 2730, 4096, cpu)[-1]

    roomy, tighter, tight, tightest = final(16.0), final(5.0), final(3.8), final(3.2)
    assert MIN_LBFGS_HISTORY < roomy.lbfgs_history and not roomy.notes
    assert tighter.lbfgs_history == MIN_LBFGS_HISTORY and tighter.tile_size < roomy.tile_size
    assert [note for note in tighter.notes if "blocks of" in note]
    assert tight.lbfgs_history < MIN_LBFGS_HISTORY
    assert tightest.lbfgs_history < tight.lbfgs_history
    assert any("--optimizer adam" in note for note in tightest.notes)
    with pytest.raises(UsageError, match="does not fit"):
        final(3.0)


def test_a_gpu_keeps_the_canvas_on_the_host_only_when_the_host_has_room(monkeypatch):
    """A 12k poster on a 12 GB GPU: the canvas state goes to host memory, which is checked too;
    with too little host memory the blocks shrink so that the canvas fits on the device."""
    cuda = torch.device("cuda")
    config = StylizeConfig().replace(schedule={"size": 12000, "min_scale": 12000},
                                     model={"precision": "bf16"})
    patch_memory(monkeypatch, 12, 64)
    roomy_host = stylize.plan(config, 8000, 12000, cuda)[-1]
    assert roomy_host.canvas_on_host and roomy_host.host_peak_mib <= roomy_host.host_budget_mib
    patch_memory(monkeypatch, 24, 16)
    small_host = stylize.plan(config, 8000, 12000, cuda)[-1]
    assert not small_host.canvas_on_host
    assert small_host.peak_mib <= small_host.budget_mib
    assert small_host.host_peak_mib <= small_host.host_budget_mib
    patch_memory(monkeypatch, 12, 8)
    with pytest.raises(UsageError, match="host memory"):
        stylize.plan(config, 8000, 12000, cuda)


def test_too_small_a_budget_is_refused_with_the_numbers_and_what_fits(monkeypatch, tmp_path, capsys,
                                                                      content_path, style_path):
    """One line, exit 2, before any work (no output file): the scale, the memory it needs at the
    least and what is there, and options that do fit: a --size and a --max-memory, both of
    which then plan."""
    patch_memory(monkeypatch, 64, 64)

    def no_work(*args, **kwargs):
        raise AssertionError("the job started: it should have been refused by the plan")

    monkeypatch.setattr(stylize, "build_network", no_work)
    output = tmp_path / "out.png"
    argv = ["stylize", str(content_path), "--style", str(style_path), "--weights", "random",
            "--device", "cpu", "--precision", "bf16", "--size", "6000", "--max-memory", "4",
            "-o", str(output)]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and not output.exists()
    numbers = re.search(r"scale \d+ \((\d+)x(\d+)\) needs ([\d.]+) GiB of memory .*; ([\d.]+) GiB "
                        r"is there \(--max-memory\); would fit: --size (\d+) \(up to (\d+) ", line)
    assert numbers, line
    needed, there, size, at_all = float(numbers[3]), float(numbers[4]), int(numbers[5]), int(numbers[6])
    assert int(numbers[1]) == 6000 and needed > there == pytest.approx(4.0, abs=0.05)
    bound = float(re.search(r"--max-memory ([\d.]+)$", line)[1])
    assert bound >= needed
    config = StylizeConfig().replace(model={"precision": "bf16", "max_memory": 4.0})
    cpu = torch.device("cpu")

    def notes(size, **model):
        steps = stylize.plan(config.replace(schedule={"size": size}, model=model), 48, 64, cpu)
        return [note for step in steps for note in step.notes]

    assert notes(size) == [] and notes(size + 16)  # as asked, and the next size up gives way
    assert notes(at_all)
    with pytest.raises(UsageError):
        notes(at_all + 16)
    assert notes(6000, max_memory=bound) is not None


def test_dry_run_prints_each_scales_peak_beside_the_budget(monkeypatch, capsys, content_path,
                                                           style_path):
    patch_memory(monkeypatch, 64, 64)
    assert main(["stylize", str(content_path), "--style", str(style_path), "--weights", "random",
                 "--device", "cpu", "--precision", "bf16", "--size", "4096", "--max-memory", "4",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    peaks = re.findall(r"peak ~(\d+) of (\d+) MiB on cpu", out)
    assert len(peaks) == out.count("  scale ") >= 3
    assert all(int(peak) <= int(budget) for peak, budget in peaks)
    assert "note: L-BFGS history of" in out and "note: blocks of" in out


def test_video_frames_planned_block_wise_fit_or_are_refused(monkeypatch, capsys):
    """A frame goes through the same planner: within the budget, what it gave up on stderr."""
    from nstvideo.cli.video import frame_tiling

    patch_memory(monkeypatch, 64, 64)
    config = StylizeConfig().replace(model={"precision": "bf16", "max_memory": 3.4})
    step = frame_tiling(config, 2730, 4096, torch.device("cpu"))
    device, _ = independent_peaks(config, step, gpu=False)
    assert step.tile_size and device <= DEVICE_FILL * (3.4 * GIB - HELD - WEIGHTS)
    assert "note: frames (4096x2730): L-BFGS history of" in capsys.readouterr().err
    with pytest.raises(UsageError, match="does not fit"):
        frame_tiling(config.replace(model={"max_memory": 2.8}), 2730, 4096, torch.device("cpu"))
