"""``python -m raftkit.cli``: the ``raftkit`` command."""

import sys

from raftkit.cli.commands import main

sys.exit(main())
