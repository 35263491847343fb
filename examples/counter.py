"""The seed README's first example: a plain class made replicated.

Start one process per node, each with its own address first, e.g.:

    python examples/counter.py 127.0.0.1:4321 127.0.0.1:4322 127.0.0.1:4323
    python examples/counter.py 127.0.0.1:4322 127.0.0.1:4321 127.0.0.1:4323
    python examples/counter.py 127.0.0.1:4323 127.0.0.1:4321 127.0.0.1:4322

The class is the README's, with the import changed from pysyncobj to
raftkit and the addresses (the README's 'serverA:4321' literals) taken from
the command line. Each process increments the counter once and prints it
when every node's increment has arrived, then serves its partners until its
standard input closes (Ctrl-D) or Ctrl-C.
"""

import contextlib
import sys
import time

from raftkit import SyncObj, replicated

selfAddr, partners = sys.argv[1], sys.argv[2:]  # the README: 'serverA:4321', ['serverB:4321', 'serverC:4321']


class MyCounter(SyncObj):
    def __init__(self):
        super(MyCounter, self).__init__(selfAddr, partners)
        self.__counter = 0

    @replicated
    def incCounter(self):
        self.__counter += 1

    def getCounter(self):
        return self.__counter


# -- not in the README: call incCounter here, check the value everywhere --------------------

if __name__ == "__main__":
    counter = MyCounter()
    counter.incCounter(sync=True)
    deadline = time.monotonic() + 60
    while counter.getCounter() < 1 + len(partners):  # every node's increment arrives here too
        if time.monotonic() > deadline:
            sys.exit(f"only {counter.getCounter()} increments arrived")
        time.sleep(0.01)
    print("counter:", counter.getCounter(), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # keep serving the other nodes until stdin closes
    counter.destroy()
