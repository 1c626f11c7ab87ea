import sys

from mirage.cli import main

sys.exit(main())
