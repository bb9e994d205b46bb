"""Image + text fusion classifiers: configuration, encoders, training, checkpoints and inference.

Submodules are imported where used (``from model.predictor import Predictor``); importing ``model``
itself loads nothing heavy.
"""
