"""Everything before deployment: data, training, evaluation, tuning.

``synth`` draws synthetic shapes (datasets and clips, for tests and demos); ``dataset`` checks,
splits and imports datasets; ``train`` fine-tunes and exports. Ultralytics and torch are imported
inside the functions that need them, never at module import: ``edge-rt run`` must not pay for them.

May import: errors, ops/, detect/, engines/, tracking/. A tool: the runtime never imports it.
"""
