import sys

from radsearch.cli.main import main

sys.exit(main())
