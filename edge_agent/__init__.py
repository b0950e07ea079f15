"""Affectwatch edge agent: capture → detect → track → classify → publish.

Imports neither Django nor torch, so it installs on a Jetson with numpy, OpenCV and
ONNX Runtime / TensorRT only.
"""
