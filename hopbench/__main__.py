import sys

from hopbench.cli import main

sys.exit(main())
