"""ONNX export of SCR (``python -m export.onnx``): not built yet, planned as a thin layer over ``scr_core``."""
