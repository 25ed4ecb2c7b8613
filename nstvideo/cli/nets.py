"""Trained style networks as the command line uses them: loaded onto the device, run over an
image in tiles that fit, and ``--init net:STYLE.nstnet``, the optimization's start painted by one
(``cli.still`` and ``cli.video``; ``cli.feedforward`` paints with one alone)."""

from __future__ import annotations

import sys
from typing import Callable, Optional

import torch

from ..config import StylizeConfig
from ..errors import UsageError

NET_INIT = "net:"


def init_network_path(init: str) -> Optional[str]:
    """The network file of ``--init net:PATH``, else None."""
    if not init.startswith(NET_INIT):
        return None
    path = init[len(NET_INIT):]
    if not path:
        raise UsageError("--init net: needs a network file, e.g. --init net:candy.nstnet")
    return path


def load_net(path: str, device: torch.device, quiet: bool):
    from ..network import netfile

    style_net = netfile.load(path)
    if not quiet:
        print(f"nstvideo: network {style_net.describe()}", file=sys.stderr)
    return style_net.net.to(device)


def painter(net, config: StylizeConfig, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """image -> the network's painting, in tiles of --tile-size, or of what fits the device."""
    from ..runtime import available_memory
    from ..still.painting import auto_tile, paint
    from ..still.schedule import DEVICE_FILL

    def run(image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        tile = config.schedule.tile_size or auto_tile(height, width,
                                                      int(DEVICE_FILL * available_memory(device)))
        return paint(net, image, tile=tile)

    return run


def init_painting(init: str, content: Optional[torch.Tensor], config: StylizeConfig,
                  height: int, width: int) -> Optional[torch.Tensor]:
    """For ``--init net:PATH``: the network's painting of the content at the output size."""
    from .. import runtime
    from ..still.stylize import resize

    path = init_network_path(init)
    if path is None:
        return None
    if content is None:
        raise UsageError("--init net: paints a content image; a texture has none")
    device = runtime.resolve_device(config.model.device)
    net = load_net(path, device, config.output.quiet)
    return painter(net, config, device)(resize(content, height, width))
