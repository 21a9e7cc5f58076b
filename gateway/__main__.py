"""`python -m gateway` is the `shareguard` command."""

import sys

from gateway.cli import main

sys.exit(main())
