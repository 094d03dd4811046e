// Subscriber congestion control end to end with real Chromium: a publisher page (on this host)
// sends simulcast (three layers) and audio; two subscriber pages run in network namespaces of
// their own, each behind a veth pair whose host side is shaped with `tbf` (shaped.mjs).
// Subscriber A's link steps 3 Mbit/s -> 600 kbit/s -> 250 kbit/s -> 3 Mbit/s; subscriber
// B's stays at 3 Mbit/s. A must move to the layer that fits at each step and back to the top,
// its audio must keep flowing, and B must keep the top layer throughout.
//
// The server runs on the host, listening on every address and announcing 10.77.1.1 (a local
// address for the publisher too, and the one address both subscribers reach on their own link,
// so the server's packets to both come from the address they checked); the subscribers'
// Chromium runs through `ip netns exec`. Needs root, iproute2 (`ip`, `tc`). Figures are printed
// as diagnostics (docs/performance.md).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, Session, join, sleep, startServer } from './helpers.mjs';
import { netnsUnavailable } from './netns.mjs';
import { HOST_IP, LINKS, STEPS, createLinks, launchInNamespace, removeLinks, shape, stepLink, stepsFromEnv } from './shaped.mjs';

const ROOM = 9001;

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
  for (const k of ['a', 'b']) browsers[k] = await launchInNamespace(k, tmp, args);
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

    // BANDWIDTH_STEPS replaces the scenario (a benchmark run: figures only, no assertions).
    const custom = stepsFromEnv();
    const { figures, bAtTop, bSamples, stepStarts } = await stepLink(custom || STEPS, () => sample(subA), () => sample(subB), (m) => t.diagnostic(m));
    const metrics = await server.metrics(/fanout_(congestion_events_total|subscriber_bandwidth_estimate_bps_(sum|count)|pacer_delay)/);
    t.diagnostic(`server: ${metrics.join(' | ')}`);
    t.diagnostic(`B at 720p in ${bAtTop} of ${bSamples} samples`);
    const pauses = await subA.evaluate(() =>
      window.T.events.filter((e) => e.name === 'stream-paused' || e.name === 'stream-resumed').map((e) => `${e.name}@${e.at}`));
    t.diagnostic(`A's pause events: ${pauses.join(', ')}; steps began at ${stepStarts.join(', ')}`);

    if (custom) return;
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
