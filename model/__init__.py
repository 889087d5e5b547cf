"""SOLOv2 network (solov2), its parts (resnet, fpn, head, mask_feat_head, layers), its loss
(loss), post-processing (postprocess: numpy, after the network; postprocess_graph: the same
as tensor ops) and the layers an export saves (export)."""

from tools.runtime import quiet_paddle_import

quiet_paddle_import()

from .postprocess import PostProcess, build_postprocess  # noqa: E402
from .solov2 import SOLOv2, build_model  # noqa: E402

__all__ = ["SOLOv2", "PostProcess", "build_model", "build_postprocess"]
