"""Everything around the network: one sub-package per stage, each importing only the ones
above it in this list (config/ and model/ sit between runtime.py and data/).

    runtime.py    process settings: the AMD MKL fast path, CPU threads, quiet imports
    errors.py     the one UserError base and the entry_point wrapper
    files.py      atomic writes, writability checks
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

The files directly in tools/ besides runtime.py, errors.py and files.py are thin scripts
(export_model.py, benchmark.py, benchmark_pipeline.py, benchmark_train.py,
make_synthetic_coco.py); no module
imports a script or tests/. This file, above every layer, is where one layer is handed a
function of a higher one: the inference Predictor's exporter (see the end).
"""

from .runtime import amd_mkl_fast_path, quiet_paddle_import

# Every script imports tools (config/ imports tools.errors first) before anything imports
# Paddle, so this is the one place that runs early enough for MKL to see the variable.
amd_mkl_fast_path()
quiet_paddle_import()


def _export_on_first_use(cfg, model_path, engine, **kwargs):
    # tools.inference.Predictor(engine="onnx") without a folder exports into the cache;
    # the export code (tools/deploy) loads only when that happens.
    from .deploy.cache import exported_model_dir

    return exported_model_dir(cfg, model_path, engine, **kwargs)


from . import inference  # noqa: E402 - light: its modules load on first use

inference.exporter = _export_on_first_use
