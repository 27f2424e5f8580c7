"""hopbench: what each style of microservice communication costs, and why.

The package is layered, low to high (``make lint`` holds it, see pyproject.toml):
errors, clock, proto → config → measure → transports → brokers → protocol →
services, loadgen → control → results → run → render → cli. docs/design.md walks
through it.
"""
