"""Redis 7 functions: libraries (``#!lua name=...``), their registry, DUMP/RESTORE payloads.

The registry is desired state: FUNCTION LOAD, DELETE, FLUSH and RESTORE are log
entries applied by the state machine on every node, and the libraries travel in
its snapshots, so they survive restarts (Redis keeps them in RDB/AOF) and will
reach every node once the log is replicated. Loading a library runs its body in a
sandbox to learn which functions it registers; that run is bounded by an
instruction budget, not by time, so it ends the same way on every node.

DUMP payloads are Redis's (RDB ``FUNCTION2`` records, then the RDB version and a
CRC-64/Jones), so FUNCTION RESTORE accepts what a real Redis 7 dumped, including
LZF-compressed code.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vfsd.glob import compile_glob
from vfsd.resp.types import ErrorReply, SimpleString

__all__ = ["FunctionInfo", "Library", "Registry", "parse_metadata"]

ENGINE = "LUA"
FUNCTION_FLAGS = ("no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys")
RDB_OPCODE_FUNCTION2 = 245
RDB_VERSION = 11  # Redis 7.2
_NAME = re.compile(rb"[A-Za-z0-9_]+\Z")
BAD_NAME = ("Library names can only contain letters, numbers, or underscores(_) and must be at least one "
            "character long")


@dataclass(slots=True)
class FunctionInfo:
    name: str
    description: bytes | None
    flags: frozenset[str]
    library: str

    @property
    def read_only(self) -> bool:
        return "no-writes" in self.flags


@dataclass(slots=True)
class Library:
    name: str
    code: bytes  # the whole payload, shebang included, as FUNCTION LIST WITHCODE shows it
    functions: dict[str, FunctionInfo] = field(default_factory=dict)


def parse_metadata(code: bytes) -> tuple[str, str, int]:
    """(engine, library name, offset of the body) of a library; ErrorReply with Redis's texts."""
    if not code.startswith(b"#!"):
        raise ErrorReply("ERR Missing library metadata")
    end = code.find(b"\n")
    if end < 0:
        raise ErrorReply("ERR Invalid library metadata")
    parts = code[:end].split()
    if not parts:
        raise ErrorReply("ERR Invalid library metadata")
    engine = parts[0][2:].decode(errors="replace")
    name: bytes | None = None
    for part in parts[1:]:
        if part[:5].lower() == b"name=":
            if name is not None:
                raise ErrorReply("ERR Invalid metadata value, name argument was given multiple times")
            name = part[5:]
            continue
        raise ErrorReply(f"ERR Invalid metadata value given: {part.decode(errors='replace')}")
    if name is None:
        raise ErrorReply("ERR Library name was not given")
    if not _NAME.match(name):
        raise ErrorReply(f"ERR {BAD_NAME}")
    if engine.upper() != ENGINE:
        raise ErrorReply(f"ERR Engine '{engine}' not found")
    return ENGINE, name.decode(), end


