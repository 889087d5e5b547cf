"""SOLOv2 network, its parts and its post-processing."""

import warnings

# Importing paddle warns that the C++-extension builder found no ccache; we build none.
warnings.filterwarnings("ignore", message="No ccache found")

from .solov2 import PostProcess, SOLOv2, build_model, build_postprocess  # noqa: E402

__all__ = ["SOLOv2", "PostProcess", "build_model", "build_postprocess"]
