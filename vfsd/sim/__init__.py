"""Deterministic simulations of the replication cores, and the checkers they use: one seed drives a whole run.

Each simulation lives in its own module (``vfsd.sim.raft`` for the desired plane, ``vfsd.sim.gossip`` for
the active plane; ``vfsd.sim.linearizability`` checks client histories); every source of nondeterminism --
clocks, network, faults, workload -- comes from one ``random.Random(seed)``, so a failing seed is a
one-line reproduction (``vfsd sim raft --seed N``, ``vfsd sim gossip --seed N``).
"""
