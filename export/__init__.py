"""siamese.export: ONNX and TorchScript export of trained checkpoints, with parity gates."""
