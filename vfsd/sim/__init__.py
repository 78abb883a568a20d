"""Deterministic simulations of the replication cores: one seed drives a whole run.

Each simulation lives in its own module (``vfsd.sim.gossip`` for the active plane);
every source of nondeterminism — clocks, network, faults, workload — comes from
one ``random.Random(seed)``, so a failing seed is a one-line reproduction
(``vfsd sim gossip --seed N``).
"""
