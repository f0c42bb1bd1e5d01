"""ONNX export of SCR (``python -m export.onnx``) and the torch-free runtime that runs an exported folder
(``export.runtime.OnnxVLM``, ``python -m export.run``): SCR baked into the graphs as ``ai.scr`` ops."""
