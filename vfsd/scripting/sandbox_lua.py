"""The trusted Lua half of the sandbox (see ``sandbox.py``), kept as text so the core opens no file."""

SOURCE = r"""-- The sandbox every script and function runs in (loaded once per Lua runtime by sandbox.py).
--
-- Trusted code: it captures what it needs from the pristine globals as locals, removes
-- everything dangerous from them, and hands back the entry points. Scripts never see a
-- Python object: the callbacks live only in this chunk's upvalues.
local py = ...

local type, error, tostring, tonumber, select, pairs, ipairs, next, unpack =
      type, error, tostring, tonumber, select, pairs, ipairs, next, unpack
local rawget, rawset, rawequal, setmetatable, getmetatable = rawget, rawset, rawequal, setmetatable, getmetatable
local pcall, xpcall, loadstring, setfenv, getfenv, assert = pcall, xpcall, loadstring, setfenv, getfenv, assert
local collectgarbage, gcinfo, newproxy = collectgarbage, gcinfo, newproxy
local sethook, getinfo = debug.sethook, debug.getinfo
local co_create, co_wrap = coroutine.create, coroutine.wrap
local s_sub, s_find, s_byte, s_gsub, s_match, s_format = string.sub, string.find, string.byte, string.gsub,
      string.match, string.format
local string, table, math, coroutine, _VERSION = string, table, math, coroutine, _VERSION
local concat = table.concat
local STEP = py.hook_steps
local TRUSTED = "=vfsd"

-- From here on, functions created in this chunk see an empty environment (getfenv on
-- one of them must not reach the pristine globals).
local pristine = getfenv(1)
local trusted_env = setmetatable({}, {__metatable = false})
setfenv(1, trusted_env)

for _, name in ipairs({"os", "io", "debug", "package", "require", "dofile", "loadfile", "module", "print",
                       "python", "load", "loadstring", "setfenv", "getfenv", "newproxy", "gcinfo"}) do
  rawset(pristine, name, nil)
end

local protected = setmetatable({}, {__mode = "k"})

local function ro_error() error("Attempt to modify a readonly table", 2) end

local function readonly(t)
  local p = setmetatable({}, {__index = t, __newindex = ro_error, __metatable = false})
  protected[p] = true
  return p
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- luaPushErrorBuff: "-CODE msg" keeps its code, anything else gets ERR; no CR/LF at the ends.
local function error_table(s)
  local code, msg
  if s_sub(s, 1, 1) == "-" then
    local sp = s_find(s, " ", 1, true)
    if sp then code, msg = s_sub(s, 2, sp - 1), s_sub(s, sp + 1) else code, msg = "ERR", s_sub(s, 2) end
  else
    code, msg = "ERR", s
  end
  msg = s_gsub(s_gsub(msg, "^[\r\n]+", ""), "[\r\n]+$", "")
  return {err = code .. " " .. msg}
end

-- The count hook: every STEP instructions Python decides (busy, kill, budget). Once a run is
-- stopped it is a line hook that raises again on every line of the script, but not in this
-- chunk's own code, which must get the run's outcome back to Python.
local hook
hook = function(event)
  if event == "line" and getinfo(2, "S").source == TRUSTED then return end
  local verdict = py.tick()
  if verdict then
    sethook(hook, "l")  -- raise again on every line, so pcall cannot swallow it (as Redis)
    error({err = verdict}, 0)
  end
end

local function hooked(f)
  return function(...)
    sethook(hook, "", STEP)
    return f(...)
  end
end

-- Redis's error handler: the error as a table, with the source and line of the Lua frame
-- that raised it (frames of C functions and of this chunk are skipped).
local function handler(err)
  local level = 2
  local i = getinfo(level, "nSl")
  while i and (i.what == "C" or i.what == "tail" or i.source == TRUSTED) do
    level = level + 1
    i = getinfo(level, "nSl")
  end
  if type(err) == "userdata" then
    -- An error raised by a Python callback (redis.call, cjson...): they are called as C
    -- functions, so the calling Lua frame is still there, as with Redis's C functions.
    local raised = py.unwrap(err)
    if raised ~= nil then
      err = raised
      -- A library error (luaL_error in Redis's C libraries) names the Lua line that called it.
      if type(err) == "string" and i then err = i.short_src .. ":" .. i.currentline .. ": " .. err end
    end
  elseif type(err) == "string" and s_sub(err, 1, 5) == "vfsd:" then
    -- Raised by a C function this chunk called for the script (pcall, setmetatable...): Lua
    -- named this chunk's line; name the script's, as when the script calls the function itself.
    local rest = s_match(err, "^vfsd:%d+: (.*)$")
    if rest then err = i and (i.short_src .. ":" .. i.currentline .. ": " .. rest) or rest end
  end
  if type(err) ~= "table" then err = {err = "ERR " .. tostring(err)} end
  if i then
    rawset(err, "source", i.source)
    rawset(err, "line", i.currentline)
  end
  return err
end

-- Builtins with their sandboxed behaviour --------------------------------------------

local function safe_pcall_result(ok, ...)
  if ok then return ok, ... end
  local e = ...
  if type(e) == "userdata" then
    local raised = py.unwrap(e)
    if raised ~= nil then e = raised end
    if type(e) == "string" then return false, e end
  end
  if type(e) == "table" then
    local m = rawget(e, "err")
    if type(m) == "string" or type(m) == "number" then return false, m end
  end
  return false, ...
end

local function safe_pcall(f, ...) return safe_pcall_result(pcall(f, ...)) end

local function safe_rawset(t, k, v)
  if protected[t] then error("Attempt to modify a readonly table", 0) end
  return rawset(t, k, v)
end

local function safe_setmetatable(t, mt)
  if protected[t] then error("Attempt to modify a readonly table", 0) end
  return setmetatable(t, mt)
end

local function safe_loadstring(s, name)
  if type(s) == "string" and s_byte(s, 1) == 27 then return nil, "attempt to load a binary chunk" end
  local f, err = loadstring(s, name)
  if f then setfenv(f, getfenv(2)) end
  return f, err
end

local function safe_load(reader, name)
  if type(reader) ~= "function" then return safe_loadstring(reader, name) end
  local parts = {}
  while true do
    local piece = reader()
    if piece == nil or piece == "" then break end
    if type(piece) ~= "string" then return nil, "reader function must return a string" end
    parts[#parts + 1] = piece
  end
  local s = concat(parts)
  if s_byte(s, 1) == 27 then return nil, "attempt to load a binary chunk" end
  local f, err = loadstring(s, name or "=(load)")
  if f then setfenv(f, getfenv(2)) end
  return f, err
end

local function safe_setfenv(f, t)
  if f == 0 or type(f) == "thread" then error("'setfenv' cannot change the environment of the running thread", 2) end
  if type(f) == "number" then f = f + 1 end
  return setfenv(f, t)
end

local function safe_getfenv(f)
  if f == nil then f = 1 end
  local e
  if type(f) == "number" then
    if f == 0 then return getfenv(2) end
    e = getfenv(f + 1)
  else
    e = getfenv(f)
  end
  -- C functions carry the pristine globals, and this chunk's functions its own empty table:
  -- never hand those out (the functions stand in for Redis's C functions, which have _G).
  if e == pristine or e == trusted_env then return getfenv(2) end
  return e
end

local function safe_collectgarbage(opt, arg)
  if opt == nil or opt == "collect" or opt == "count" or opt == "step" then return collectgarbage(opt, arg) end
  if opt == "stop" or opt == "restart" or opt == "setpause" or opt == "setstepmul" then return 0 end
  return collectgarbage(opt, arg)
end

local coroutine_api = copy(coroutine)
coroutine_api.create = function(f)
  if type(f) ~= "function" then error("bad argument #1 to 'create' (Lua function expected)", 2) end
  return co_create(hooked(f))
end
coroutine_api.wrap = function(f)
  if type(f) ~= "function" then error("bad argument #1 to 'wrap' (Lua function expected)", 2) end
  return co_wrap(hooked(f))
end

local math_api = copy(math)
math_api.random = py.random
math_api.randomseed = py.randomseed

-- Libraries backed by Python callables (called as C functions; errors carry no position).
local cjson = copy(py.cjson)
cjson.null = readonly({})
py.set_null(cjson.null)
local cmsgpack, bit, struct = copy(py.cmsgpack), copy(py.bit), copy(py.struct)

-- string.rep and table.concat build big results in pieces, between which Python hears of the
-- work (libs.py): Lua's own build any size in one C call, which no hook interrupts.
local string_api, table_api = copy(string), copy(table)
string_api.rep, table_api.concat = py.base.rep, py.base.concat
getmetatable("").__index = string_api  -- ("x"):rep(n) too

-- The redis.* API ------------------------------------------------------------------

local redis_call, redis_pcall = py.call, py.pcall

local function error_reply(...)
  if select("#", ...) ~= 1 or type((...)) ~= "string" then return error_table("wrong number or type of arguments") end
  local s = ...
  if s_sub(s, 1, 1) ~= "-" then s = "-" .. s end
  return error_table(s)
end

local function status_reply(...)
  if select("#", ...) ~= 1 or type((...)) ~= "string" then return error_table("wrong number or type of arguments") end
  return {ok = (...)}
end


local function add_log_api(t)
  t.log = py.log
  t.LOG_DEBUG, t.LOG_VERBOSE, t.LOG_NOTICE, t.LOG_WARNING = 0, 1, 2, 3
  t.REDIS_VERSION, t.REDIS_VERSION_NUM = py.redis_version, py.redis_version_num
  return t
end

local redis_api = add_log_api({
  call = redis_call, pcall = redis_pcall, error_reply = error_reply, status_reply = status_reply,
  sha1hex = py.sha1hex, setresp = py.setresp, set_repl = py.set_repl, acl_check_cmd = py.acl_check_cmd,
  REPL_NONE = 0, REPL_AOF = 1, REPL_SLAVE = 2, REPL_REPLICA = 2, REPL_ALL = 3,
  replicate_commands = function() return true end,
  breakpoint = function() return false end,
  debug = function() end,
})

local function missing_global(_, k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
end

local libraries = {
  string = readonly(string_api), table = readonly(table_api), math = readonly(math_api),
  coroutine = readonly(coroutine_api), cjson = readonly(cjson), cmsgpack = readonly(cmsgpack),
  bit = readonly(bit), struct = readonly(struct),
}

-- The Python callables behind redis.call, cjson.encode, string.rep... are userdata to Lua;
-- scripts see them as the functions they are in Redis (type and tostring).
local builtins = setmetatable({}, {__mode = "k"})  -- callable -> what tostring says of it
local builtin_count = 0
local function register_builtins(t)
  for _, v in pairs(t) do
    if type(v) == "userdata" and builtins[v] == nil then
      builtin_count = builtin_count + 1  -- an address of its own, as a C function has
      builtins[v] = s_format("function: 0x%012x", 0x7f5e00000000 + 64 * builtin_count)
    end
  end
end

local function safe_type(...)
  if builtins[(...)] then return "function" end
  return type(...)
end

local function safe_tostring(...)
  local name = builtins[(...)]
  if name then return name end
  return tostring(...)
end

-- The names Redis 7.2 allows in a script's globals (script_lua.c's allow lists).
local function new_globals(redis_table)
  local G = {
    xpcall = xpcall, tostring = safe_tostring, getfenv = safe_getfenv, setmetatable = safe_setmetatable,
    next = next, assert = assert, tonumber = tonumber, rawequal = rawequal, collectgarbage = safe_collectgarbage,
    getmetatable = getmetatable, rawset = safe_rawset, pcall = safe_pcall, type = safe_type, select = select,
    unpack = unpack, gcinfo = gcinfo, pairs = pairs, rawget = rawget, loadstring = safe_loadstring,
    ipairs = ipairs, _VERSION = _VERSION, setfenv = safe_setfenv, load = safe_load, error = error,
    newproxy = newproxy, redis = redis_table,
  }
  for name, lib in pairs(libraries) do G[name] = lib end
  local env = setmetatable({}, {__index = G, __newindex = ro_error, __metatable = false})
  protected[env] = true
  G._G = env
  setmetatable(G, {__index = missing_global, __metatable = false})
  return G, env
end

-- The string metatable's __index must not hand out the real string table.
getmetatable("").__metatable = readonly({__index = libraries.string})

local eval_globals, eval_env = new_globals(readonly(redis_api))

-- Functions: the library body runs with only the load API (redis.register_function, log,
-- versions); the functions it registers later run with the full API.
local function_globals = new_globals(readonly(redis_api))
local load_redis = add_log_api({register_function = py.register_function})
for _, t in ipairs({cjson, cmsgpack, bit, struct, math_api, string_api, table_api, redis_api, load_redis}) do
  register_builtins(t)
end
setmetatable(load_redis, {__index = missing_global, __metatable = false})
local load_globals = setmetatable({redis = readonly(load_redis)}, {__index = missing_global, __metatable = false})
local function_meta = {__index = function_globals, __newindex = ro_error, __metatable = false}
local function_env = setmetatable({}, function_meta)
protected[function_env] = true
rawset(function_globals, "_G", function_env)

local api = {}

function api.compile_eval(body)
  local f, err = loadstring(body, "@user_script")
  if not f then return nil, err end
  setfenv(f, eval_env)
  return f
end

-- What a run hands back to Python: (true, value), (false, error), or, for the two tables
-- scripts return most ({ok = s} from redis.call('SET', ...), {err = s}), ("s", s) or ("e", s):
-- one crossing instead of three lookups from Python (convert.py's rules, in the same order).
local function outcome(ok, v)
  if ok and type(v) == "table" then
    local field = rawget(v, "err")
    if type(field) == "string" then return "e", field end
    field = rawget(v, "ok")
    if type(field) == "string" then return "s", field end
  end
  return ok, v
end

local function run_eval(f, exact, keys, argv)
  eval_globals.KEYS, eval_globals.ARGV = keys, argv  -- eval_globals has no __newindex
  if exact then sethook(hook, "", STEP) end  -- restart the count: budgets must be exact
  local ok, v = xpcall(f, handler)
  if ok and type(v) == "table" then return outcome(ok, v) end
  return ok, v
end

local function run_function(f, exact, keys, argv)
  if exact then sethook(hook, "", STEP) end
  return outcome(xpcall(function() return (f(keys, argv)) end, handler))
end

function api.run_eval(f, keys, argv, exact) return run_eval(f, exact, keys, argv) end
function api.run_function(f, keys, argv, exact) return run_function(f, exact, keys, argv) end

function api.compile_library(code)
  local f, err = loadstring(code, "@user_function")
  if not f then return nil, err end
  setfenv(f, function_env)
  return f
end

function api.load_library(f)
  function_meta.__index = load_globals
  sethook(hook, "", STEP)
  local ok, err = xpcall(f, handler)
  function_meta.__index = function_globals
  return ok, err
end

-- The same with KEYS and ARGV as one short vararg list, the first nkeys of it the KEYS: cheaper
-- than two tables made in Python (lupa's table_from costs microseconds); sandbox.py uses these up
-- to SHORT_ARGS arguments. Table constructors for the usual counts of keys, a loop for the rest.
local function split(nkeys, ...)
  local keys, argv = {...}, {}
  for i = nkeys + 1, select("#", ...) do
    argv[i - nkeys] = keys[i]
    keys[i] = nil
  end
  return keys, argv
end

function api.run_eval_short(f, exact, nkeys, ...) return run_eval(f, exact, split(nkeys, ...)) end
function api.run_function_short(f, exact, nkeys, ...) return run_function(f, exact, split(nkeys, ...)) end
api.run_eval_keys = {
  [0] = function(f, exact, ...) return run_eval(f, exact, {}, {...}) end,
  function(f, exact, k1, ...) return run_eval(f, exact, {k1}, {...}) end,
  function(f, exact, k1, k2, ...) return run_eval(f, exact, {k1, k2}, {...}) end,
}

-- What libs.py needs of Lua for string.rep and table.concat: Lua's own concat, and the name the
-- script called the running Python function by (level 2: the callback's frame; getinfo "n").
api.native_concat = concat
function api.callee()
  local i = getinfo(2, "n")
  if i then return i.name, i.namewhat end
end

function api.stop_hook() sethook() end
function api.reset_hook() sethook(hook, "", STEP) end
-- A library call was stopped (SCRIPT KILL, the budget): raise again on every line, as the hook does.
function api.raise_on_lines() sethook(hook, "l") end

api.rawget = rawget
api.is_null = function(v) return rawequal(v, cjson.null) end

sethook(hook, "", STEP)  -- always on: every run, even one that never resets it, reaches Python
return api
"""
