"""Eval: a trained run -> eval.json (bits per byte, memorization, probes, diversity).

The heavy entry point lives in ltm.eval.evaluate; importing the package stays light, so the probes
and metrics can be used without loading torch."""
