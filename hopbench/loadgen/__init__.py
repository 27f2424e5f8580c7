"""The load generator: schedules, the ticker, the worker and its process."""
