"""Conversions in and out: the original ECCV16 release weights (`eccv16`) and ONNX export (`onnx`)."""
