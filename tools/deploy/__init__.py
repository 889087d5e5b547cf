"""Deployment: exporting a config's weights to Paddle Inference and ONNX (export), and
timing every backend stage by stage on the same images (benchmark)."""
