"""The measurement core: histograms, the recorder, per-second series, merging, usage."""
