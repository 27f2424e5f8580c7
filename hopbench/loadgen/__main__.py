"""``python -m hopbench.loadgen``: one load worker (see hopbench.loadgen.process)."""

from hopbench.loadgen.process import main

main()
