"""The detection stages around the engine: frames in, boxes out.

`batching` (the newest frame of each ready source, bounded wait), `letterbox` (where a frame goes in the
model input), `preprocess` (letterbox into reused buffers, or pack frames for in-graph letterbox), `model_info` (what a model's metadata says),
`postprocess` (decode the YOLO head, NMS, boxes back to source pixels) and `collect` (`run --collect`:
hard frames saved as a dataset). The engines themselves are in engines/.

May import: errors, ops/, camera/ (the Frame they carry). tests/test_imports.py holds the rule.
"""
