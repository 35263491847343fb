"""raftkit: replicated services on Raft."""
