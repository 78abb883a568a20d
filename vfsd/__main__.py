"""``python -m vfsd``: the same as the ``vfsd`` command."""

from vfsd.cli import main

main()
