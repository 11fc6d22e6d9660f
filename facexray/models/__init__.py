"""The X-ray network (HRNet backbone + X-ray head) and its checkpoint format.

Example:
    >>> "xray_hrnet_w18_small_v2" in list_models()
    True
"""

from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_imagenet_checkpoint,
    random_model,
    read_metadata,
    save_checkpoint,
)
from .hrnet import HRNet, hrnet
from .xray import DEFAULT_ARCH, INPUT_SIZE, OUTPUT_NAMES, XrayNet, create_model, list_models

__all__ = ["CheckpointError", "DEFAULT_ARCH", "HRNet", "INPUT_SIZE", "OUTPUT_NAMES", "XrayNet", "create_model",
           "hrnet", "list_models", "load_checkpoint", "load_imagenet_checkpoint", "random_model", "read_metadata",
           "save_checkpoint"]
