"""A cluster that leaves a joint configuration must stay electable when its
leader dies right after committing the leave (found by a soak of
tests/property/test_raft_stateful.py; kept as a regression).

Voters n1 n2 n3 go through the joint configuration (n3 | n1 n2 n3) to the
sole voter n3. The leader n2 commits the leaving entry (index 4) with n3's
acknowledgement, applies it and is thereby removed; it crashes before n3
learns that index 4 committed, after n1 received one more entry (index 7,
which can never commit: n3, the only voter, lacks it) and the commit index.

Configurations take effect when applied in raftkit (as in etcd-io/raft):
n3 has applied only the joint configuration, so it needs a majority of
n1 n2 n3 as well. n1 and n2 have applied their removal, so they never
campaign (``Raft.promotable``), and they refuse n3 their vote (their logs,
with index 7, are more up to date: §5.4.1). Only a leader tells a node what
is committed, and none can be elected: the knowledge that the joint
configuration was left is stranded on the nodes it removed. (Under the
dissertation's rule, configurations in force once appended, n3 would use
the new configuration at once and elect itself.)

The fix: a node that refuses a vote tells the candidate what it knows is
committed, up to the candidate's last entry (index and term); a candidate
holding that very entry has, by Log Matching, the same committed prefix
and may commit it. n3 then applies the leaving entry and elects itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

STATEFUL = Path(__file__).resolve().parent.parent / "property" / "test_raft_stateful.py"


def _stateful() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_raft_stateful_for_joint_liveness", STATEFUL)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_removed_voters_with_longer_log_leave_the_new_voter_electable() -> None:
    machine = _stateful().RaftCluster()
    machine.start(size=3, seed=1, pre_vote=False, batch=4, clocked=False)
    machine.change_voters(picks=4, rounds=1)
    machine.leave_behind(count=1, i=0, rounds=1)
    machine.leave_behind(count=3, i=1, rounds=1)
    machine.change_then_leader_dies(i=0, j=0)
    machine.partition(members={0, 1})
    machine.crash_leader()
    machine.deliver_everything()
    machine.safety()
    c = machine.cluster
    # The situation described above, as the soak left it.
    n1, n3 = c.nodes["n1"].raw.raft, c.nodes["n3"].raw.raft
    assert c.nodes["n2"].raw is None  # the removed leader crashed
    assert not n1.promotable and n1.log.committed == 6 and n1.log.last_index() == 7
    assert n3.conf.joint and n3.log.committed == 2 and n3.log.last_index() == 6
    machine.teardown()  # heals, restarts everyone, waits for a leader and a fresh commit
    assert c.leader() == "n3"
