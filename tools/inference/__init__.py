"""Inference: the one threaded prediction loop (predictor), the backends it runs -- the
dynamic-graph model, Paddle Inference and ONNX Runtime (backends) -- and drawing results
(visualize)."""