class Registrar:
    """Collects what a library body registers (``redis.register_function``), with Redis's checks.

    ``functions`` maps each name to ``(FunctionInfo, Lua function)``.
    """

    def __init__(self, library: str, is_table: Callable[[Any], bool], items: Callable[[Any], Iterable[Any]],
                 is_function: Callable[[Any], bool]) -> None:
        self.library = library
        self.is_table = is_table
        self.items = items
        self.is_function = is_function
        self.functions: dict[str, tuple[FunctionInfo, Any]] = {}

    def __call__(self, *args: Any) -> bytes | None:
        """Register one function; the error text (for a Lua error) or None."""
        if len(args) < 1 or len(args) > 2:
            return b"ERR wrong number of arguments to redis.register_function"
        description: bytes | None = None
        flags: set[str] = set()
        if len(args) == 1:
            named = args[0]
            if not self.is_table(named):
                return (b"ERR calling redis.register_function with a single argument is only applicable to Lua "
                        b"table (representing named arguments).")
            name = callback = None
            for key, value in self.items(named):
                if type(key) is not bytes:
                    return b"ERR named argument key given to redis.register_function is not a string"
                k = key.lower()
                if k == b"function_name":
                    if type(value) not in (bytes, int, float):
                        return b"ERR function_name argument given to redis.register_function must be a string"
                    name = value if type(value) is bytes else str(value).encode()
                elif k == b"description":
                    if type(value) not in (bytes, int, float):
                        return b"ERR description argument given to redis.register_function must be a string"
                    description = value if type(value) is bytes else str(value).encode()
                elif k == b"callback":
                    if not self.is_function(value):
                        return b"ERR callback argument given to redis.register_function must be a function"
                    callback = value
                elif k == b"flags":
                    if not self.is_table(value):
                        return (b"ERR flags argument to redis.register_function must be a table representing "
                                b"function flags")
                    i = 1
                    for _ in range(len(FUNCTION_FLAGS) * 64):
                        flag = value[i]
                        if flag is None:
                            break
                        text = flag.decode(errors="replace").lower() if type(flag) is bytes else None
                        if text not in FUNCTION_FLAGS:
                            return b"ERR unknown flag given"
                        flags.add(text)
                        i += 1
                else:
                    return b"ERR unknown argument given to redis.register_function"
            if name is None:
                return b"ERR redis.register_function must get a function name argument"
            if callback is None:
                return b"ERR redis.register_function must get a callback argument"
        else:
            name, callback = args
            if type(name) not in (bytes, int, float):
                return b"ERR first argument to redis.register_function must be a string"
            if type(name) is not bytes:
                name = str(name).encode()
            if not self.is_function(callback):
                return b"ERR second argument to redis.register_function must be a function"
        if not _NAME.match(name):
            return f"ERR {BAD_NAME}".encode()
        text = name.decode()
        if text in self.functions:
            return b"ERR Function already exists in the library"
        self.functions[text] = (FunctionInfo(text, description, frozenset(flags), self.library), callback)
        return None


class Registry:
    """The loaded libraries and the function name index; pure data, changed only by applied entries."""

    def __init__(self) -> None:
        self.libraries: dict[str, Library] = {}
        self.functions: dict[str, FunctionInfo] = {}
        #: Bumped on every change, so runtimes holding compiled copies know when to refresh.
        self.generation = 0

    def install(self, library: Library, *, replace: bool) -> None:
        """Add a library already compiled and checked; ErrorReply on a name collision."""
        old = self.libraries.get(library.name)
        if old is not None and not replace:
            raise ErrorReply(f"ERR Library '{library.name}' already exists")
        for name in library.functions:
            owner = self.functions.get(name)
            if owner is not None and owner.library != library.name:
                raise ErrorReply(f"ERR Function {name} already exists")
        if old is not None:
            self._unlink(old)
        self.libraries[library.name] = library
        self.functions.update(library.functions)
        self.generation += 1

    def _unlink(self, library: Library) -> None:
        for name in library.functions:
            self.functions.pop(name, None)
        self.libraries.pop(library.name, None)

    def delete(self, name: str) -> None:
        library = self.libraries.get(name)
        if library is None:
            raise ErrorReply("ERR Library not found")
        self._unlink(library)
        self.generation += 1

    def flush(self) -> None:
        self.libraries.clear()
        self.functions.clear()
        self.generation += 1

    def restore(self, libraries: list[Library], policy: str) -> None:
        """FUNCTION RESTORE: all or nothing (FLUSH, APPEND aborting on a collision, or REPLACE)."""
        staged = Registry()
        if policy != "FLUSH":
            staged.libraries = dict(self.libraries)
            staged.functions = dict(self.functions)
        for library in libraries:
            if library.name in staged.libraries and policy != "REPLACE":
                raise ErrorReply(f"ERR Library {library.name} already exists")
            staged.install(library, replace=True)
        self.libraries, self.functions = staged.libraries, staged.functions
        self.generation += 1

    # -- replies -------------------------------------------------------------------------

    def list_reply(self, pattern: bytes | None, with_code: bool) -> list[dict[str, Any]]:
        match = compile_glob(pattern) if pattern is not None else None
        out = []
        for library in self.libraries.values():
            if match is not None and match(library.name.encode()) is None:
                continue
            entry: dict[str, Any] = {
                "library_name": library.name.encode(),
                "engine": ENGINE.encode(),
                "functions": [{"name": f.name.encode(), "description": f.description,
                               "flags": {SimpleString(flag) for flag in FUNCTION_FLAGS if flag in f.flags}}
                              for f in library.functions.values()],
            }
            if with_code:
                entry["library_code"] = library.code
            out.append(entry)
        return out

    # -- persistence (snapshot rows) and DUMP payloads ------------------------------------

    def codes(self) -> list[bytes]:
        return [library.code for library in self.libraries.values()]

    def dump(self) -> bytes:
        payload = bytearray()
        for code in self.codes():
            payload.append(RDB_OPCODE_FUNCTION2)
            payload += _rdb_length(len(code)) + code
        payload += struct.pack("<H", RDB_VERSION)
        payload += struct.pack("<Q", crc64(bytes(payload)))
        return bytes(payload)


