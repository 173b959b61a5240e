"""The INT8 recipes (which nodes stay float), importable without torch or onnx so that the
command line can list them in a runtime-only install."""

FLOAT_KEEP_RECIPES = ("none", "depthwise", "depthwise+first")  # export_int8's keep_float
