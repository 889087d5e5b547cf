"""Everything around the network: one sub-package per stage, each importing only the ones
above it in this list (config/ and model/ sit between runtime.py and data/).

    errors.py, runtime.py  the one UserError base; CPU threads and other process settings
    data/         COCO-style sets, image reading and preprocessing, training set, transforms,
                  targets, synthetic shapes
    weights/      safe weight-file readers, published name maps, conversion, loading,
                  stand-in files
    inference/    the prediction loop, its backends (dygraph, Paddle Inference, ONNX),
                  drawing
    evaluation/   COCO results, COCOeval, a pass over a COCO-style set, eval CLI pieces
    training/     building from a config, optimizer and EMA, the training loop, checkpoints
    deploy/       export to Paddle Inference and ONNX; timing the backends (benchmark)
    dev/          scripts for developers: regenerate the reference goldens

The files directly in tools/ besides errors.py and runtime.py are thin scripts
(export_model.py, benchmark.py, benchmark_pipeline.py, make_synthetic_coco.py); no module
imports a script or tests/.
"""

from .runtime import quiet_paddle_import

quiet_paddle_import()
