"""Deployment: exporting a config's weights to Paddle Inference and ONNX (export)."""
