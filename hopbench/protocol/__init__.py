"""The control protocol between the orchestrator and its processes: typed commands and
events, one codec, and the child's end of the channel (pipes or an agent's TCP)."""
