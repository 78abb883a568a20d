"""Command families, one module each, and the table they register in.

Importing this package imports nothing else, so the pure families (strings, keys,
json) stay free of the shell's asyncio and sockets; ``vfsd.commands.families``
imports every family and indexes the table for dispatch.
"""
