"""The seed README's lock manager example.

Start one process per node, each with its own address first, e.g.:

    python examples/lock.py 127.0.0.1:4321 127.0.0.1:4322 127.0.0.1:4323
    python examples/lock.py 127.0.0.1:4322 127.0.0.1:4321 127.0.0.1:4323
    python examples/lock.py 127.0.0.1:4323 127.0.0.1:4321 127.0.0.1:4322

The README's code with the imports changed from pysyncobj to raftkit, the
addresses (the README's 'serverA:4321' literals) taken from the command
line, and a print standing for "do some actions". All nodes try at once:
exactly one gets the lock, and keeps it (the manager refreshes it in the
background) while the process runs; the others are refused. Each process
then serves the others until stdin closes (Ctrl-D) or Ctrl-C; the lock is
released automatically 75 seconds after its holder stopped.
"""

import contextlib
import sys

from raftkit import SyncObj
from raftkit.batteries import ReplLockManager

selfAddr, partners = sys.argv[1], sys.argv[2:]  # the README: 'serverA:4321', ['serverB:4321', 'serverC:4321']

lockManager = ReplLockManager(autoUnlockTime=75) # Lock will be released if connection dropped for more than 75 seconds
syncObj = SyncObj(selfAddr, partners, consumers=[lockManager])
if lockManager.tryAcquire('testLockName', sync=True):
  # do some actions
  print('acquired testLockName', flush=True)

# -- not in the README: report, then keep serving ---------------------------------------

print("holds testLockName:", lockManager.isAcquired("testLockName"), flush=True)
with contextlib.suppress(KeyboardInterrupt):
    sys.stdin.read()  # keep serving the other nodes (and the lock) until stdin closes
syncObj.destroy()
