"""What each command does with each of its keys: COMMAND GETKEYSANDFLAGS's key flags.

Redis 7 describes a command's keys with key specs, each with flags: how the
value is used (RO read-only, RW read-write, OW overwrite, RM remove) and what
the command does with it (access: its data is returned or used; update,
insert, delete). The table below gives, for every command of vfsd's table that
takes keys, the flags of its key groups in Redis 7.2's terms (the same flags
for the same command). Groups apply to the keys ``CommandSpec.keys`` finds:

- one group: every key;
- two groups: the first key, then every other (BITOP's destination and sources,
  RENAME's source and destination...);
- SORT and SORT_RO: the sorted key, then any STORE destination (the patterns of
  BY and GET are not keys vfsd finds, as Redis reports them incomplete).

Two commands decide their flags from their arguments (Redis's variable_flags):
SET (RW access update with GET, else OW update) and BITFIELD (RO access when it
only GETs, else RW access update). A command of vfsd's own that is not listed
is described by its command flags: read-only commands as RO access, others as
RW update.
"""

from __future__ import annotations

from typing import Final

#: The order Redis lists key flags in (server.c, addReplyFlagsForKeyArgs).
ORDER: Final = ("RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key", "incomplete",
                "variable_flags")

_GROUPS: Final[dict[tuple[str, ...], str]] = {
    ("RO access",): "getbit bitcount bitpos bitfield_ro hget hmget hkeys hvals hgetall hrandfield hscan get mget "
                    "substr getrange lcs ttl pttl expiretime pexpiretime dump lrange lindex lpos eval_ro evalsha_ro "
                    "fcall_ro smismember smembers srandmember sinter sintercard sunion sdiff sscan zscore zmscore "
                    "zrank zrevrank zrange zrevrange zrangebyscore zrevrangebyscore zrangebylex zrevrangebylex "
                    "zcount zlexcount zrandmember zunion zinter zdiff zintercard zscan",
    ("RO",): "hexists hlen hstrlen strlen exists touch type object|encoding object|freq object|idletime "
             "object|refcount llen watch scard sismember zcard memory|usage",
    ("RW access update",): "setbit hincrby hincrbyfloat getset getex incr decr incrby decrby incrbyfloat move eval "
                           "evalsha fcall zincrby",
    ("RW access delete",): "getdel lpop rpop lmpop blpop brpop blmpop spop zpopmin zpopmax zmpop bzpopmin bzpopmax "
                           "bzmpop",
    ("RW update",): "hset hmset setrange expire pexpire expireat pexpireat persist lset zadd",
    ("RW insert",): "hsetnx append lpush rpush lpushx rpushx linsert sadd",
    ("RW delete",): "hdel lrem ltrim srem zrem zremrangebyrank zremrangebyscore zremrangebylex",
    ("OW update", "RO access"): "bitop sunionstore sdiffstore zrangestore zunionstore zinterstore zdiffstore",
    ("RW access delete", "RW insert"): "lmove rpoplpush blmove brpoplpush smove",
    ("OW update",): "setex psetex mset restore",
    ("not_key",): "ssubscribe sunsubscribe spublish",
    ("OW insert",): "setnx msetnx",
    ("RM delete",): "del unlink",
    ("RW access delete", "OW update"): "rename",
    ("RW access delete", "OW insert"): "renamenx",
    ("RO access", "OW update"): "copy sort",
    ("RW update", "RO access"): "sinterstore",
    ("RO access", "RO access"): "sort_ro",
}

KEY_FLAGS: Final[dict[str, tuple[str, ...]]] = {name: groups for groups, names in _GROUPS.items()
                                                 for name in names.split()}


#: Commands whose keys follow a count of them, and where that count is (Redis's keynum key specs).
NUMKEYS_AT: Final = {"zunionstore": 2, "zinterstore": 2, "zdiffstore": 2, "zunion": 1, "zinter": 1, "zdiff": 1,
                     "zintercard": 1, "sintercard": 1, "lmpop": 1, "zmpop": 1, "blmpop": 2, "bzmpop": 2, "eval": 2,
                     "evalsha": 2, "eval_ro": 2, "evalsha_ro": 2, "fcall": 2, "fcall_ro": 2}


def keys_countable(full_name: str, call: list[bytes]) -> bool:
    """Whether a keynum command's count names keys that are there (Redis finds no key at all otherwise: a
    count that is not a number, below 1, or past the arguments)."""
    at = NUMKEYS_AT.get(full_name)
    if at is None:
        return True
    try:
        count = int(call[at])
    except (ValueError, IndexError):
        return False
    return 0 < count <= len(call) - at - 1


def has_keys(full_name: str) -> bool:
    """False for commands whose only "keys" are not keys (shard channels), as Redis's doesCommandHaveKeys."""
    return KEY_FLAGS.get(full_name) != ("not_key",)


def key_flags(full_name: str, argv: list[bytes], nkeys: int, *, readonly: bool) -> list[list[str]]:
    """The flags of each of the ``nkeys`` keys of ``argv`` (a call of ``full_name``), in Redis's order."""
    if full_name == "set":
        gets = any(a.lower() == b"get" for a in argv[3:])
        groups: tuple[str, ...] = ("RW access update",) if gets else ("OW update",)
    elif full_name == "bitfield":
        only_gets = all(a.lower() != b"set" and a.lower() != b"incrby" for a in argv[2:])
        groups = ("RO access",) if only_gets else ("RW access update",)
    else:
        groups = KEY_FLAGS.get(full_name) or (("RO access",) if readonly else ("RW update",))
    out = []
    for i in range(nkeys):
        group = groups[0] if i == 0 or len(groups) == 1 else groups[1]
        words = set(group.split())
        out.append([flag for flag in ORDER if flag in words])
    return out
