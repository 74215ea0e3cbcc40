"""Train: a dataset -> a trained checkpoint, its metrics and resumable checkpoints."""

from ltm.train.loop import TrainError, build_model, train

__all__ = ["TrainError", "build_model", "train"]
