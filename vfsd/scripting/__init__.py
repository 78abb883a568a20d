"""Lua scripting and functions (EVAL, EVALSHA, SCRIPT, FUNCTION, FCALL) on a real Lua 5.1 (lupa).

- ``convert``: the Lua <-> reply conversion rules (pure).
- ``libs``: cjson, cmsgpack, bit, struct (pure).
- ``sandbox`` (+ ``sandbox_lua``): one Lua runtime set up as strictly as Redis 7's.
- ``scripts``: the EVAL script cache and shebang flags; ``functions``: libraries.
- ``calls``: what ``redis.call`` may do on each plane (pure).
- ``busy``: the shell that answers other clients while a script runs long.
"""
