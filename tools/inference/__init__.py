"""Inference: the Python API (api: ``Predictor``), predictions as data (instances:
``Result``, RLE, polygons), the one threaded prediction loop (predictor), the backends it
runs -- the dynamic-graph model, Paddle Inference and ONNX Runtime (backends) -- and drawing
results (visualize)."""

__all__ = ["Predictor", "Result"]


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
