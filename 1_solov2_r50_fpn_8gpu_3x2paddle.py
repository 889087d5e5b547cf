"""Convert the original SOLO SOLOv2_R50_3x.pth (PyTorch, mmcv checkpoint) for config 0.

    python 1_solov2_r50_fpn_8gpu_3x2paddle.py [SOURCE] [--output OUT] [key=value ...]

SOURCE defaults to SOLOv2_R50_3x.pth; OUT to dygraph_solov2_r50_fpn_8gpu_3x.pdparams.
Needs PyTorch (the CPU build is enough) to read the file.
"""

import os
import sys

from tools.errors import entry_point
from tools.weights.convert import converter_main

main = entry_point(converter_main)

if __name__ == "__main__":
    sys.exit(main(os.path.basename(__file__)))
