"""The Lua sandbox: one Lua 5.1 runtime (lupa) set up as strict as Redis 7's.

Theory of operation. ``sandbox_lua.SOURCE`` is trusted Lua that runs once per
runtime. It keeps what it needs from the pristine globals as locals, deletes
``os``, ``io``, ``debug``, ``require``, ``loadfile``, ``dofile`` and lupa's
``python`` module from them, and builds the environment scripts see: Redis's
allow-listed builtins (``pcall`` returning error strings as Redis 7 does,
``loadstring`` refusing bytecode, ``rawset``/``setmetatable`` refusing protected
tables), read-only proxies of ``string math table coroutine cjson cmsgpack bit
struct redis``, and a global table where reading a missing name is Redis's
"Script attempted to access nonexistent global variable" and writing any name
is "Attempt to modify a readonly table". Python callbacks (``redis.call``, the
libraries, the hook) are upvalues of that chunk only: a script can never reach a
Python object, and the runtime's attribute filter refuses attribute access anyway.

Limits. ``max_memory_bytes`` caps the runtime's allocations (a memory bomb gets
"not enough memory" and the runtime is collected afterwards); Lua's own limits
stop deep recursion ("stack overflow"); a count hook runs every ``hook_steps``
VM instructions and asks ``on_tick`` whether to go on: that is where the shell
answers other clients with -BUSY, and where SCRIPT KILL and the instruction
budget of desired-plane scripts take effect. The hook count is reset at the start
of every run, so the budget is a deterministic function of the script and its
inputs. Coroutines created by scripts get the hook too.

This module is a core: it reads no clock and does no I/O. Time reaches it only
through ``on_tick``, which its owner supplies.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import lupa.lua51 as lua

from vfsd import REDIS_VERSION
from vfsd.resp.types import OK, ErrorReply
from vfsd.scripting import libs
from vfsd.scripting.convert import (
    LuaOps,
    error_from_lua,
    error_table_message,
    format_number,
    lua_to_reply,
    reply_to_lua,
    status_from_lua,
)
from vfsd.scripting.sandbox_lua import SOURCE

__all__ = ["Run", "Sandbox", "ScriptError"]

#: Redis's count-hook period (script_lua.c: lua_sethook(..., LUA_MASKCOUNT, 100000)).
HOOK_STEPS = 100_000
#: What a callback keeps free below script-max-memory for lupa's own allocations.
HEADROOM_BYTES = 1 << 20
#: Up to this many KEYS + ARGV travel as Lua call arguments; more as tables (the Lua stack is finite).
SHORT_ARGS = 64
#: How many fresh ``{ok = "OK"}`` tables one call into Lua makes for ``redis.call`` (see Sandbox.__init__).
OK_TABLES = 64
RAND48_A = 0x5DEECE66D
RAND48_MASK = (1 << 48) - 1
REDIS_LRAND48_MAX = (1 << 31) - 1


def _deny_attributes(obj: Any, name: Any, is_setting: bool) -> Any:
    raise AttributeError("Python attributes are not reachable from scripts")


def _version_num(version: str) -> int:
    major, minor, patch = (int(p) for p in version.split("."))
    return (major << 16) | (minor << 8) | patch


class _Raise(Exception):
    """Raised by a Python callback to raise ``value`` (an error table or message) as a Lua error."""

    def __init__(self, value: Any) -> None:
        super().__init__("script error")
        self.value = value


class ScriptError(Exception):
    """A body that does not compile, or a library whose registration failed; the text is the Lua message."""


class Run:
    """One invocation of a script or function, as the Python callbacks see it.

    ``command(argv) -> reply`` runs one ``redis.call``; it is supplied by the caller
    (``vfsd.scripting.calls``), which knows planes and the command table.
    """

    __slots__ = ("name", "command", "resp", "steps", "max_steps", "verdict", "work")

    def __init__(self, name: str, command: Callable[[list[bytes]], Any], *, max_steps: int = 0) -> None:
        self.name = name
        self.command = command
        self.resp = 2
        self.steps = 0
        #: 0: unbounded; else the run stops after this many hook periods (desired plane).
        self.max_steps = max_steps
        #: Set to an error text to stop the run at the next hook (SCRIPT KILL).
        self.verdict: bytes | None = None
        #: Work reported by long library calls since the last hook period they made (see libs.py).
        self.work = 0


class Sandbox:
    def __init__(self, *, max_memory_bytes: int = 256 << 20, hook_steps: int = HOOK_STEPS,
                 log: Callable[[int, bytes], None] | None = None,
                 command_exists: Callable[[bytes], bool] | None = None) -> None:
        self.max_memory_bytes = max_memory_bytes
        self.runtime = lua.LuaRuntime(encoding=None, register_eval=False, register_builtins=False,
                                      unpack_returned_tuples=True, attribute_filter=_deny_attributes,
                                      max_memory=max_memory_bytes or None)
        self.run: Run | None = None
        #: ``on_tick(run) -> error text or None``: called every hook period of a run; the owner
        #: checks time there (busy threshold, SCRIPT KILL). None: runs go on until done.
        self.on_tick: Callable[[Run | None], bytes | None] | None = None
        self._log = log or (lambda level, message: None)
        self._command_exists = command_exists or (lambda name: True)
        self._rand48 = 0x1234ABCD330E  # Redis's initial state: x = {0x330E, 0xABCD, 0x1234}
        self._null: Any = None
        self._registrar: Callable[..., Any] | None = None
        table_from = self.runtime.table_from
        # Small tables are made by Lua functions: calling into Lua costs less than lupa's table_from.
        self._pair = pair = self.runtime.eval("function(k, v) return {[k] = v} end")
        # +OK, the reply scripts get most after strings, is the table {ok = "OK"}, a fresh one each time (the
        # script may change it): made OK_TABLES at a time, since one call into Lua costs more than the table.
        self._new_ok_tables = self.runtime.eval("function(n) local t = {} for i = 1, n do t[i] = {ok = 'OK'} end "
                                                "return unpack(t) end")
        self._ok_tables: list[Any] = []
        array = self.runtime.eval("function(...) return {...} end")

        def new_table(value: Any) -> Any:
            if type(value) is dict:
                if len(value) == 1:
                    for k, v in value.items():
                        return pair(k, v)
            elif len(value) <= SHORT_ARGS:
                return array(*value)
            return table_from(value)

        self.new_table = new_table
        is_table = self.is_table

        def items(t: Any) -> Any:
            return t.items()

        self.lib_ops = ops = libs.LibOps(new_table, is_table, items, None, self._is_null, self._spend, self.has_room,
                                         self._callee, lua.lua_type)
        callbacks = {
            b"hook_steps": hook_steps,
            b"tick": self._tick,
            b"call": self._call_raise,
            b"pcall": self._call_pcall,
            b"unwrap": self._unwrap,
            b"random": self._random,
            b"randomseed": self._randomseed,
            b"sha1hex": self._sha1hex,
            b"log": self._log_cb,
            b"setresp": self._setresp,
            b"set_repl": self._set_repl,
            b"acl_check_cmd": self._acl_check_cmd,
            b"register_function": self._register_function,
            b"set_null": self._set_null,
            b"redis_version": REDIS_VERSION.encode(),
            b"redis_version_num": _version_num(REDIS_VERSION),
            b"cjson": _library(table_from, libs.cjson_functions(self.lib_ops), self),
            b"cmsgpack": _library(table_from, libs.cmsgpack_functions(self.lib_ops), self),
            b"bit": _library(table_from, libs.bit_functions(), self),
            b"struct": _library(table_from, libs.struct_functions(self.lib_ops), self),
            b"base": _library(table_from, libs.base_functions(ops, self._concat_range), self),
        }
        loader = self.runtime.eval("loadstring")
        chunk = loader(SOURCE.encode(), b"=vfsd")
        if isinstance(chunk, tuple):
            raise RuntimeError(f"sandbox failed to compile: {chunk[1]!r}")
        self.api = chunk(table_from(callbacks))
        self._rawget = self.api[b"rawget"]
        self._is_null_lua = self.api[b"is_null"]
        self._run_eval = self.api[b"run_eval"]
        self._run_function = self.api[b"run_function"]
        self._run_eval_short = self.api[b"run_eval_short"]
        by_keys = self.api[b"run_eval_keys"]
        #: run_eval_short for 0, 1 and 2 KEYS, without the count (KEYS and ARGV made by table constructors).
        self._run_eval_keys = (by_keys[0], by_keys[1], by_keys[2])
        self._run_function_short = self.api[b"run_function_short"]
        self._reset_hook = self.api[b"reset_hook"]
        self.raise_on_lines = self.api[b"raise_on_lines"]
        self._native_concat = self.api[b"native_concat"]
        self._caller_names = self.api[b"callee"]
        self.ops = LuaOps(is_table, self._rawget, items, self._is_null)

    # -- the Lua operations the conversion rules need ------------------------------------

    @staticmethod
    def is_table(value: Any) -> bool:
        return lua.lua_type(value) == "table"

    def _is_null(self, value: Any) -> bool:
        return self._null is not None and value is not None and self._is_null_lua(value)

    def _set_null(self, value: Any) -> None:
        self._null = value
        self.lib_ops.null = value

    def _callee(self) -> tuple[Any, Any]:
        """(name, namewhat) of the library function running now, as its caller names it."""
        try:
            return self._caller_names()
        except lua.LuaError:
            return None, None

    def _concat_range(self, table: Any, sep: bytes, first: int, last: int) -> bytes:
        """Lua's own table.concat of table[first..last]; LibError with Lua's message."""
        try:
            return self._native_concat(table, sep, first, last)
        except lua.LuaMemoryError:
            raise libs.LibError("not enough memory") from None
        except lua.LuaError as exc:
            raise libs.LibError(str(exc).split("\nstack traceback:", 1)[0]) from None

    # -- compiling -----------------------------------------------------------------------

    def compile_eval(self, body: bytes) -> Any:
        """The compiled script (a Lua function); ScriptError with Lua's message if it does not compile."""
        fn = self._guard(self.api[b"compile_eval"], body)
        if isinstance(fn, tuple):
            raise ScriptError(_text(fn[1]))
        return fn

    def compile_library(self, code: bytes, register: Callable[..., Any], run: Run) -> None:
        """Compile a library and run its body with the load API; ``register(name, fn, flags, desc)``
        is called for each ``redis.register_function`` (it returns an error text or None)."""
        fn = self._guard(self.api[b"compile_library"], code)
        if isinstance(fn, tuple):
            raise ScriptError(f"Error compiling function: {_text(fn[1])}")
        self._registrar = register
        self.run = run
        try:
            ok, err = self._guard(self.api[b"load_library"], fn)
        finally:
            self._registrar = None
            self.run = None
        if not ok:
            if self.is_table(err):
                message = self._rawget(err, b"err")
                raise ScriptError(f"Error registering functions: {_text(message)}")
            raise ScriptError(f"Error registering functions: {_text(err)}")

    # -- running -------------------------------------------------------------------------

    def execute_eval(self, fn: Any, keys: list[bytes], argv: list[bytes], run: Run) -> Any:
        return self.execute_eval_argv(fn, len(keys), [b"", b"", b"", *keys, *argv], run)

    def execute_eval_argv(self, fn: Any, nkeys: int, command: list[bytes], run: Run) -> Any:
        """``execute_eval`` of an EVAL-shaped command: its KEYS (``nkeys`` of them) and ARGV start at
        ``command[3]`` (what EVAL and EVALSHA receive, passed on without splitting it)."""
        if len(command) <= SHORT_ARGS + 3:  # the common case: _guard and _finish's usual cases, inlined
            previous = self.run
            self.run = run
            try:
                if nkeys < 3:
                    result = self._run_eval_keys[nkeys](fn, run.max_steps > 0, *command[3:])
                else:
                    result = self._run_eval_short(fn, run.max_steps > 0, nkeys, *command[3:])
            except lua.LuaMemoryError:
                result = (False, b"not enough memory")
            except lua.LuaError as exc:
                result = (False, str(exc).encode())
            finally:
                self.run = previous
                if run.verdict is not None:
                    self._reset_hook()
                limit = self.max_memory_bytes
                if limit and self.runtime.get_memory_used() > limit // 2:
                    self.collect()
            status, value = result
            if status is True:
                kind = type(value)
                if kind is bytes or kind is int:
                    return value
            elif status == b"s" and value == b"OK":
                return OK
            return self._finish(run, result)
        table_from = self.new_table
        return self._finish(run, self._guard(self._run_eval, fn, table_from(command[3:3 + nkeys]),
                                             table_from(command[3 + nkeys:]), run.max_steps > 0, run=run))

    def execute_function(self, fn: Any, keys: list[bytes], argv: list[bytes], run: Run) -> Any:
        if len(keys) + len(argv) <= SHORT_ARGS:
            return self._finish(run, self._guard(self._run_function_short, fn, run.max_steps > 0, len(keys), *keys,
                                                 *argv, run=run))
        table_from = self.new_table
        return self._finish(run, self._guard(self._run_function, fn, table_from(keys), table_from(argv),
                                             run.max_steps > 0, run=run))

    def _guard(self, fn: Any, *args: Any, run: Run | None = None) -> Any:
        """Call into Lua with ``run`` current; a memory error is turned into a result, and the
        runtime is collected with its limit lifted so it is usable again."""
        previous = self.run
        if run is not None:
            self.run = run
        try:
            return fn(*args)
        except lua.LuaMemoryError:
            return False, b"not enough memory"
        except lua.LuaError as exc:  # an error outside any pcall (the sandbox's own code): report, never crash
            return False, str(exc).encode()
        finally:
            self.run = previous
            if run is not None and run.verdict is not None:
                self._reset_hook()  # back from the every-line hook a stopped run leaves behind
            # A run that came near the limit leaves its garbage behind: collect it now, with the
            # limit lifted, so that lupa's own (unprotected) allocations always have room.
            limit = self.max_memory_bytes
            if limit and self.runtime.get_memory_used() > limit // 2:
                self.collect()

    def _finish(self, run: Run, result: Any) -> Any:
        """The reply for a run's outcome: (true, value), (false, error), ("s", status) or ("e", error)."""
        if type(result) is not tuple:  # xpcall returned ``true`` alone: the script returned nothing
            result = (result,)
        status, value = result[0], result[1] if len(result) > 1 else None
        if status is True:
            return lua_to_reply(value, run.resp == 3, self.ops)
        if status == b"s":
            return status_from_lua(value)
        if status == b"e":
            return error_from_lua(value)
        return self.error_reply(value, run.name)

    def error_reply(self, err: Any, name: str) -> ErrorReply:
        """Redis's reply for a failed run (script_lua.c luaCallFunction)."""
        if not self.is_table(err):
            return ErrorReply(f"ERR Error running script {name}, {_text(err)[:100]}")
        rawget = self._rawget
        message = rawget(err, b"err")
        text = _text(message) if message is not None else "(null)"
        source, line = rawget(err, b"source"), rawget(err, b"line")
        if source is not None and line is not None:
            text += f" script: {name}, on {_text(source)}:{_text(line)}."
        return ErrorReply(text)

    # -- the callbacks (they must never raise: Lua sees only values) ---------------------

    def has_room(self, nbytes: int) -> bool:
        """Whether Python may hand Lua ``nbytes`` more without hitting the limit.

        lupa creates tables and strings for a callback's results outside any Lua
        protected call, so running out of memory there would abort the process;
        the callbacks check first and fail the script with "not enough memory".
        """
        limit = self.max_memory_bytes
        return not limit or self.runtime.get_memory_used() + 2 * nbytes + HEADROOM_BYTES < limit

    def _spend(self, units: int) -> None:
        """A library call did ``units`` of work (libs.py): every HOOK_STEPS of them are one hook
        period, as if that many VM instructions had run; LibStop if the run must stop."""
        run = self.run
        if run is None:
            return
        work = run.work + units
        if work < HOOK_STEPS:
            run.work = work
            return
        periods, run.work = divmod(work, HOOK_STEPS)
        verdict = self._tick(periods)
        if verdict is not None:
            raise libs.LibStop(verdict)

    def _tick(self, periods: int = 1) -> bytes | None:
        run = self.run
        if run is not None:
            run.steps += periods
            if run.max_steps and run.steps > run.max_steps:
                run.verdict = (b"ERR Script exceeded its budget of %d instructions (script-max-instructions: "
                        b"the limit of desired-plane scripts, the same on every node)" % (run.max_steps * HOOK_STEPS))
                return run.verdict
            if run.verdict is not None:
                return run.verdict
        on_tick = self.on_tick
        if on_tick is not None:
            try:
                verdict = on_tick(run)
            except Exception as exc:  # the shell's busy handling failed: stop this script, not the node
                verdict = b"ERR script stopped: " + str(exc).encode()
            if verdict is not None and run is not None:
                run.verdict = verdict  # remembered: the run's end resets the every-line hook it leaves
            return verdict
        return None

    def _call_raise(self, *args: Any) -> Any:
        """redis.call: the reply, or a Lua error raised with the error table."""
        run = self.run
        if run is not None and args:
            for a in args:
                if type(a) is not bytes:
                    break
            else:  # the common case (_call, inlined): arguments that are all strings
                argv = list(args)
                try:
                    reply = run.command(argv)
                except ErrorReply as err:
                    raise _Raise(self._pair(b"err", error_table_message(err.message))) from None
                except Exception as exc:
                    reply = ErrorReply(f"ERR internal error in '{argv[0][:64].decode(errors='replace')}': {exc}")
                kind = type(reply)
                if (kind is bytes and len(reply) < 4096 or reply is OK) and (
                        not self.max_memory_bytes or self.runtime.get_memory_used() + HEADROOM_BYTES + 8192
                        < self.max_memory_bytes):  # a short string, or a table of +OK, that fits (see has_room)
                    if kind is bytes:
                        return reply
                    ok_tables = self._ok_tables
                    if not ok_tables:
                        ok_tables.extend(self._new_ok_tables(OK_TABLES))
                    return ok_tables.pop()
                value, failed = self._convert(run, argv, reply)
                if failed:
                    raise _Raise(value)
                return value
        value, failed = self._call(args)
        if failed:
            raise _Raise(value)
        return value

    def _call_pcall(self, *args: Any) -> Any:
        """redis.pcall: the reply, an error table included."""
        return self._call(args)[0]

    @staticmethod
    def _unwrap(raised: Any) -> Any:
        return raised.value if isinstance(raised, _Raise) else None

    def _call(self, args: tuple[Any, ...]) -> tuple[Any, bool]:
        """(the Lua value of the reply, whether it is an error)."""
        run = self.run
        argv = list(args)
        for a in args:
            if type(a) is not bytes:
                argv = _arguments(args)
                if argv is None:
                    return self._pair(b"err", b"ERR Lua redis lib command arguments must be strings or integers"), True
                break
        if not argv:
            return self._pair(b"err", b"ERR Please specify at least one argument for this redis lib call"), True
        if run is None:
            return self._pair(b"err", b"ERR redis.call is only available while a script runs"), True
        try:
            reply = run.command(argv)
        except ErrorReply as err:
            return self._pair(b"err", error_table_message(err.message)), True
        except Exception as exc:
            reply = ErrorReply(f"ERR internal error in '{argv[0][:64].decode(errors='replace')}': {exc}")
        return self._convert(run, argv, reply)

    def _convert(self, run: Run, argv: list[bytes], reply: Any) -> tuple[Any, bool]:
        """A command's reply as (its Lua value, whether it is an error). The replies scripts get
        most are converted here (reply_to_lua has the full rules); each must fit below the
        memory limit first (see has_room)."""
        kind = type(reply)
        if kind is int or reply is None:
            return (reply if reply is not None else (None if run.resp == 3 else False)), False
        limit = self.max_memory_bytes
        used = self.runtime.get_memory_used() + HEADROOM_BYTES if limit else 0
        if kind is bytes:
            if used + 2 * len(reply) + 64 < limit or not limit:
                return reply, False
        elif reply is OK:
            if used + 128 < limit or not limit:
                return self._pair(b"ok", b"OK"), False
        elif isinstance(reply, ErrorReply):
            return self._pair(b"err", error_table_message(reply.message)), True
        elif not limit or used + 2 * _size(reply) < limit:
            return reply_to_lua(reply, run.resp, self.new_table), False
        return self._pair(b"err", b"ERR not enough memory for the reply of '%b'" % argv[0][:64]), True

    def _random(self, *args: Any) -> Any:
        """math.random as Redis has it: Lua 5.1's, drawing from Redis's rand48."""
        r = self._rand()
        if not args:
            return r
        if len(args) > 2:
            raise _Raise(b"wrong number of arguments")
        bounds = [_checkint(a, i + 1, "random") for i, a in enumerate(args)]
        if len(bounds) == 1:
            if bounds[0] < 1:
                raise _Raise(b"bad argument #1 to 'random' (interval is empty)")
            return float(math.floor(r * bounds[0]) + 1)
        low, high = bounds
        if low > high:
            raise _Raise(b"bad argument #2 to 'random' (interval is empty)")
        return float(math.floor(r * (high - low + 1)) + low)

    def _randomseed(self, *args: Any) -> None:
        self.seed(_checkint(args[0] if args else None, 1, "randomseed"))

    def _rand(self) -> float:
        self._rand48 = (RAND48_A * self._rand48 + 0xB) & RAND48_MASK
        return ((self._rand48 >> 17) % REDIS_LRAND48_MAX) / REDIS_LRAND48_MAX

    def seed(self, seed: int) -> None:
        """srand48: the generator math.random draws from (Redis's redisSrand48)."""
        seed &= 0xFFFFFFFF
        self._rand48 = (seed << 16) | 0x330E

    def _raise(self, message: bytes) -> Any:
        raise _Raise(self.runtime.table_from({b"err": b"ERR " + message}))

    def _sha1hex(self, *args: Any) -> bytes:
        if len(args) != 1:
            self._raise(b"wrong number of arguments")
        value = args[0]
        if type(value) in (int, float):
            value = format_number(value)
        data = value if type(value) is bytes else b""
        return hashlib.sha1(data).hexdigest().encode()

    def _log_cb(self, *args: Any) -> None:
        if len(args) < 2:
            self._raise(b"redis.log() requires two arguments or more.")
        level = _to_number(args[0])
        if level is None:
            self._raise(b"First argument must be a number (log level).")
        level = int(level)
        if not 0 <= level <= 3:
            self._raise(b"Invalid debug level.")
        parts = [format_number(a) if type(a) in (int, float) else a for a in args[1:] if type(a) in (bytes, int, float)]
        try:
            self._log(level, b" ".join(parts))
        except Exception:  # logging must not fail a script
            pass

    def _setresp(self, *args: Any) -> None:
        if len(args) != 1:
            self._raise(b"redis.setresp() requires one argument.")
        resp = _to_number(args[0])
        if resp not in (2, 3):
            self._raise(b"RESP version must be 2 or 3.")
        if self.run is not None:
            self.run.resp = int(resp)  # type: ignore[arg-type]

    def _set_repl(self, *args: Any) -> None:
        """Accepted and ignored: the whole script is the unit of replication (a log entry), not its commands."""
        if len(args) != 1:
            self._raise(b"redis.set_repl() requires one argument.")
        flags = _to_number(args[0])
        if flags is None or int(flags) & ~3:
            self._raise(b"Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.")

    def _acl_check_cmd(self, *args: Any) -> bool:
        """No ACLs yet: every known command is allowed."""
        if not args:
            self._raise(b"Please specify at least one argument for this redis lib call")
        name = args[0] if type(args[0]) is bytes else b""
        if not self._command_exists(name):
            self._raise(b"Invalid command passed to redis.acl_check_cmd()")
        return True

    def _register_function(self, *args: Any) -> Any:
        registrar = self._registrar
        if registrar is None:
            raise _Raise(self.runtime.table_from(
                {b"err": b"ERR redis.register_function can only be called on FUNCTION LOAD command"}))
        error = registrar(*args)
        if error is not None:
            raise _Raise(self.runtime.table_from({b"err": error}))
        return None

    def reset(self, seed: int) -> None:
        """Before a deterministic run: collect all garbage and seed math.random (see engine.py)."""
        self.seed(seed)
        self.collect()

    def collect(self) -> None:
        runtime = self.runtime
        runtime.set_max_memory(0)
        try:
            runtime.execute(b"collectgarbage('collect')")
        finally:
            runtime.set_max_memory(self.max_memory_bytes)

    def stop_hook(self) -> None:
        self.api[b"stop_hook"]()


