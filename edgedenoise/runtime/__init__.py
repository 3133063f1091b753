"""The streaming runtime: sources -> bounded queues -> denoiser -> sinks, with statistics.

    from edgedenoise import Denoiser
    from edgedenoise.runtime import Pipeline, open_sink, open_source

    stats = Pipeline(open_source("demo"), open_sink("out.mp4"), Denoiser.load(), mode="offline",
                     sigma=25, max_frames=100).run()

Imports neither torch nor triton (a Jetson runtime may have neither).
"""
from __future__ import annotations

from .pipeline import Pipeline, PipelineError
from .sinks import Result, Sink, open_sink, parse_sink
from .sources import Source, open_source, parse_source
from .stats import RunStats

__all__ = ["Pipeline", "PipelineError", "Result", "RunStats", "Sink", "Source", "open_sink", "open_source",
           "parse_sink", "parse_source"]
