"""``python -m hopbench.services``: one service replica (see hopbench.services.process)."""

from hopbench.services.process import main

main()