def _size(value: Any) -> int:
    """About how many bytes a reply takes once in Lua."""
    kind = type(value)
    if kind is bytes or kind is str:
        return len(value) + 32
    if kind is list or kind is tuple or kind is set:
        return 64 + sum(_size(v) for v in value)
    if kind is dict:
        return 64 + sum(_size(k) + _size(v) for k, v in value.items())
    return 32


def _arguments(args: tuple[Any, ...]) -> list[bytes] | None:
    """The arguments of a ``redis.call`` as bytes (numbers in Redis's format), None if one is neither."""
    argv = []
    for a in args:
        kind = type(a)
        if kind is bytes:
            argv.append(a)
        elif kind is int or kind is float:
            argv.append(format_number(a))
        else:
            return None
    return argv


def _library(table_from: Callable[[Any], Any], functions: dict[str, Callable[..., Any]], sandbox: Sandbox) -> Any:
    """A library table of Python callables: ``(True, results...)`` is returned as the results,
    ``(False, message)`` raised as a Lua error with that message. A call that was stopped
    (libs.LibStop) raises the run's verdict as the hook does, again on every line after it."""
    has_room = sandbox.has_room

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            if not has_room(sum(len(a) * 4 for a in args if type(a) is bytes)):
                raise _Raise(b"not enough memory")
            try:
                result = fn(*args)
            except libs.LibStop as stop:
                sandbox.raise_on_lines()
                raise _Raise(table_from({b"err": stop.verdict})) from None
            if result[0]:
                if not has_room(sum(len(r) for r in result[1:] if type(r) is bytes)):
                    raise _Raise(b"not enough memory")  # the results must fit before lupa copies them in
                return result[1:] if len(result) != 2 else result[1]
            raise _Raise(result[1])
        return call

    return table_from({name.encode(): wrap(fn) for name, fn in functions.items()})


def _to_number(value: Any) -> float | int | None:
    """lua_tonumber: numbers, and strings that read as numbers."""
    if type(value) in (int, float):
        return value
    if type(value) is bytes:
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _checkint(value: Any, position: int, name: str) -> int:
    """luaL_checkint: a number (or numeric string), truncated; Lua's error text otherwise."""
    if type(value) is bytes:
        try:
            value = float(value)
        except ValueError:
            value = None
    if type(value) not in (int, float) or value != value:
        got = "no value" if value is None else "string"
        raise _Raise(f"bad argument #{position} to '{name}' (number expected, got {got})".encode())
    return int(value)


def _text(value: Any) -> str:
    if type(value) is bytes:
        return value.decode(errors="replace")
    return str(value)
