"""Convert PaddleDetection's SOLOv2 R50-FPN 3x weights for config 0.

    python 1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py [SOURCE] [--output OUT] [key=value ...]

SOURCE defaults to solov2_r50_fpn_3x.pdparams (PaddleDetection 0.5, static graph); OUT to
dygraph_paddle_solov2_r50_fpn_3x.pdparams. The PaddleDetection 2.x model-zoo file
solov2_r50_fpn_3x_coco.pdparams is recognised by its tensor names and converts the same way;
named as published, it is written to dygraph_solov2_r50_fpn_3x_coco.pdparams (config 0's
catalogue, config/solov2_r50_fpn_8gpu_3x.py, lists both):

    python 1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py solov2_r50_fpn_3x_coco.pdparams
"""

import os
import sys

from tools.errors import entry_point
from tools.weights.convert import converter_main

main = entry_point(converter_main)

if __name__ == "__main__":
    sys.exit(main(os.path.basename(__file__)))
