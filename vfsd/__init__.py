"""vfsd: a distributed virtual file system of cluster state that speaks Redis."""

__version__ = "0.1.0"

#: The Redis release whose behaviour vfsd matches; reported in INFO and HELLO.
REDIS_VERSION = "7.2.4"
