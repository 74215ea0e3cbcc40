"""Train: a dataset -> a trained checkpoint, its metrics and resumable checkpoints."""

from ltm.train.loop import TrainError
from ltm.train.pretrain import train

__all__ = ["TrainError", "train"]