def parse_dump(payload: bytes) -> list[bytes]:
    """The library codes in a FUNCTION DUMP payload; ErrorReply with Redis's texts."""
    if len(payload) < 10:
        raise ErrorReply("ERR DUMP payload version or checksum are wrong")
    body, footer = payload[:-10], payload[-10:]
    version = struct.unpack("<H", footer[:2])[0]
    if version > RDB_VERSION or crc64(payload[:-8]) != struct.unpack("<Q", footer[2:])[0]:
        raise ErrorReply("ERR DUMP payload version or checksum are wrong")
    codes = []
    i = 0
    while i < len(body):
        opcode = body[i]
        i += 1
        if opcode != RDB_OPCODE_FUNCTION2:
            raise ErrorReply("ERR given type is not a function")
        try:
            code, i = _rdb_string(body, i)
        except (IndexError, ValueError):
            raise ErrorReply("ERR failed loading the given functions payload") from None
        codes.append(code)
    return codes


def _rdb_length(n: int) -> bytes:
    if n < 1 << 6:
        return bytes((n,))
    if n < 1 << 14:
        return bytes((0x40 | (n >> 8), n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def _rdb_read_length(data: bytes, i: int) -> tuple[int, bool, int]:
    """(length or encoding, is_encoded, next offset)."""
    first = data[i]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, False, i + 1
    if kind == 1:
        return ((first & 0x3F) << 8) | data[i + 1], False, i + 2
    if kind == 3:
        return first & 0x3F, True, i + 1
    if first == 0x80:
        return struct.unpack(">I", data[i + 1:i + 5])[0], False, i + 5
    if first == 0x81:
        return struct.unpack(">Q", data[i + 1:i + 9])[0], False, i + 9
    raise ValueError("bad length")


def _rdb_string(data: bytes, i: int) -> tuple[bytes, int]:
    n, encoded, i = _rdb_read_length(data, i)
    if not encoded:
        if i + n > len(data):
            raise ValueError("short string")
        return data[i:i + n], i + n
    if n == 3:  # RDB_ENC_LZF
        compressed, _, i = _rdb_read_length(data, i)
        plain, _, i = _rdb_read_length(data, i)
        out = lzf_decompress(data[i:i + compressed], plain)
        return out, i + compressed
    if n in (0, 1, 2):  # integers encoded as strings
        size = 1 << n
        value = int.from_bytes(data[i:i + size], "little", signed=True)
        return str(value).encode(), i + size
    raise ValueError("unknown string encoding")


def lzf_decompress(data: bytes, size: int) -> bytes:
    """liblzf's lzf_decompress (the format Redis compresses RDB strings with)."""
    out = bytearray()
    i = 0
    while i < len(data):
        ctrl = data[i]
        i += 1
        if ctrl < 32:
            out += data[i:i + ctrl + 1]
            i += ctrl + 1
        else:
            length = ctrl >> 5
            ref = len(out) - ((ctrl & 0x1F) << 8) - 1
            if length == 7:
                length += data[i]
                i += 1
            ref -= data[i]
            i += 1
            if ref < 0:
                raise ValueError("bad back reference")
            for _ in range(length + 2):
                out.append(out[ref])
                ref += 1
    if len(out) != size:
        raise ValueError("bad length")
    return bytes(out)


def _crc64_table() -> list[int]:
    poly = 0x95AC9329AC4BC9B5  # Jones polynomial, reflected (Redis's crc64.c)
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64 = _crc64_table()


def crc64(data: bytes, crc: int = 0) -> int:
    table = _CRC64
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc
