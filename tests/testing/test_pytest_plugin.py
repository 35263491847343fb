"""The pytest plugin raftkit installs: its fixtures work in a user's test
suite (run here by pytest's own pytester, in a separate directory)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_the_plugin_is_registered_by_the_package_metadata() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("raftkit") == "raftkit.testing.pytest_plugin"


def test_a_user_suite_gets_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
        from raftkit import SyncObj, replicated
        from raftkit.testing.cluster import fast_conf, wait_until


        class Counter(SyncObj):
            def __init__(self, address, partners, transport):
                super().__init__(address, partners, fast_conf(), transport=transport)
                self.value = 0

            @replicated
            def incr(self):
                self.value += 1
                return self.value


        def test_sim_starts_with_a_leader(raftkit_sim):
            sim = raftkit_sim(n=3, seed=1)
            leader = sim.leader()
            assert leader is not None
            index = sim.propose(leader, b"incr-1")
            assert index is not None
            sim.run_until(lambda: all(sim.nodes[n].applied_index >= index for n in sim.ids))


        def test_sim_unstable_has_no_leader_yet(raftkit_sim):
            assert raftkit_sim(n=3, stable=False).leader() is None


        def test_local_cluster(raftkit_cluster):
            objs = raftkit_cluster.add_syncobjs(Counter)
            raftkit_cluster.wait_leader()
            assert objs[0].incr(sync=True) == 1
            wait_until(lambda: [o.value for o in objs] == [1, 1, 1], what="the increment everywhere")
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_plugin_can_be_switched_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="def test_needs_it(raftkit_sim):\n    pass\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:raftkit")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'raftkit_sim' not found*"])


def test_raftkit_processes_starts_real_nodes_and_reaps_them(pytester: pytest.Pytester) -> None:
    pids = pytester.path / "pids.txt"
    pytester.makepyfile(
        test_user=f"""
        def test_processes(raftkit_processes):
            cluster = raftkit_processes(3)
            assert cluster.wait_leader(timeout=30) in cluster.addresses
            with open({str(pids)!r}, "w") as f:
                f.write(" ".join(str(n.proc.pid) for n in cluster.nodes.values()))
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    import os

    for pid in map(int, pids.read_text().split()):
        with pytest.raises(ProcessLookupError):  # reaped: no such process left
            os.kill(pid, 0)
