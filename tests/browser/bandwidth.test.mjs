// Subscriber congestion control end to end with real Chromium: a publisher page (on this host)
// sends simulcast (three layers) and audio; two subscriber pages run in network namespaces of
// their own, each behind a veth pair whose host side is shaped with `tbf` (the kernel here has no
// netem). Subscriber A's link steps 3 Mbit/s -> 600 kbit/s -> 250 kbit/s -> 3 Mbit/s; subscriber
// B's stays at 3 Mbit/s. A must move to the layer that fits at each step and back to the top,
// its audio must keep flowing, and B must keep the top layer throughout.
//
//   bridge bwbr<pid> (host, 10.77.1.1)
//     port bwa<pid> (shaped) <-> bwap<pid> in fanout-bw-a-<pid> (10.77.1.2)
//     port bwb<pid> (shaped) <-> bwbp<pid> in fanout-bw-b-<pid> (10.77.1.3)
//
// The server runs on the host, listening on every address and announcing 10.77.1.1 (a local
// address for the publisher too, and the one address both subscribers reach on their own link,
// so the server's packets to both come from the address they checked); the subscribers'
// Chromium runs through `ip netns exec`. Needs root, iproute2 (`ip`, `tc`). Figures are printed
// as diagnostics (docs/performance.md).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, Session, join, sleep, startServer } from './helpers.mjs';
import { netnsUnavailable, removeNamespace } from './netns.mjs';

const PID = process.pid;
const HOST_IP = '10.77.1.1';
const BRIDGE = `bwbr${PID}`;
const LINKS = {
  a: { ns: `fanout-bw-a-${PID}`, host: `bwa${PID}`, peer: `bwap${PID}`, ip: '10.77.1.2' },
  b: { ns: `fanout-bw-b-${PID}`, host: `bwb${PID}`, peer: `bwbp${PID}`, ip: '10.77.1.3' },
};
const ROOM = 9001;

function run(cmd, args) {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10000 }).toString();
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr ? e.stderr.toString().trim() : e.message}`, { cause: e });
  }
}

/** Deletes namespaces of earlier runs of this file whose process is gone. */
function removeStale() {
  for (const line of run('ip', ['netns', 'list']).split('\n')) {
    const m = /^(fanout-bw-[ab]-(\d+))/.exec(line.trim());
    if (!m) continue;
    let alive = true;
    try {
      process.kill(Number(m[2]), 0);
    } catch (e) {
      alive = e.code === 'EPERM';
    }
    if (!alive || Number(m[2]) === PID) removeNamespace(m[1]);
  }
}

function createLinks() {
  removeStale();
  run('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
  run('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', BRIDGE]);
  run('ip', ['link', 'set', BRIDGE, 'up']);
  for (const l of Object.values(LINKS)) {
    run('ip', ['netns', 'add', l.ns]);
    run('ip', ['link', 'add', l.host, 'type', 'veth', 'peer', 'name', l.peer, 'netns', l.ns]);
    run('ip', ['link', 'set', l.host, 'master', BRIDGE]);
    run('ip', ['link', 'set', l.host, 'up']);
    run('ip', ['-n', l.ns, 'link', 'set', 'lo', 'up']);
    run('ip', ['-n', l.ns, 'addr', 'add', `${l.ip}/24`, 'dev', l.peer]);
    run('ip', ['-n', l.ns, 'link', 'set', l.peer, 'up']);
    run('ip', ['-n', l.ns, 'route', 'add', 'default', 'via', HOST_IP]);
  }
}

function removeLinks() {
  try {
    run('ip', ['link', 'del', BRIDGE]);
  } catch {
    /* not made, or gone */
  }
  for (const l of Object.values(LINKS)) {
    try {
      run('ip', ['link', 'del', l.host]);
    } catch {
      /* gone with its namespace */
    }
    removeNamespace(l.ns);
  }
}

/** Shapes traffic toward a subscriber (its bridge port's egress): a token bucket of `kbit`,
 * 200 ms of queue (a home router's buffer is rarely shallower). */
function shape(link, kbit) {
  const burst = Math.max(4000, Math.round((kbit * 1000) / 8 / 50)); // 20 ms of the rate, >= 4 kB
  run('tc', ['qdisc', 'replace', 'dev', link.host, 'root', 'tbf', 'rate', `${kbit}kbit`, 'burst', String(burst), 'latency', '200ms']);
}

let server;
let tmp;
const browsers = {};

before(async () => {
  const why = netnsUnavailable();
  assert.equal(why, null, `cannot run the bandwidth test: ${why}`);
  createLinks();
  process.once('exit', removeLinks);
  shape(LINKS.a, 3000);
  shape(LINKS.b, 3000);
  server = await startServer('bandwidth', { host: HOST_IP });
  tmp = await mkdtemp(path.join(os.tmpdir(), 'browser-bw-'));
  // The pages come from http://10.77.1.1:<port>, not localhost: a secure context only by flag
  // (getUserMedia needs one).
  const args = [...CHROMIUM_ARGS, `--unsafely-treat-insecure-origin-as-secure=${server.url}`];
  browsers.pub = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 30000 });
  for (const k of ['a', 'b']) {
    // Chromium inside the subscriber's namespace: playwright talks to it over a pipe, which
    // `ip netns exec` keeps.
    const wrapper = path.join(tmp, `chromium-${k}`);
    await writeFile(wrapper, `#!/bin/sh\nexec ip netns exec ${LINKS[k].ns} ${CHROMIUM} "$@"\n`);
    await chmod(wrapper, 0o755);
    browsers[k] = await chromium.launch({ executablePath: wrapper, headless: true, args, timeout: 30000 });
  }
});

