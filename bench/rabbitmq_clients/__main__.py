"""Run the comparison: python -m bench.rabbitmq_clients [--url URL]"""

import sys

from bench.rabbitmq_clients.driver import main

if __name__ == "__main__":
    sys.exit(main())
