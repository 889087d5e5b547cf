"""Inference: the Python API (api: ``Predictor``), predictions as data (instances:
``Result``, RLE, polygons), the one threaded prediction loop (predictor), the backends it
runs -- the dynamic-graph model, Paddle Inference and ONNX Runtime (backends) -- drawing
results (visualize), where outputs go (outputs) and videos and cameras (video)."""

__all__ = ["Predictor", "Result"]

# How a Predictor of an exported engine given no model_dir gets one:
# ``exporter(cfg, model_path, engine, download=, log=) -> folder``. Exporting belongs to
# tools.deploy, a layer above this package, which may therefore not import it; the
# top-level package tools/__init__.py, which sits above every layer, sets this to
# tools.deploy.cache.exported_model_dir (loaded only when first called).
exporter = None


def __getattr__(name):
    # ``from tools.inference import Predictor`` without importing Paddle for every user of
    # this package's lighter modules.
    if name == "Predictor":
        from .api import Predictor

        return Predictor
    if name == "Result":
        from .instances import Result

        return Result
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
