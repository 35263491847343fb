"""The seed README's "Counter & Dict" batteries example.

Start one process per node, each with its own address first, e.g.:

    python examples/batteries.py 127.0.0.1:4321 127.0.0.1:4322 127.0.0.1:4323
    python examples/batteries.py 127.0.0.1:4322 127.0.0.1:4321 127.0.0.1:4323
    python examples/batteries.py 127.0.0.1:4323 127.0.0.1:4321 127.0.0.1:4322

The middle part is the README's code with the imports changed from
pysyncobj to raftkit and the addresses (the README's 'serverA:4321'
literals) taken from the command line. Every node runs it, so the counter
is set to 42 and increased by 10 three times, interleaved: the first print
shows whatever this node has applied by then. The last part (not in the
README) waits until every node has done its calls, prints the final state,
the same on every node, and serves the others until stdin closes.
"""

import contextlib
import sys
import time

from raftkit import SyncObj
from raftkit.batteries import ReplCounter, ReplDict

selfAddr, partners = sys.argv[1], sys.argv[2:]  # the README: 'serverA:4321', ['serverB:4321', 'serverC:4321']

counter1 = ReplCounter()
counter2 = ReplCounter()
dict1 = ReplDict()
syncObj = SyncObj(selfAddr, partners, consumers=[counter1, counter2, dict1])

counter1.set(42, sync=True) # set initial value to 42, 'sync' means that operation is blocking
counter1.add(10, sync=True) # add 10 to counter value # increment counter value by one
dict1.set('testKey1', 'testValue1', sync=True)
dict1['testKey2'] = 'testValue2' # this is basically the same as previous, but asynchronous (non-blocking)
print(counter1, counter2, dict1['testKey1'], dict1.get('testKey2'))

# -- not in the README: wait for every node's calls, print the final state ------------------

dict1.set("done:" + selfAddr, True, sync=True)  # logged after this node's own calls
everyone = ["done:" + a for a in [selfAddr, *partners]]
deadline = time.monotonic() + 60
while not all(dict1.get(k) for k in everyone):
    if time.monotonic() > deadline:
        sys.exit("the other nodes did not finish")
    time.sleep(0.01)
print("final:", counter1.get(), counter2.get(), dict1.get("testKey1"), dict1.get("testKey2"), flush=True)
with contextlib.suppress(KeyboardInterrupt):
    sys.stdin.read()  # keep serving the other nodes until stdin closes
syncObj.destroy()
