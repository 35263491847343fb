"""Tools for testing raftkit and applications built on it."""
