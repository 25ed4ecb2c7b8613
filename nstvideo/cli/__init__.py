"""The command line: the parser and dispatch (``main``), the option and error helpers every
command shares (``options``), and one module per command family (``still``: stylize an image and
texture; ``video``: stylize a video and eval; ``explore``: layers and sweep).

The top of the import graph: it may import everything, nothing imports it."""

from .main import build_parser, config_from_args, main

__all__ = ["build_parser", "config_from_args", "main"]
