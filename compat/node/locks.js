#!/usr/bin/env node
// Lock recipes through node-redis (the `redis` package), against a vfsd lease path.
//
//   node compat/node/locks.js PORT
//
// The common single-instance recipe (SET NX PX to acquire, a Lua compare-and-delete to release,
// a Lua compare-and-pexpire to extend), then LOCK.ACQUIRE's fencing tokens, over RESP2 and RESP3.
// Prints "ok N - name" / "not ok N - name" lines and "1..N"; exits 0 only if every check passed.
"use strict";

const assert = require("node:assert/strict");
const { createClient } = require("redis");

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: node locks.js PORT");
  process.exit(2);
}
setTimeout(() => {
  console.log("not ok - watchdog: the lock checks did not finish within 30000 ms");
  process.exit(1);
}, 30000).unref();

const RELEASE = 'if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end';
const EXTEND = 'if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end';

let count = 0;
let failed = 0;

async function check(name, fn) {
  count += 1;
  try {
    await fn();
    console.log(`ok ${count} - ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`not ok ${count} - ${name}`);
    for (const line of String(err && err.stack ? err.stack : err).split("\n")) console.log(`# ${line}`);
  }
}

async function recipes(resp) {
  const r = createClient({ socket: { host: "127.0.0.1", port, connectTimeout: 5000 }, RESP: resp });
  await r.connect();
  const key = `/lk/node-redis/${resp}`;
  await check(`RESP${resp} SET NX PX acquires, a Lua script releases only for the holder`, async () => {
    assert.equal(await r.set(key, "tok-a", { NX: true, PX: 10000 }), "OK");
    assert.equal(await r.set(key, "tok-b", { NX: true, PX: 10000 }), null);
    assert.equal(await r.eval(EXTEND, { keys: [key], arguments: ["tok-b", "20000"] }), 0);
    assert.equal(await r.eval(EXTEND, { keys: [key], arguments: ["tok-a", "20000"] }), 1);
    const pttl = await r.pTTL(key);
    assert.ok(pttl > 10000 && pttl <= 20000, `PTTL ${pttl}`);
    assert.equal(await r.eval(RELEASE, { keys: [key], arguments: ["tok-b"] }), 0);
    assert.equal(await r.eval(RELEASE, { keys: [key], arguments: ["tok-a"] }), 1);
    assert.equal(await r.get(key), null);
  });
  await check(`RESP${resp} LOCK.ACQUIRE gives increasing fencing tokens`, async () => {
    const first = await r.sendCommand(["LOCK.ACQUIRE", `${key}-f`, "a", "5000"]);
    assert.equal(await r.sendCommand(["LOCK.ACQUIRE", `${key}-f`, "b", "5000"]), null);
    assert.equal(await r.sendCommand(["LOCK.RELEASE", `${key}-f`, "a"]), 1);
    const second = await r.sendCommand(["LOCK.ACQUIRE", `${key}-f`, "b", "5000"]);
    assert.ok(Number(second) > Number(first), `tokens ${first} then ${second}`);
  });
  await r.quit();
}

(async () => {
  await recipes(2);
  await recipes(3);
  console.log(`1..${count}`);
  process.exit(failed ? 1 : 0);
})().catch((err) => {
  console.log(`not ok - ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
