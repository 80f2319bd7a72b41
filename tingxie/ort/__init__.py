"""The ONNX Runtime backend: the PyTorch model exported once, then run with NumPy and without torch."""
