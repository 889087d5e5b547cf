"""Convert PaddleDetection 2.x's solov2_r50_enhance_coco.pdparams for config 3.

    python 1_paddle_solov2_r50_enhance_coco2paddle.py [SOURCE] [--output OUT] [key=value ...]

SOURCE defaults to solov2_r50_enhance_coco.pdparams; OUT to
dygraph_solov2_r50_enhance_coco.pdparams.
"""

import os
import sys

from tools.errors import entry_point
from tools.weights.convert import converter_main

main = entry_point(converter_main)

if __name__ == "__main__":
    sys.exit(main(os.path.basename(__file__)))
