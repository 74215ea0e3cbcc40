"""Train: a dataset -> a trained checkpoint and its metrics."""

from ltm.train.loop import TrainError, train

__all__ = ["TrainError", "train"]
