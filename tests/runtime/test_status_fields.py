"""status()'s dict is built on every Ready from the core's state directly
(raftkit.runtime.status), with the membership-derived fields kept until the
membership or the address book changes. These tests hold it to what
``RawNode.status()`` (the core's own report) says, and check the cache
follows every change."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from raftkit.core.types import ConfState, Role
from raftkit.runtime.catch_up import CatchUpProgress
from raftkit.runtime.node import Node
from raftkit.runtime.status import MembershipFields
from raftkit.testing.cluster import LocalCluster, wait_until
from raftkit.testing.kv import KeyValueStateMachine, set_command


def on_loop(node: Node, fn: Any) -> Any:
    """fn() on the node's loop thread (the core is not thread-safe), its result here."""
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            done.set_exception(exc)

    node.dispatch(run)
    return done.result(10)


def both_views(node: Node) -> tuple[dict[str, Any], Any]:
    """(the dict status() copies, refreshed; RawNode.status()), read in one loop callback
    (status() itself adds live figures, such as each peer's last contact)."""
    def read() -> tuple[dict[str, Any], Any]:
        node._status.refresh()
        return dict(node._status.fields), node.raw.status()
    return on_loop(node, read)  # type: ignore[no-any-return]


def test_status_says_what_the_cores_own_report_says_on_leader_and_followers() -> None:
    with LocalCluster(3) as cluster:
        nodes = [cluster.add_node(a, KeyValueStateMachine()) for a in cluster.addresses]
        leader_id = cluster.wait_leader()
        leader = cluster.nodes[leader_id]
        for i in range(20):
            leader.propose(set_command(f"k{i}", i))
        wait_until(lambda: all(n.status()["applied_index"] >= leader.status()["commit_index"] for n in nodes),
                   what="every node applied the writes")
        for node in nodes:
            view, core = both_views(node)
            assert view["role"] == core.role.value and view["term"] == core.term
            assert view["leader"] == core.leader == leader_id
            assert view["commit_index"] == core.commit
            assert (view["log_first_index"], view["log_last_index"]) == (core.first_index, core.last_index)
            assert view["log_entries"] == core.last_index - core.first_index + 1
            assert view["members"] == view["voters"] == sorted(core.conf.voters)
            assert view["learners"] == sorted(core.conf.learners)
            assert view["addresses"] == {n: node.peers.get(n, n) for n in sorted(core.conf.members)}
            assert (view["recovering"], view["quorum_lost"], view["waiting"]) == (core.recovering, None, None)
            expected_peers = {
                p: {"match": ps.match, "next": ps.next, "state": ps.state.value, "active": ps.recent_active}
                for p, ps in core.peers.items() if p != node.id
            }
            assert view["peers"] == expected_peers
            if core.role is Role.LEADER:
                assert list(view["peers"]) == sorted(set(cluster.addresses) - {node.id})
                assert all(p["match"] == core.last_index for p in view["peers"].values()), view["peers"]
            else:
                assert view["peers"] == {}
        # A reader that changes the lists of its copy changes no later status.
        mine = leader.status()
        mine["voters"].append("intruder")
        mine["addresses"]["intruder"] = "x"
        later, _ = both_views(leader)
        assert "intruder" not in later["voters"] and "intruder" not in later["addresses"]
        # A follower stops: the leader's view of it falls behind, as the core sees it.
        gone = next(a for a in cluster.addresses if a != leader_id)
        cluster.stop(gone)
        for i in range(10):
            leader.propose(set_command(f"later{i}", i))
        view, core = both_views(leader)
        assert view["peers"][gone]["match"] < core.last_index == view["log_last_index"]
        assert view["peers"] == {
            p: {"match": ps.match, "next": ps.next, "state": ps.state.value, "active": ps.recent_active}
            for p, ps in core.peers.items() if p != leader_id
        }


def test_membership_fields_follow_the_membership_and_the_address_book() -> None:
    fields = MembershipFields()
    peers = {"a": "10.0.0.1:1", "b": "10.0.0.2:1"}
    conf = ConfState(voters=frozenset({"b", "a"}), learners=frozenset({"c"}))
    first = fields.get(conf, peers)
    assert first == {"members": ["a", "b"], "learners": ["c"], "voters": ["a", "b"],
                     "addresses": {"a": "10.0.0.1:1", "b": "10.0.0.2:1", "c": "c"}}
    assert fields.get(conf, peers) is first  # nothing changed: nothing made again
    peers["c"] = "10.0.0.3:1"  # the node learned an address in place (Node._learn_addresses)
    learned = fields.get(conf, peers)
    assert learned["addresses"]["c"] == "10.0.0.3:1"
    promoted = fields.get(ConfState(voters=frozenset({"a", "b", "c"})), peers)
    assert promoted["voters"] == promoted["members"] == ["a", "b", "c"] and promoted["learners"] == []
    promoted["voters"].append("x")  # a reader that changes its copy's list does not change the members
    assert promoted["members"] == ["a", "b", "c"]


def test_a_follower_that_led_forgets_the_peers_it_followed_catching_up() -> None:
    progress = CatchUpProgress("n1")
    lagging = {"n2": {"match": 10, "next": 11, "state": "replicate", "active": True}}
    progress.observe({"role": "leader", "log_last_index": 5000, "peers": lagging})
    assert set(progress.status()) == {"n2"}
    progress.observe({"role": "follower", "log_last_index": 5001, "peers": {}})
    assert progress.status() == {}
    progress.observe({"role": "follower", "log_last_index": 5002, "peers": {}})  # the quick path
    assert progress.status() == {} and progress._last_index == 5002
