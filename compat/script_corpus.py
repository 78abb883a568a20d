"""The script corpus the differential test runs against redis-server and vfsd.

Each case is one command (a list of arguments); ``RESP3`` cases run after ``HELLO 3``.
Cases whose replies differ on purpose are in ``DIFFERENCES`` with the reason
(README, "Scripting: differences from Redis"). Keys are local keys, so both
servers treat them the same way.
"""

from __future__ import annotations

E = "EVAL"


def ev(body: str, *args: str, keys: int = 0) -> list[str]:
    return [E, body, str(keys), *args]


KV = "return {#KEYS, #ARGV, table.concat(KEYS, ','), table.concat(ARGV, ',')}"


CASES: list[list[str]] = [
    # -- Lua -> reply conversion --
    ev("return 1"), ev("return 3.99"), ev("return -3.7"), ev("return 0.5"), ev("return 1e15"),
    ev("return 'str'"), ev("return true"), ev("return false"), ev("return nil"),
    ev("return {1, 2, 3}"), ev("return {1, 2, nil, 4}"), ev("return {1, {2, {3, 'x'}}, false, 5}"),
    ev("return {}"), ev("return {a = 1, b = 2}"), ev("return {1, 2, a = 3}"),
    ev("return {err = 'My custom error'}"), ev("return {err = 'WRONGTYPE custom code'}"),
    ev("return {ok = 'FINE'}"), ev("return {ok = 'multi\\r\\nline'}"), ev("return {err = 'x', ok = 'y'}"),
    ev("return redis.error_reply('X y')"), ev("return redis.error_reply('justone')"),
    ev("return redis.error_reply('-ERR with dash')"), ev("return redis.status_reply('STATUS')"),
    ev("return redis.error_reply(1)"), ev("return redis.status_reply()"),
    ev("return {1, {err = 'nested'}, 3}"), ev("return {1, {ok = 'nested'}, 3}"),
    ev("return {double = 3.5}"), ev("return {map = {a = 1}}"), ev("return {set = {a = true}}"),
    ev("return {big_number = '123456789012345678901234567890'}"),
    ev("return {verbatim_string = {format = 'txt', string = 'hello'}}"),
    ev("return function() end"), ev("return KEYS[1] .. ARGV[1]", "k1", "a1", keys=1),
    ev("return {KEYS[1], KEYS[2], ARGV[1], ARGV[2]}", "k1", "k2", "a1", "a2", keys=2),
    ev("return #ARGV"), ev("return ARGV", "x", "y"),
    # -- reply -> Lua conversion (RESP2 script) --
    ev("redis.call('set', KEYS[1], 'v') return redis.call('get', KEYS[1])", "conv1", keys=1),
    ev("return redis.call('get', 'nonexistent-key')"), ev("return type(redis.call('get', 'nonexistent-key'))"),
    ev("return redis.call('set', KEYS[1], 'v')", "conv2", keys=1),
    ev("local r = redis.call('set', KEYS[1], 'v') return r.ok", "conv3", keys=1),
    ev("return redis.call('incr', KEYS[1])", "conv4", keys=1),
    ev("return redis.call('incrbyfloat', KEYS[1], '1.5')", "conv5", keys=1),
    ev("redis.call('set', KEYS[1], 'a') return redis.call('mget', KEYS[1], 'missing-x')", "conv6", keys=1),
    ev("return redis.call('exists', 'missing-y')"),
    ev("redis.call('set', KEYS[1], 1.5) return redis.call('get', KEYS[1])", "num1", keys=1),
    ev("redis.call('set', KEYS[1], 3.0) return redis.call('get', KEYS[1])", "num2", keys=1),
    ev("redis.call('set', KEYS[1], 1e20) return redis.call('get', KEYS[1])", "num3", keys=1),
    ev("redis.call('set', KEYS[1], 2^53) return redis.call('get', KEYS[1])", "num4", keys=1),
    ev("redis.call('set', KEYS[1], -7) return redis.call('get', KEYS[1])", "num5", keys=1),
    # -- RESP3 inside the script --
    ev("redis.setresp(3) return redis.call('get', 'nonexistent-key')"),
    ev("redis.setresp(3) return type(redis.call('get', 'nonexistent-key'))"),
    ev("redis.setresp(3) return true"), ev("redis.setresp(3) return false"),
    ev("redis.setresp(3) local r = redis.call('incrbyfloat', KEYS[1], '2.5') return r", "r3a", keys=1),
    ev("return redis.setresp(4)"), ev("return redis.setresp()"),
    # -- errors --
    ev("return redis.call('nosuchcommand')"), ev("return redis.pcall('nosuchcommand')"),
    ev("return redis.call('get')"), ev("return redis.call()"), ev("return redis.call({})"),
    ev("return redis.call('get', {})"), ev("return redis.call('subscribe', 'x')"),
    ev("return redis.call('multi')"),
    ev("redis.call('set', KEYS[1], 'x') return redis.call('incr', KEYS[1])", "err1", keys=1),
    ev("redis.call('set', KEYS[1], 'x') return redis.pcall('incr', KEYS[1])", "err2", keys=1),
    ev("local ok, e = pcall(redis.call, 'incr', KEYS[1]) return {tostring(ok), e}", "err2", keys=1),
    ev("local ok, e = pcall(error, {err = 'TAB x'}) return {tostring(ok), type(e), e}"),
    ev("local ok, e = pcall(error, 'plain') return {tostring(ok), e}"),
    ev("error('boom')"), ev("error('boom', 0)"), ev("error({err = 'CUSTOM boom'})"), ev("error()"),
    ev("return 1 + nil"), ev("local t = nil return t.x"), ev("return x"), ev("x = 1"),
    ev("return nosuch()"), ev("\n\nerror('line three')"),
    ev("return redis.call('get', KEYS[1], 'extra')", "k", keys=1),
    ev("return"), ev("if then"), ev("return 1", "a", keys=2), ev("return 1", keys=-1),
    ["EVAL", "return 1", "notanumber"],
    ["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"], ["EVALSHA", "short", "0"],
    # -- sandbox --
    ev("return type(os)"), ev("return type(io)"), ev("return type(require)"), ev("return type(loadfile)"),
    ev("return type(dofile)"), ev("return type(print)"), ev("return type(debug)"), ev("return type(module)"),
    ev("return type(loadstring)"), ev("return type(load)"), ev("return type(setfenv)"), ev("return type(getfenv)"),
    ev("return type(coroutine)"), ev("return type(newproxy)"), ev("return type(gcinfo)"),
    ev("return type(unpack)"), ev("return type(collectgarbage)"), ev("return _VERSION"),
    ev("string.foo = 1"), ev("redis.call = nil"), ev("table.insert = nil"), ev("math.pi = 3"),
    ev("_G.x = 1"), ev("rawset(_G, 'x', 1)"), ev("setmetatable(_G, nil)"),
    ev("local t = {} t.x = 1 return t.x"), ev("return loadstring('return 5')()"),
    ev("return loadstring(string.dump(function() return 1 end))"),
    ev("local co = coroutine.create(function() coroutine.yield(1) return 2 end) "
       "local _, a = coroutine.resume(co) local _, b = coroutine.resume(co) return {a, b}"),
    ev("return pcall(function() error('inner') end)"),
    ev("return {pcall(function() error('inner') end)}"),
    ev("return {xpcall(function() error('inner') end, function(e) return 'handled: ' .. e end)}"),
    ev("local function f(n) return f(n + 1) + 1 end return f(1)"),
    ev("return redis.sha1hex('')"), ev("return redis.sha1hex('abc')"), ev("return redis.sha1hex()"),
    ev("return redis.REDIS_VERSION ~= nil"), ev("return redis.log(redis.LOG_WARNING, 'from a script')"),
    ev("return redis.log()"), ev("return redis.log('x', 'y')"), ev("return redis.log(9, 'y')"),
    ev("return redis.set_repl(redis.REPL_ALL)"), ev("return redis.set_repl(99)"),
    ev("return redis.replicate_commands()"), ev("return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, "
                                               "redis.LOG_WARNING, redis.REPL_NONE, redis.REPL_AOF, redis.REPL_ALL}"),
    ev("return math.random(1, 1000)"), ev("math.randomseed(42) return {math.random(100), math.random(100)}"),
    ev("math.randomseed(7) return tostring(math.random())"), ev("return math.random(0)"),
    ev("return string.format('%d %s %5.2f', 42, 'x', 3.14159)"), ev("return string.rep('ab', 3)"),
    ev("return table.concat({1, 2, 3}, ',')"), ev("return tostring(tonumber('0x10'))"),
    # string.rep and table.concat (vfsd's build big results in pieces): arguments as Lua 5.1 takes them
    ev("return string.rep('x', '0x3')"), ev("return string.rep('x', ' 2 ')"), ev("return string.rep(12.5, 2)"),
    ev("return string.rep('x', 2^32 + 2)"), ev("return string.rep('x', -1)"), ev("return string.rep('', 1e9)"),
    ev("return string.rep('x', 2.9)"), ev("return #string.rep('abc', 100000)"), ev("return ('ab'):rep(3)"),
    ev("return string.rep()"), ev("return string.rep('x')"), ev("return string.rep({}, 1)"),
    ev("return string.rep('x', 'a')"), ev("return string.rep('x', nil)"), ev("return ('x'):rep()"),
    ev("local r = string.rep return r()"), ev("local ok, e = pcall(string.rep) return e"),
    ev("return table.concat({1, 2, 3}, '-', 2)"), ev("return table.concat({1, 2, 3}, '-', 2, 3)"),
    ev("return table.concat({1, 2, 3}, 5, '2')"), ev("return table.concat({}, ',')"),
    ev("return table.concat({1, 2}, ',', 3)"), ev("return table.concat({'a', 'b'}, nil, nil, 1)"),
    ev("local t = {} for i = 1, 10000 do t[i] = i % 7 end local s = table.concat(t, ',') return {#s, s:sub(-20)}"),
    ev("local t = {} for i = 1, 10000 do t[i] = i end t[9000] = {} return table.concat(t)"),
    ev("return table.concat({1, {}})"), ev("return table.concat()"), ev("return table.concat(1, {})"),
    ev("return table.concat({1}, {})"), ev("return table.concat({1}, ',', 'x')"),
    ev("return table.concat({1, 2}, ',', 1, 3)"),
    ev("return {type(redis.call), type(cjson.encode), type(string.rep), type(table.concat), type(math.random)}"),
    ev("return {tostring(redis.call):sub(1, 12), tostring(string.rep):sub(1, 12), tostring(bit.band):sub(1, 12)}"),
    ev("local t = type() return t"),
    ev("local x = setmetatable(1) return x"),
    ev("return tostring(1/0)"), ev("return tostring(-1/0)"), ev("return 1/0"),
    # -- cjson --
    ev("return cjson.encode({})"), ev("return cjson.encode({1, 2, 3})"), ev("return cjson.encode({a = 1})"),
    ev("return cjson.encode('a/b\"c\\\\d\\n')"), ev("return cjson.encode({1.5, 1/3, 1e20, -0.25, 100})"),
    ev("return cjson.encode({true, false})"), ev("return cjson.encode(cjson.null)"),
    ev("return cjson.encode({[1] = 'a', [3] = 'c'})"), ev("return cjson.encode({[1] = 'a', [20] = 'c'})"),
    ev("return cjson.encode({[1.5] = 'x'})"), ev("return cjson.encode(function() end)"),
    ev("return cjson.encode({nested = {deeper = {1, 2}}})"),
    ev("return cjson.encode(1/0)"),
    ev("return cjson.decode('[1, 2, 3]')"), ev("return cjson.decode('{\"a\": [1, 2, {\"b\": null}]}').a"),
    ev("return cjson.decode('\"str\"')"), ev("return cjson.decode('12.5')"),
    ev("return tostring(cjson.decode('null') == cjson.null)"), ev("return cjson.decode('[1, null, 3]')"),
    ev("return cjson.decode('\"\\\\u00e9\\\\n\"')"), ev("return cjson.decode('{bad json')"),
    ev("return cjson.decode('[1, 2')"), ev("return cjson.encode(cjson.decode('{\"k\": [true, false, null]}'))"),
    # -- cmsgpack --
    ev("return cmsgpack.pack({1, 2, 3})"), ev("return cmsgpack.pack({a = 1})"), ev("return cmsgpack.pack('abc')"),
    ev("return cmsgpack.pack(1.5, 300, -1, -200, 70000, 5000000000, true, false)"),
    ev("return cmsgpack.pack(string.rep('x', 40))"), ev("return cmsgpack.pack(0.1)"), ev("return cmsgpack.pack({})"),
    ev("return cmsgpack.unpack(cmsgpack.pack({1, 2, {3, 4}}))"),
    ev("return {cmsgpack.unpack(cmsgpack.pack(1, 'two', 3))}"),
    ev("local t = cmsgpack.unpack(cmsgpack.pack({a = 'b'})) return t.a"),
    ev("return cmsgpack.unpack('\\193')"), ev("return cmsgpack.pack()"),
    # -- bit --
    ev("return bit.band(0xff, 0x0f)"), ev("return bit.bor(1, 2, 4)"), ev("return bit.bxor(5, 3)"),
    ev("return bit.bnot(0)"), ev("return bit.lshift(1, 31)"), ev("return bit.rshift(-1, 28)"),
    ev("return bit.arshift(-256, 4)"), ev("return bit.tohex(255)"), ev("return bit.tohex(-1, -4)"),
    ev("return bit.tobit(2^32 + 5)"), ev("return bit.rol(0x12345678, 8)"), ev("return bit.bswap(0x12345678)"),
    # -- struct --
    ev("return struct.pack('>I2', 258)"), ev("return struct.pack('<i4', -2)"), ev("return struct.pack('b', 65)"),
    ev("return {struct.unpack('>I2', '\\1\\2')}"), ev("return struct.size('>I4i2b')"),
    ev("return {struct.unpack('s', 'abc\\0rest')}"), ev("return struct.pack('c3', 'abcdef')"),
    ev("return {struct.unpack('>d', struct.pack('>d', 1.5))}"), ev("return struct.pack('q', 1)"),
    # -- flags and read-only --
    ev("#!lua flags=no-writes\nreturn redis.call('set', 'ro1', 'x')"),
    ev("#!lua flags=no-writes\nreturn redis.call('get', 'ro1')"),
    ev("#!lua\nreturn 1"), ev("#!lua flags=bogus\nreturn 1"), ev("#!python\nreturn 1"), ev("#!lua name=x\nreturn 1"),
    ["EVAL_RO", "return redis.call('set', 'ro2', 'x')", "0"], ["EVAL_RO", "return redis.call('get', 'ro2')", "0"],
    ["EVAL_RO", "#!lua\nreturn 1", "0"], ["EVAL_RO", "#!lua flags=no-writes\nreturn 1", "0"],
    # -- SCRIPT --
    ["SCRIPT", "LOAD", "return 'loaded'"], ["EVALSHA", "a48ee3e13ec5e10a5eb4a7c7d2bd2e18c6f2bcf4", "0"],
    ["SCRIPT", "EXISTS", "a48ee3e13ec5e10a5eb4a7c7d2bd2e18c6f2bcf4", "ffffffffffffffffffffffffffffffffffffffff"],
    ["SCRIPT", "LOAD", "syntax error here"], ["SCRIPT", "KILL"], ["SCRIPT", "FLUSH", "BOGUS"],
    ["EVALSHA", "A48EE3E13EC5E10A5EB4A7C7D2BD2E18C6F2BCF4", "0"],
    ["EVALSHA_RO", "a48ee3e13ec5e10a5eb4a7c7d2bd2e18c6f2bcf4", "0"],
    # KEYS and ARGV of every shape (0, 1 and 2 keys take their own way into Lua), numkeys errors
    *(ev(KV, *args, keys=n) for n, args in ((0, ()), (0, ("a",)), (1, ("k",)), (1, ("k", "a", "b")), (2, ("k", "l")),
                                             (2, ("k", "l", "a")), (3, ("k", "l", "m", "a")))),
    ["SCRIPT", "LOAD", KV], ["EVALSHA", "05a8ae56088b91b37d7b91c5a112b3cd38611b1a", "1", "k", "a"], ["EVALSHA", "05a8ae56088b91b37d7b91c5a112b3cd38611b1a", "01", "k", "a"],
    ["EVALSHA", "05a8ae56088b91b37d7b91c5a112b3cd38611b1a", "-1", "k"], ["EVALSHA", "05a8ae56088b91b37d7b91c5a112b3cd38611b1a", "3", "k"], ["EVALSHA", "05a8ae56088b91b37d7b91c5a112b3cd38611b1a", "x", "k"],
    ["SCRIPT", "LOAD", "return redis.call('SET', KEYS[1], ARGV[1])"], ["EVALSHA", "d8f2fad9f8e86a53d2a6ebd960b33c4972cacc37", "1", "sha-w", "v"],
    ["EVALSHA_RO", "d8f2fad9f8e86a53d2a6ebd960b33c4972cacc37", "1", "sha-w", "v"], ["EVALSHA", "d8f2fad9f8e86a53d2a6ebd960b33c4972cacc37", "1", "sha-w"],
    ["SCRIPT", "FLUSH"], ["SCRIPT", "EXISTS", "a48ee3e13ec5e10a5eb4a7c7d2bd2e18c6f2bcf4"], ["SCRIPT", "NOPE"],
    ["EVALSHA", "05a8ae56088b91b37d7b91c5a112b3cd38611b1a", "1", "k", "a"], ["EVALSHA", "d8f2fad9f8e86a53d2a6ebd960b33c4972cacc37", "1", "sha-w", "v"],
    # -- FUNCTION --
    ["FUNCTION", "FLUSH"],
    ["FUNCTION", "LOAD", "#!lua name=lib1\nredis.register_function('f1', function(keys, args) return args[1] end)"],
    ["FCALL", "f1", "0", "hello"], ["FCALL_RO", "f1", "0", "hello"], ["FCALL", "nosuch", "0"],
    ["FUNCTION", "LOAD", "#!lua name=lib1\nredis.register_function('f1', function() return 1 end)"],
    ["FUNCTION", "LOAD", "REPLACE",
     "#!lua name=lib1\nredis.register_function{function_name='f1', callback=function(k, a) return #k end, "
     "flags={'no-writes'}, description='counts keys'}"],
    ["FCALL", "f1", "2", "a", "b"], ["FCALL_RO", "f1", "1", "a"],
    ["FUNCTION", "LOAD", "#!lua name=lib2\nredis.register_function('f1', function() return 1 end)"],
    ["FUNCTION", "LOAD", "#!lua name=lib3\nlocal x = redis.call('ping')"],
    ["FUNCTION", "LOAD", "#!lua name=lib4\nreturn 1"],
    ["FUNCTION", "LOAD", "#!lua name=lib5\nredis.register_function('bad-name', function() end)"],
    ["FUNCTION", "LOAD", "#!lua name=lib6\nredis.register_function('g', 'notafunction')"],
    ["FUNCTION", "LOAD", "#!lua name=lib7\nredis.register_function{function_name='g', callback=function() end, "
     "flags={'nosuchflag'}}"],
    ["FUNCTION", "LOAD", "#!lua name=lib8\nredis.register_function('g', function() end)\n"
     "redis.register_function('g', function() end)"],
    ["FUNCTION", "LOAD", "#!lua name=lib9\nsyntax error"], ["FUNCTION", "LOAD", "no shebang"],
    ["FUNCTION", "LOAD", "#!lua\nredis.register_function('g', function() end)"],
    ["FUNCTION", "LOAD", "#!lua name=bad-name\nredis.register_function('g', function() end)"],
    ["FUNCTION", "LOAD", "#!lua name=a name=b\n"], ["FUNCTION", "LOAD", "#!lua name=x foo=bar\n"],
    ["FUNCTION", "LOAD", "#!js name=x\n"], ["FUNCTION", "LOAD", "BOGUS", "x"],
    ["FUNCTION", "LOAD", "#!lua name=lib10\nredis.register_function('w', function(keys, args) "
     "return redis.call('set', keys[1], args[1]) end)\nredis.register_function('e', function() error('fn err') end)\n"
     "redis.register_function('k', function() return KEYS end)"],
    ["FCALL", "w", "1", "fkey", "fval"], ["FCALL_RO", "w", "1", "fkey", "fval"], ["FCALL", "e", "0"],
    ["FCALL", "k", "0"], ["FCALL", "w", "notanumber"], ["FCALL", "w", "5", "a"],
    ["FUNCTION", "LIST"], ["FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "lib1"],
    ["FUNCTION", "LIST", "LIBRARYNAME", "nomatch*"], ["FUNCTION", "LIST", "BOGUS"],
    ["FUNCTION", "LIST", "LIBRARYNAME"], ["FUNCTION", "STATS"], ["FUNCTION", "KILL"],
    ["FUNCTION", "DELETE", "nosuchlib"], ["FUNCTION", "DELETE", "lib1"], ["FCALL", "f1", "0"],
    ["FUNCTION", "RESTORE", "garbage"], ["FUNCTION", "RESTORE", "garbage", "BOGUS"],
    ["FUNCTION", "FLUSH", "BOGUS"],
    ["EVAL", "return redis.register_function", "0"],
    ["FUNCTION", "LOAD", "#!lua name=lib11\nredis.register_function('t', function() return type(string) end)\n"
     "local s = type(string)"],
]

RESP3_CASES: list[list[str]] = [
    ev("return {double = 3.5}"), ev("return {map = {a = 1}}"), ev("return {set = {a = true}}"),
    ev("return {big_number = '123456789012345678901234567890'}"),
    ev("return {verbatim_string = {format = 'txt', string = 'hello'}}"), ev("return true"), ev("return false"),
    ev("redis.setresp(3) return true"), ev("return nil"), ev("return {1, nil}"),
    ev("redis.setresp(3) return redis.call('incrbyfloat', KEYS[1], '0.5')", "r3b", keys=1),
    ev("redis.setresp(3) local r = redis.call('incrbyfloat', KEYS[1], '0.5') return {double = r.double}", "r3c",
       keys=1),
    ev("return redis.call('get', 'nonexistent-key')"), ev("return {err = 'E3 resp3 error'}"),
    ev("return {ok = 'RESP3OK'}"), ev("return 1.5"),
]

#: Cases where vfsd follows Redis 7.2 and the redis-server under test (Debian's 7.0) differs:
#: case (its arguments joined by spaces) -> vfsd's reply. README, "Scripting: differences from Redis".
DIFFERENCES: dict[str, bytes] = {
    # Redis 7.2's allow list (script_lua.c) has setfenv, getfenv and newproxy; 7.0 hid them.
    "EVAL return type(setfenv) 0": b"$8\r\nfunction\r\n",
    "EVAL return type(getfenv) 0": b"$8\r\nfunction\r\n",
    "EVAL return type(newproxy) 0": b"$8\r\nfunction\r\n",
}

#: Replies compared as sets: Redis lists libraries and functions in its hash tables' order.
UNORDERED = {"FUNCTION LIST", "FUNCTION LIST WITHCODE LIBRARYNAME lib1"}
