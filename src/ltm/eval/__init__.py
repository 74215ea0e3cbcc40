"""Eval: a trained run -> eval.json (held-out bits per byte against baselines, samples)."""

from ltm.eval.evaluate import EvalError, evaluate

__all__ = ["EvalError", "evaluate"]
