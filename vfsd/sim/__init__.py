"""Deterministic simulations of vfsd's pure cores, and the checkers they use."""
