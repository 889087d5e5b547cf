"""Convert PaddleDetection 0.5's SOLOv2-Light R50-vd-DCN 512 weights for config 2.

    python 1_paddle_solov2_light_r50_vd_fpn_dcn_512_3x2paddle.py [SOURCE] [--output OUT]

SOURCE defaults to solov2_light_r50_vd_fpn_dcn_512_3x.pdparams; OUT to
dygraph_solov2_light_r50_vd_fpn_dcn_512_3x.pdparams.
"""

import os
import sys

from tools.errors import entry_point
from tools.weights.convert import converter_main

main = entry_point(converter_main)

if __name__ == "__main__":
    sys.exit(main(os.path.basename(__file__)))
