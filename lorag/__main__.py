import sys

from lorag.cli.main import main

sys.exit(main())
