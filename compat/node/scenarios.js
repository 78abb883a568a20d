#!/usr/bin/env node
// The compat scenarios through ioredis (run by compat/test_node.py).
//
//   node compat/node/scenarios.js PORT
//
// Runs every scenario over RESP2 and over RESP3 (ioredis 6 speaks RESP3 by
// default). Prints one TAP-style line per check, "ok N - name" or
// "not ok N - name" followed by "# " lines with the error, then "1..N". Exits
// 0 only if every check passed. Every check is bounded in time, and a global
// watchdog ends the process if anything hangs.
"use strict";

const assert = require("node:assert/strict");
const Redis = require("ioredis");

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: node scenarios.js PORT");
  process.exit(2);
}

const CHECK_TIMEOUT_MS = 5000;
const TOTAL_TIMEOUT_MS = 40000;
setTimeout(() => {
  console.log(`not ok - watchdog: scenarios did not finish within ${TOTAL_TIMEOUT_MS} ms`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS).unref();

let count = 0;
let failed = 0;
const clients = [];

function connect(protocol, extra = {}) {
  const client = new Redis({
    host: "127.0.0.1",
    port,
    protocol,
    connectTimeout: CHECK_TIMEOUT_MS,
    commandTimeout: CHECK_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null, // a dropped connection fails the check instead of retrying forever
    ...extra,
  });
  client.on("error", () => {}); // failures surface through the rejected command
  clients.push(client);
  return client;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function check(name, fn) {
  count += 1;
  try {
    await withTimeout(Promise.resolve().then(fn), CHECK_TIMEOUT_MS, name);
    console.log(`ok ${count} - ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`not ok ${count} - ${name}`);
    for (const line of String(err && err.stack ? err.stack : err).split("\n")) console.log(`# ${line}`);
  }
}

async function waitFor(predicate, what, ms = 3000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

async function stringsOn(r, k) {
  assert.equal(await r.set(k, "v1"), "OK");
  assert.equal(await r.get(k), "v1");
  assert.equal(await r.set(k, "v2", "NX"), null);
  assert.equal(await r.set(k, "v2", "XX"), "OK");
  assert.equal(await r.set(`${k}-none`, "v", "XX"), null);
  assert.equal(await r.set(k, "v3", "GET"), "v2");
  assert.equal(await r.set(k, "v4", "EX", 100), "OK");
  const ttl = await r.ttl(k);
  assert.ok(ttl > 90 && ttl <= 100, `TTL ${ttl}`); // whole seconds, rounded; slack for a loaded machine
  assert.equal(await r.set(k, "v5", "PX", 200000), "OK");
  const pttl = await r.pttl(k);
  assert.ok(pttl > 190000 && pttl <= 200000, `PTTL ${pttl}`);
  assert.equal(await r.persist(k), 1);
  assert.equal(await r.ttl(k), -1);
  assert.equal(await r.expire(k, 50), 1);
  const ttl50 = await r.ttl(k);
  assert.ok(ttl50 > 40 && ttl50 <= 50, `TTL ${ttl50}`);
  assert.equal(await r.incr(`${k}-n`), 1);
  assert.equal(await r.incrby(`${k}-n`, 41), 42);
  assert.equal(await r.decr(`${k}-n`), 41);
  assert.equal(await r.mset(`${k}-a`, "1", `${k}-b`, "2"), "OK");
  assert.deepEqual(await r.mget(`${k}-a`, `${k}-b`, `${k}-none`), ["1", "2", null]);
  assert.equal(await r.append(`${k}-a`, "xyz"), 4);
  assert.equal(await r.strlen(`${k}-a`), 4);
  assert.equal(await r.exists(k, `${k}-a`, `${k}-none`), 2);
  assert.equal(await r.type(k), "string");
  assert.equal(await r.del(k, `${k}-a`, `${k}-b`, `${k}-n`), 4);
  assert.equal(await r.get(k), null);
  assert.equal(await r.type(k), "none");
}

// Each family on one key prefix; ioredis turns RESP3 maps into objects (replyMapping "resp3") and RESP2
// flat arrays stay arrays, so map-shaped replies are compared after toObject().
function toObject(reply) {
  if (!Array.isArray(reply)) return reply;
  const out = {};
  for (let i = 0; i < reply.length; i += 2) out[reply[i]] = reply[i + 1];
  return out;
}

async function hashesOn(r, k) {
  assert.equal(await r.hset(`${k}:h`, "model", "H200", "memory", "141"), 2);
  assert.deepEqual(toObject(await r.hgetall(`${k}:h`)), { model: "H200", memory: "141" });
  assert.equal(await r.hincrby(`${k}:h`, "memory", 3), 144);
  assert.equal(await r.hincrbyfloat(`${k}:h`, "util", "0.5"), "0.5");
  assert.deepEqual(await r.hmget(`${k}:h`, "model", "none"), ["H200", null]);
  assert.equal(await r.hdel(`${k}:h`, "model", "memory", "util"), 3);
  assert.equal(await r.exists(`${k}:h`), 0);
  assert.equal(await r.set(`${k}:str`, "x"), "OK");
  await assert.rejects(r.hget(`${k}:str`, "f"), /WRONGTYPE/);
}

async function listsOn(r, k, protocol) {
  assert.equal(await r.rpush(`${k}:l`, "a", "b", "c"), 3);
  assert.deepEqual(await r.lrange(`${k}:l`, 0, -1), ["a", "b", "c"]);
  assert.equal(await r.lmove(`${k}:l`, `${k}:l2`, "LEFT", "RIGHT"), "a");
  assert.deepEqual(await r.lmpop(1, `${k}:l`, "RIGHT", "COUNT", 5), [`${k}:l`, ["c", "b"]]);
  const waiter = connect(protocol);
  const popped = waiter.blpop(`${k}:queue`, 5);
  await waitFor(async () => Number(/blocked_clients:(\d+)/.exec(await r.info("clients"))[1]) === 1, "a blocked client");
  assert.equal(await r.rpush(`${k}:queue`, "job"), 1);
  assert.deepEqual(await popped, [`${k}:queue`, "job"]);
  assert.equal(await r.blpop(`${k}:queue`, 0.05), null);
}

async function setsOn(r, k) {
  assert.equal(await r.sadd(`${k}:s`, "n1", "n2", "n3"), 3);
  assert.deepEqual((await r.smembers(`${k}:s`)).sort(), ["n1", "n2", "n3"]);
  assert.equal(await r.sismember(`${k}:s`, "n2"), 1);
  assert.equal(await r.sinterstore(`${k}:i`, `${k}:s`, `${k}:none`), 0);
  const popped = await r.spop(`${k}:s`);
  assert.ok(["n1", "n2", "n3"].includes(popped));
  assert.equal(await r.scard(`${k}:s`), 2);
}

async function zsetsOn(r, k) {
  assert.equal(await r.zadd(`${k}:z`, 1.5, "a", 0.25, "b", 3, "c"), 3);
  assert.deepEqual(await r.zrange(`${k}:z`, 0, -1), ["b", "a", "c"]);
  const withScores = (await r.zrange(`${k}:z`, 0, 0, "WITHSCORES")).flat().map(String);
  assert.deepEqual(withScores, ["b", "0.25"]);
  assert.equal(String(await r.zscore(`${k}:z`, "a")), "1.5");
  // ioredis 6's RESP3 double parser reads ",0.75" as 0.7500000000000001 (from redis-server too)
  assert.ok(Math.abs(Number(await r.zincrby(`${k}:z`, "0.5", "b")) - 0.75) < 1e-12);
  assert.deepEqual(await r.zrangebyscore(`${k}:z`, "(1", "+inf"), ["a", "c"]);
  assert.equal(await r.zremrangebyrank(`${k}:z`, 0, 0), 1);
  assert.equal(await r.zcard(`${k}:z`), 2);
}

async function bitsAndKeysOn(r, k) {
  assert.equal(await r.setbit(`${k}:b`, 9, 1), 0);
  assert.equal(await r.bitcount(`${k}:b`), 1);
  assert.deepEqual(await r.bitfield(`${k}:b`, "INCRBY", "u8", 0, 300), [44]);
  assert.equal(await r.rename(`${k}:b`, `${k}:b2`), "OK");
  assert.equal(await r.copy(`${k}:b2`, `${k}:b3`), 1);
  const payload = await r.dumpBuffer(`${k}:b3`);
  assert.equal(await r.restore(`${k}:b4`, 0, payload), "OK");
  assert.equal(await r.get(`${k}:b4`), await r.get(`${k}:b3`));
  await assert.rejects(r.restore(`${k}:b5`, 0, "not a payload"), /DUMP payload version or checksum are wrong/);
  assert.equal(await r.type(`${k}:b4`), "string");
  assert.equal(await r.object("ENCODING", `${k}:b4`), "embstr");
}

async function scenarios(protocol) {
  const p = `p${protocol}`;
  const r = connect(protocol, protocol === 3 ? { replyMapping: "resp3" } : {});
  const planes = { local: `node:${p}:str`, active: `/run/node/${p}/str`, desired: `/ctx/node/${p}/str` };

  for (const [plane, key] of Object.entries(planes)) {
    await check(`${p} strings on the ${plane} plane (${key})`, () => stringsOn(r, key));
  }

  for (const [plane, key] of Object.entries(planes)) {
    await check(`${p} hashes on the ${plane} plane`, () => hashesOn(r, `${key}-fam`));
    await check(`${p} lists and a blocking pop on the ${plane} plane`, () => listsOn(r, `${key}-fam`, protocol));
    await check(`${p} sets on the ${plane} plane`, () => setsOn(r, `${key}-fam`));
    await check(`${p} sorted sets on the ${plane} plane`, () => zsetsOn(r, `${key}-fam`));
    await check(`${p} bits and keyspace commands on the ${plane} plane`, () => bitsAndKeysOn(r, `${key}-fam`));
  }

  await check(`${p} pipeline`, async () => {
    const k = `/run/node/${p}/pipe`;
    const replies = await r.pipeline().set(k, "1").incr(k).get(k).set(`node:${p}:pipe`, "x").get(`node:${p}:pipe`).exec();
    assert.deepEqual(replies, [[null, "OK"], [null, 2], [null, "2"], [null, "OK"], [null, "x"]]);
  });

  for (const key of [planes.desired, planes.local]) {
    await check(`${p} multi/exec on ${key}`, async () => {
      const replies = await r.multi().set(key, "1").incr(key).get(key).exec();
      assert.deepEqual(replies, [[null, "OK"], [null, 2], [null, "2"]]);
    });
  }

  await check(`${p} watch + concurrent change aborts exec`, async () => {
    const k = `/ctx/node/${p}/watched`;
    const other = connect(protocol);
    const w = connect(protocol);
    await w.set(k, "0");
    await w.watch(k);
    await other.set(k, "changed");
    assert.equal(await w.multi().set(k, "mine").exec(), null);
    assert.equal(await r.get(k), "changed");
  });

  await check(`${p} cross-plane multi is refused`, async () => {
    const err = await r.multi().set(`/ctx/node/${p}/t`, "1").set(`/run/node/${p}/t`, "1").exec().then(
      () => assert.fail("exec resolved"),
      (e) => e,
    );
    assert.match(err.message, /EXECABORT/);
    assert.ok(err.previousErrors.some((e) => /transaction spans planes/.test(e.message)), String(err.previousErrors));
    assert.equal(await r.exists(`/ctx/node/${p}/t`, `/run/node/${p}/t`), 0);
  });

  await check(`${p} psubscribe keyspace events`, async () => {
    const sub = connect(protocol);
    const events = [];
    sub.on("pmessage", (pattern, channel, message) => events.push([pattern, channel, message]));
    await sub.psubscribe(`__keyspace@0__:/ctx/node/${p}/*`); // resolves once the server confirmed
    const k = `/ctx/node/${p}/ev`;
    await r.set(k, "1");
    await r.del(k);
    await waitFor(() => events.length >= 2, "two keyspace events");
    const channel = `__keyspace@0__:${k}`;
    const pattern = `__keyspace@0__:/ctx/node/${p}/*`;
    assert.deepEqual(events.slice(0, 2), [[pattern, channel, "set"], [pattern, channel, "del"]]);
    await sub.punsubscribe();
  });

  await check(`${p} __vfs__ channel payload`, async () => {
    const sub = connect(protocol);
    const got = [];
    sub.on("message", (channel, message) => got.push([channel, message]));
    const k = `/ctx/node/${p}/watched-doc`;
    await sub.subscribe(`__vfs__:${k}`);
    await r.set(k, "v1");
    await waitFor(() => got.length >= 1, "a __vfs__ message");
    const body = JSON.parse(got[0][1]);
    assert.equal(got[0][0], `__vfs__:${k}`);
    assert.equal(body.op, "set");
    assert.equal(body.path, k);
    assert.equal(body.value, "v1");
    assert.equal(typeof body.rev, "number");
  });

  await check(`${p} scanStream MATCH returns every path once`, async () => {
    const paths = [];
    for (let n = 0; n < 100; n++) for (let c = 0; c < 3; c++) paths.push(`/hw/node-${p}-${String(n).padStart(3, "0")}/cpu/${c}`);
    const args = [];
    for (const path of paths) args.push(path, "x");
    assert.equal(await r.mset(...args), "OK");
    await r.set(`/run/hw/node-${p}`, "x"); // not under /hw
    const seen = [];
    await new Promise((resolve, reject) => {
      const stream = r.scanStream({ match: `/hw/node-${p}-*`, count: 37 });
      stream.on("data", (keys) => seen.push(...keys));
      stream.on("end", resolve);
      stream.on("error", reject);
    });
    assert.equal(seen.length, new Set(seen).size, "a path came back twice");
    assert.deepEqual([...seen].sort(), [...paths].sort());
    assert.deepEqual((await r.keys(`/hw/node-${p}-00?/cpu/0`)).sort(), paths.filter((x) => /-00\d\/cpu\/0$/.test(x)).sort());
  });

  await check(`${p} JSON via call()`, async () => {
    const k = `/ctx/node/${p}/doc`;
    const doc = { a: { b: [1, 2] }, name: "web" };
    assert.equal(await r.call("JSON.SET", k, "$", JSON.stringify(doc)), "OK");
    assert.deepEqual(JSON.parse(await r.call("JSON.GET", k)), doc);
    assert.equal(await r.call("JSON.GET", k, "$.a.b"), "[[1,2]]");
    assert.equal(await r.get(k), JSON.stringify(doc));
    assert.equal(await r.type(k), "ReJSON-RL");
    assert.equal(await r.call("JSON.DEL", k, "$.name"), 1);
    assert.equal(await r.get(k), '{"a":{"b":[1,2]}}');
    await assert.rejects(r.incr(k), /^ReplyError: WRONGTYPE Operation against a key holding the wrong kind of value/);
  });

  await check(`${p} error replies`, async () => {
    await assert.rejects(r.call("GET"), { message: "ERR wrong number of arguments for 'get' command" });
    await assert.rejects(r.call("NOSUCHCMD", "a"), { message: "ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' " });
    await assert.rejects(r.set("/ctx//x", "1"), { message: "ERR invalid path '/ctx//x': empty segment" });
    await assert.rejects(r.set("/nope/x", "1"), /^ReplyError: ERR no plane for root '\/nope'/);
    await assert.rejects(r.mset("/ctx/a", "1", "/run/a", "1"), /spans planes/);
    assert.equal(await r.ping(), "PONG"); // the connection is still usable
  });

  // The common Node lock recipe: SET NX PX to acquire, a Lua compare-and-delete to release,
  // through ioredis's defineCommand (EVALSHA first, EVAL when the script is not cached).
  r.defineCommand("releaseLock", {
    numberOfKeys: 1,
    lua: 'if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end',
  });
  r.defineCommand("extendLock", {
    numberOfKeys: 1,
    lua: 'if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end',
  });
  const locks = { local: `lock:${p}`, active: `/run/locks/${p}`, lease: `/lk/node/${p}` };
  for (const [plane, key] of Object.entries(locks)) {
    await check(`${p} lock recipe with a Lua release script on the ${plane} plane (${key})`, async () => {
      assert.equal(await r.set(key, "token-a", "NX", "PX", 10000), "OK");
      assert.equal(await r.set(key, "token-b", "NX", "PX", 10000), null); // held
      assert.equal(await r.extendLock(key, "token-b", 20000), 0); // not the owner
      assert.equal(await r.extendLock(key, "token-a", 20000), 1);
      const pttl = await r.pttl(key);
      assert.ok(pttl > 10000 && pttl <= 20000, `PTTL ${pttl}`);
      assert.equal(await r.releaseLock(key, "token-b"), 0);
      assert.equal(await r.get(key), "token-a");
      assert.equal(await r.releaseLock(key, "token-a"), 1);
      assert.equal(await r.get(key), null);
      await r.script("FLUSH"); // ioredis falls back to EVAL on NOSCRIPT
      assert.equal(await r.set(key, "token-c", "NX", "PX", 10000), "OK");
      assert.equal(await r.releaseLock(key, "token-c"), 1);
    });
  }
  await check(`${p} LOCK.ACQUIRE / LOCK.RELEASE with fencing tokens`, async () => {
    const key = `/lk/node/${p}-fenced`;
    const first = await r.call("LOCK.ACQUIRE", key, "a", 5000);
    assert.ok(Number.isInteger(first) && first > 0, `token ${first}`);
    assert.equal(await r.call("LOCK.ACQUIRE", key, "b", 5000), null);
    assert.equal(await r.call("LOCK.RELEASE", key, "a"), 1);
    const second = await r.call("LOCK.ACQUIRE", key, "b", 5000);
    assert.ok(second > first, `tokens ${first} then ${second}`);
    assert.equal(await r.call("LOCK.RELEASE", key, "b"), 1);
  });

  await check(`${p} VFS.LS and VFS.STAT`, async () => {
    const dir = `/ctx/node/${p}/vfs`;
    assert.equal(await r.mset(`${dir}/a`, "1", `${dir}/sub/b`, "2"), "OK");
    assert.deepEqual(await r.call("VFS.LS", dir), ["a", "sub/"]);
    const reply = await r.call("VFS.STAT", `${dir}/a`);
    const stat = Array.isArray(reply) ? Object.fromEntries(reply.flatMap((v, i) => (i % 2 ? [] : [[v, reply[i + 1]]]))) : reply;
    assert.equal(Array.isArray(reply), protocol === 2, "RESP3 with replyMapping resp3 gives an object");
    assert.equal(stat.plane, "consensus");
    assert.equal(stat.type, "string");
    assert.equal(stat.size, 1);
    assert.equal(stat.ttl_ms, -1);
  });
}

async function main() {
  try {
    await scenarios(2);
    await scenarios(3);
  } finally {
    await Promise.allSettled(clients.map((c) => c.quit().catch(() => c.disconnect())));
  }
  console.log(`1..${count}`);
  if (failed) console.log(`# ${failed} of ${count} checks failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.log(`not ok - ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
