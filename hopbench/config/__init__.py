"""Configuration: topologies, settings, suites and deployments, read and checked."""
