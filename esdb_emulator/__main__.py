import sys

from esdb_emulator.cli import main

sys.exit(main())
