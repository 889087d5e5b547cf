"""SOLOv2 network, its parts and its post-processing."""

from .solov2 import SOLOv2, PostProcess, build_model, build_postprocess

__all__ = ["SOLOv2", "PostProcess", "build_model", "build_postprocess"]
