"""nstvideo: neural style transfer (Gatys et al.) for stills of any size and for video."""

__version__ = "0.1.0"

import os as _os
import sys as _sys

if _sys.platform == "darwin":  # read by torch when it loads: what MPS lacks runs on the CPU
    _os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from .config import (LossConfig, ModelConfig, OptimConfig, OutputConfig, ScheduleConfig,
                     StylizeConfig)
from .optim.engine import OptimResult, Progress, optimize
from .errors import InputError, LayerError, NstError, UsageError, WeightsError
from .still.stylize import StylizeResult, build_network, stylize_image

__all__ = [
    "LossConfig", "ModelConfig", "OptimConfig", "OutputConfig", "ScheduleConfig", "StylizeConfig",
    "OptimResult", "Progress", "optimize", "InputError", "LayerError", "NstError", "UsageError",
    "WeightsError", "StylizeResult", "build_network", "stylize_image", "__version__",
]
