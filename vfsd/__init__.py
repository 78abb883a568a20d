"""vfsd: a distributed virtual file system of cluster state that speaks Redis."""

__version__ = "0.1.0"

#: The Redis release vfsd reports in INFO, HELLO and Lua's redis.REDIS_VERSION. Replies and error texts follow
#: 7.2 (CLIENT LIST already has 7.4's ``watch`` field); 7.4.0 is reported because client libraries gate features
#: on it: redis-py 8 turns on its client-side cache only for 7.4 or later. What 7.4 added that vfsd does not have
#: (hash field expiry) is listed in compat/DIFFERENCES.md.
REDIS_VERSION = "7.4.0"
