"""The commit index a Ready does not write (runtime.log_writes) and a state
machine ahead of the stored commit after a crash: the membership of the
entries in between survives (found by review)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftkit.core.membership import encode_change
from raftkit.core.types import HardState
from raftkit.storage.lmdb_log_store import LmdbLogStore
from raftkit.testing.cluster import LocalCluster, fast_config, wait_until
from raftkit.testing.kv import FileKeyValueStateMachine, KeyValueStateMachine, set_command


def crash(node: Any) -> None:
    """Stop as kill -9 would: what the log store holds stays, the commit
    index waiting in LogWrites is not written."""
    node._log_writes.flush = lambda: None
    node.stop()


def test_a_config_entry_between_the_stored_commit_and_a_durable_state_machine_is_not_lost(
    tmp_path: Path,
) -> None:
    cfg = dict(log_compaction_min_entries=10**6, log_compaction_keep=0)
    with LocalCluster(3) as cluster:
        for a in cluster.addresses:
            sm = FileKeyValueStateMachine(tmp_path / f"{a}.json")
            cluster.add_node(a, sm, fast_config(data_dir=str(tmp_path / a), **cfg))
        lead = cluster.nodes[cluster.wait_leader()]
        for i in range(5):
            lead.propose(set_command(f"k{i}", i))
        follower = cluster.nodes[cluster.followers()[0]]
        fid = follower.id

        # On the leader, in one loop turn: add a learner (a config entry) and
        # submit a command right after it, so both reach a follower before
        # the commit index that covers them, which the follower then does not
        # write (a commit-only Ready). Timing decides; try a few learners.
        for n in range(4, 14):
            learner = f"node{n}"
            done: list[Any] = []
            config_index = lead.raw.raft.log.last_index() + 1

            def both(learner: str = learner, done: list[Any] = done, n: int = n) -> None:
                lead.raw.request_conf_change(encode_change("add_learner", learner, learner))
                lead.submit(set_command(learner, n), callback=lambda r, e: done.append((r, e)))

            lead.call_in_loop(both)
            wait_until(lambda done=done: done, what="the command after the config entry")
            wait_until(lambda lr=learner: lr in follower.applied_conf.learners, what="applied there")
            wait_until(lambda: follower.state_machine.applied_index == lead.state_machine.applied_index,
                       what="the follower to apply the command")
            if follower.log_store.hard_state().commit < config_index:
                break
        else:
            raise AssertionError("never got the stored commit below the config entry")
        crash(follower)

        # Restarted from its data: the durable state machine is past the config
        # entry, the stored commit index before it.
        again = cluster.add_node(fid, FileKeyValueStateMachine(tmp_path / f"{fid}.json"),
                                 fast_config(data_dir=str(tmp_path / fid), **cfg))
        assert config_index <= again.state_machine.applied_index  # (the stored commit was below it: the loop)
        lead.propose(set_command("more", 2))
        wait_until(lambda: again.status()["applied_index"] >= lead.status()["applied_index"], what="catch up")
        assert learner in again.raw.raft.conf.learners  # the core replayed the config entry

        # A snapshot now records the membership the node applied, and after a
        # compaction and a restart that is the only membership it knows.
        snap = again.request_log_compaction().result(10)
        assert snap is not None
        again.stop()
        third = cluster.add_node(fid, FileKeyValueStateMachine(tmp_path / f"{fid}.json"),
                                 fast_config(data_dir=str(tmp_path / fid), **cfg))
        assert third.log_store.first_index() > config_index  # the config entry is compacted away
        assert learner in lead.raw.raft.conf.learners
        assert learner in snap.conf.learners, f"snapshot {snap.index} lost the learner: {snap.conf}"
        assert learner in third.raw.raft.conf.learners
        assert learner in third.applied_conf.learners


def test_a_snapshot_past_the_stored_commit_index_keeps_its_membership_after_a_crash(tmp_path: Path) -> None:
    """The same with an in-memory state machine restored from a snapshot
    that lies past the stored commit index, log entries kept behind it: the
    core replays config entries from the log up to that commit index only,
    over the snapshot's newer membership. The crash leaves the stored commit
    index below the config entry (as a commit-only Ready, not written, can),
    set here directly so that no timing decides."""
    cfg = dict(log_compaction_min_entries=10**6, log_compaction_keep=1000)
    with LocalCluster(3) as cluster:
        for a in cluster.addresses:
            cluster.add_node(a, KeyValueStateMachine(), fast_config(data_dir=str(tmp_path / a), **cfg))
        lead = cluster.nodes[cluster.wait_leader()]
        lead.add_member("node4", "node4", learner=True)  # an older config entry, below the stored commit
        for i in range(3):
            lead.propose(set_command(f"k{i}", i))
        follower = cluster.nodes[cluster.followers()[0]]
        fid = follower.id
        learner = "node5"
        config_index = lead.raw.raft.log.last_index() + 1
        lead.add_member(learner, learner, learner=True)
        lead.propose(set_command(learner, 5))
        wait_until(lambda: learner in follower.applied_conf.learners, what="applied there")
        wait_until(lambda: follower.status()["applied_index"] == lead.status()["applied_index"],
                   what="the follower to apply the command")
        snap = follower.request_log_compaction().result(10)
        assert snap is not None and snap.index > config_index and learner in snap.conf.learners
        crash(follower)
        store = LmdbLogStore(tmp_path / fid / "log")
        hs = store.hard_state()
        store.save(HardState(term=hs.term, vote=hs.vote, commit=config_index - 1), [])
        store.close()

        restarted = fast_config(data_dir=str(tmp_path / fid), **cfg)
        again = cluster.add_node(fid, KeyValueStateMachine(), restarted)
        assert again.log_store.first_index() <= config_index  # the log still holds both config entries
        assert learner in again.applied_conf.learners, again.applied_conf
        assert learner in again.raw.raft.conf.learners, again.raw.raft.conf
