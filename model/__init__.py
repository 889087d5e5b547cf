"""SOLOv2 network, its parts and its post-processing."""

import warnings

# Importing paddle warns that the C++-extension builder found no ccache; we build none.
warnings.filterwarnings("ignore", message="No ccache found")

from .solov2 import (  # noqa: E402
    PostProcess,
    SOLOv2,
    SOLOv2Inference,
    build_inference_model,
    build_model,
    build_postprocess,
)

__all__ = ["SOLOv2", "SOLOv2Inference", "PostProcess", "build_inference_model",
           "build_model", "build_postprocess"]