after(async () => {
  for (const b of Object.values(browsers)) await b.close().catch(() => {});
  if (server) await server.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
  removeLinks();
});

/** One sample of a subscriber's receive statistics for the publisher's streams. */
async function sample(page) {
  const st = await page.evaluate(() => window.T.receiveStats());
  const v = st.find((x) => x.userId === 'pub' && x.kind === 'video')?.inbound || {};
  const a = st.find((x) => x.userId === 'pub' && x.kind === 'audio')?.inbound || {};
  const paused = await page.evaluate(() => {
    const ev = window.T.events.filter((e) => e.name === 'stream-paused' || e.name === 'stream-resumed');
    const last = ev[ev.length - 1];
    return !!last && last.name === 'stream-paused';
  });
  return {
    at: Date.now(),
    height: v.frameHeight || 0,
    frames: v.framesDecoded || 0,
    freezes: v.freezeCount || 0,
    freezeSecs: v.totalFreezesDuration || 0,
    audioReceived: a.packetsReceived || 0,
    audioLost: a.packetsLost || 0,
    paused,
  };
}

test('a subscriber on a stepped link gets the layer that fits, the other keeps the top', async (t) => {
  const sessions = ['pub', 'a', 'b'].map((k) => new Session(browsers[k], server, `${t.name}-${k}`));
  const [ps, as, bs] = sessions;
  try {
    const pub = await ps.open('pub');
    const subA = await as.open('subA');
    const subB = await bs.open('subB');
    // The publisher's role lets it send 2 Mb/s of video: room for Chromium's three layers
    // (about 150 + 500 + 1300 kb/s) beside its audio.
    for (const [page, userId, roleName] of [[pub, 'pub', 'anchor_hd'], [subA, 'suba'], [subB, 'subb']]) {
      const r = await join(page, server, { userId, roomId: ROOM, roleName });
      assert.ok(!r.error, `${userId} joins: ${JSON.stringify(r.error)}`);
    }
    const r = await pub.evaluate(async () => {
      const video = await window.T.client.startCamera({ width: 1280, height: 720, frameRate: 30 });
      const audio = await window.T.client.startMicrophone();
      return window.T.call('publish', { video, audio }, { simulcast: true });
    });
    assert.ok(!r.error, `publish: ${JSON.stringify(r.error)}`);
    const sending = async () => {
      const out = await pub.evaluate(() => window.T.outboundRtp());
      const pc = await pub.evaluate(async () => {
        const r = await window.T.client.publisherConnection.getStats();
        let bw = null;
        r.forEach((x) => {
          if (x.type === 'candidate-pair' && x.nominated) bw = x.availableOutgoingBitrate;
        });
        return bw;
      });
      return `available ${pc} b/s; ${out.map((o) => `${o.rid || o.kind} ${o.width}x${o.height} target ${o.targetBitrate} (${o.qualityLimitationReason})`).join('; ')}`;
    };
    await sleep(3000);
    t.diagnostic(`publisher after 3 s: ${await sending()}`);
    // Both subscribers reach the top layer on their 3 Mbit/s links.
    const deadline = Date.now() + 40000;
    let start = null;
    while (Date.now() < deadline) {
      start = { a: await sample(subA), b: await sample(subB) };
      if (start.a.height === 720 && start.b.height === 720) break;
      await sleep(500);
    }
    const estimates = async () => (await server.metrics(/fanout_subscriber_bandwidth_estimate_bps_(sum|count)|fanout_congestion_events_total/)).join(' | ');
    assert.ok(
      start && start.a.height === 720 && start.b.height === 720,
      `both subscribers at 720p: ${JSON.stringify(start)}; publisher: ${await sending()}; server: ${await estimates()}`,
    );

    const steps = [
      { kbit: 3000, secs: 10, fits: 720 },
      { kbit: 600, secs: 16, fits: 360 },
      { kbit: 250, secs: 16, fits: 180 },
      { kbit: 3000, secs: 20, fits: 720 },
    ];
    const figures = [];
    let bAtTop = 0;
    let bSamples = 0;
    const stepStarts = [];
    for (const step of steps) {
      shape(LINKS.a, step.kbit);
      const start = Date.now();
      stepStarts.push(start);
      const trace = [];
      const first = { a: await sample(subA), b: await sample(subB) };
      let reached = null;
      let last = first;
      let longestStall = 0;
      let lastFrameAt = Date.now();
      while (Date.now() - start < step.secs * 1000) {
        await sleep(250);
        const now = { a: await sample(subA), b: await sample(subB) };
        const fits = now.a.paused ? step.fits === 180 : now.a.height > 0 && now.a.height <= step.fits;
        const atTarget = step.fits === 720 ? now.a.height === 720 : fits;
        if (reached === null && atTarget) reached = (now.a.at - start) / 1000;
        if (now.a.frames > last.a.frames || now.a.paused) lastFrameAt = now.a.at;
        longestStall = Math.max(longestStall, now.a.at - lastFrameAt);
        if (trace.length === 0 || now.a.at - trace[trace.length - 1].at >= 1000) {
          trace.push({ at: now.a.at, s: Math.round((now.a.at - start) / 1000), h: now.a.height, f: now.a.frames, p: now.a.paused });
        }
        bSamples += 1;
        if (now.b.height === 720) bAtTop += 1;
        last = now;
      }
      const audioReceived = last.a.audioReceived - first.a.audioReceived;
      const audioLost = Math.max(0, last.a.audioLost - first.a.audioLost);
      const fig = {
        kbit: step.kbit,
        reachedSecs: reached,
        height: last.a.height,
        paused: last.a.paused,
        audioPerSec: audioReceived / step.secs,
        audioLoss: audioLost / Math.max(1, audioReceived + audioLost),
        freezes: last.a.freezes - first.a.freezes,
        freezeSecs: +(last.a.freezeSecs - first.a.freezeSecs).toFixed(2),
        longestStallMs: longestStall,
      };
      figures.push(fig);
      t.diagnostic(`A at ${step.kbit} kbit/s: ${JSON.stringify(fig)}`);
      t.diagnostic(`  trace: ${trace.map((x) => `${x.s}s ${x.h}p f${x.f}${x.p ? ' paused' : ''}`).join(', ')}`);
    }
    const metrics = await server.metrics(/fanout_(congestion_events_total|subscriber_bandwidth_estimate_bps_(sum|count)|pacer_delay)/);
    t.diagnostic(`server: ${metrics.join(' | ')}`);
    t.diagnostic(`B at 720p in ${bAtTop} of ${bSamples} samples`);
    const pauses = await subA.evaluate(() =>
      window.T.events.filter((e) => e.name === 'stream-paused' || e.name === 'stream-resumed').map((e) => `${e.name}@${e.at}`));
    t.diagnostic(`A's pause events: ${pauses.join(', ')}; steps began at ${stepStarts.join(', ')}`);

    const [, low600, low250, back] = figures;
    assert.ok(low600.reachedSecs !== null && low600.reachedSecs <= 8, `at 600 kbit/s A moves to <= 360p within 8 s: ${JSON.stringify(low600)}`);
    assert.ok(low250.reachedSecs !== null && low250.reachedSecs <= 8, `at 250 kbit/s A moves to 180p (or is paused) within 8 s: ${JSON.stringify(low250)}`);
    assert.ok(back.reachedSecs !== null && back.reachedSecs <= 16, `back at 3 Mbit/s A returns to 720p: ${JSON.stringify(back)}`);
    for (const f of figures) {
      assert.ok(f.audioPerSec >= 40, `A's audio keeps flowing at ${f.kbit} kbit/s: ${JSON.stringify(f)}`);
      assert.ok(f.audioLoss < 0.05, `A's audio loss at ${f.kbit} kbit/s: ${JSON.stringify(f)}`);
    }
    assert.ok(bAtTop >= 0.95 * bSamples, `B keeps 720p: ${bAtTop} of ${bSamples} samples`);
  } catch (e) {
    for (const s of sessions) {
      const where = await s.saveFailure(e).catch((x) => `(no failure evidence: ${x.message})`);
      t.diagnostic(where);
    }
    throw e;
  } finally {
    for (const s of sessions) await s.close();
  }
});
