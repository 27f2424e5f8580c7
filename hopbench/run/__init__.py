"""One run as phases, and the runs of one command (sessions, sweeps, suites)."""
