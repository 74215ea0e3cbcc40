"""ltm: a workbench for training small language models that think in scenes.

The pipeline, one subpackage per stage: ingest -> scenes -> build -> train -> eval -> report.
"""

__version__ = "0.1.0"
