// Firefox interop: a Firefox page (Debian's firefox-esr, driven over WebDriver BiDi by puppeteer-core)
// and a Chromium page (playwright-core) in one room publish camera and microphone through the SDK and
// must each decode the other's video and receive its audio.
//
// Firefox gathers no loopback ICE candidates, so this file runs in two network namespaces that it
// creates itself (netns.mjs; needs root and iproute2): the server in one (10.77.0.1), the browsers in
// the other (10.77.0.2, default route via the server's side). Run by `node --test`, the file first
// acts as the *outer* part: it creates the namespaces, re-runs itself inside the client namespace
// (`ip netns exec <cli> node firefox.test.mjs`, the *inner* part, which starts the server in the
// server namespace and drives both browsers), relays its output and deletes the namespaces whatever
// happens. The inner part's failure evidence lands in target/browser-failures/ like the other tests'.
//
// Environment (besides helpers.mjs's): FIREFOX (default /usr/bin/firefox-esr), FANOUT_FIREFOX_LOG=1
// (Firefox's stderr into the inner run's output, a MOZ_LOG of its WebRTC modules into
// target/browser-logs/firefox.moz.log*), FANOUT_TEST_VERBOSE=1 (the inner run's output live on stderr).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import {
  APP, CHROMIUM, CHROMIUM_ARGS, FAILURE_DIR, FANOUT_BIN, HERE, LOG_DIR, WAIT_MS, WEB_DIR, join, sleep, waitInPage,
} from './helpers.mjs';
import { createNamespaces, netnsUnavailable } from './netns.mjs';

export const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';
const THIS_FILE = fileURLToPath(import.meta.url);
/** Set (JSON {srv, cli, srvIp, cliIp}) in the inner part, which runs inside the client namespace. */
const INNER = process.env.FANOUT_FF_NETNS ? JSON.parse(process.env.FANOUT_FF_NETNS) : null;
const ROOM = 7001;
const HTTP_PORT = 18080; // the server's namespace is fresh: any port is free there

if (!INNER) {
  // ----------------------------------------------------------------------------------------------
  // Outer part: namespaces around a run of the inner part.
  test('Firefox <-> Chromium interop, inside two network namespaces', async (t) => {
    const why = netnsUnavailable();
    assert.equal(why, null, `cannot run the Firefox interop test: ${why}`);
    assert.ok(existsSync(FIREFOX), `${FIREFOX} not found: install Debian's firefox-esr (apt-get install -y firefox-esr) or set FIREFOX`);
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} not found: install Debian's chromium or set CHROMIUM`);
    assert.ok(existsSync(FANOUT_BIN), `${FANOUT_BIN} is missing: run \`cargo build -p fanout-server\` (tests/browser/run.sh does)`);
    await mkdir(LOG_DIR, { recursive: true });

    const ns = createNamespaces();
    if (ns.stale.length) t.diagnostic(`removed leftover namespaces of an earlier run: ${ns.stale.join(', ')}`);
    const logPath = path.join(LOG_DIR, 'firefox.inner.log');
    t.diagnostic(`namespaces ${ns.srv} (${ns.srvIp}, server) and ${ns.cli} (${ns.cliIp}, browsers); inner run's output: ${logPath}`);
    const log = createWriteStream(logPath);
    let child;
    try {
      const env = { ...process.env, FANOUT_FF_NETNS: JSON.stringify({ srv: ns.srv, cli: ns.cli, srvIp: ns.srvIp, cliIp: ns.cliIp }) };
      // The inner node is a plain run of this file, not a child of this test runner.
      delete env.NODE_TEST_CONTEXT;
      child = spawn('ip', ['netns', 'exec', ns.cli, process.execPath, '--test-reporter=spec', THIS_FILE], {
        env,
        cwd: HERE,
        detached: true, // its own process group: a timeout stops it with everything it started
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      // Kept in the log (written as it comes, for a run that hangs) and summed up as diagnostics;
      // FANOUT_TEST_VERBOSE=1 relays it live as well.
      const live = process.env.FANOUT_TEST_VERBOSE === '1';
      const relay = (chunk) => {
        log.write(chunk);
        out += chunk.toString();
        if (live) process.stderr.write(chunk);
      };
      child.stdout.on('data', relay);
      child.stderr.on('data', relay);
      const budget = 8 * WAIT_MS + 120000;
      let timedOut = false;
      const exit = await new Promise((resolve) => {
        const timer = setTimeout(() => {
          timedOut = true;
          try {
            process.kill(-child.pid, 'SIGTERM');
          } catch {
            /* gone */
          }
          setTimeout(() => {
            try {
              process.kill(-child.pid, 'SIGKILL');
            } catch {
              /* gone */
            }
          }, 5000).unref();
        }, budget);
        child.on('exit', (code, signal) => {
          clearTimeout(timer);
          resolve({ code, signal });
        });
      });
      for (const line of out.split('\n')) {
        if (/^\s*(#|ℹ) (firefox|chromium|room|server|SRTP|selected)/.test(line)) t.diagnostic(line.replace(/^\s*(#|ℹ) /, ''));
      }
      assert.ok(!timedOut, `the inner run did not end within ${budget} ms (stopped); output: ${logPath}`);
      assert.equal(exit.code, 0, `the inner run (inside ${ns.cli}) failed: exit ${JSON.stringify(exit)}; its output: ${logPath}, evidence: ${FAILURE_DIR}\n${out.slice(-6000)}`);
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      log.end();
      ns.remove(); // also stops anything still running inside either namespace
    }
  });
} else {
  // ----------------------------------------------------------------------------------------------
  // Inner part: runs inside the client namespace.
  let server;
  let chromiumBrowser;
  let firefox;

  before(async () => {
    server = await startServerInNamespace(INNER);
    chromiumBrowser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // The pages come from http://10.77.0.1: make it a secure context (for getUserMedia).
      args: [...CHROMIUM_ARGS, `--unsafely-treat-insecure-origin-as-secure=${server.url}`],
      timeout: 30000,
    });
    firefox = await launchFirefox(server.url);
  });

  after(async () => {
    await chromiumBrowser?.close().catch(() => {});
    if (firefox) {
      const proc = firefox.process();
      await Promise.race([firefox.close().catch(() => {}), sleep(10000)]);
      if (proc && proc.exitCode === null) proc.kill('SIGKILL');
    }
    await server?.stop();
  });

  test("Firefox and Chromium in one room decode each other's video and audio", async (t) => {
    const ev = new Evidence(server, 'firefox-interop');
    try {
      const ch = await ev.open('chromium', 'playwright', async () => {
        const context = await chromiumBrowser.newContext({ viewport: { width: 1000, height: 760 } });
        return { page: await context.newPage(), close: () => context.close() };
      });
      const ff = await ev.open('firefox', 'puppeteer', async () => {
        const context = await firefox.createBrowserContext();
        return { page: await context.newPage(), close: () => context.close() };
      });
      const pages = { 'chromium-user': ch, 'firefox-user': ff };
      for (const [user, page] of Object.entries(pages)) {
        const reply = await join(page, server, { userId: user, roomId: ROOM });
        assert.ok(!reply.error, `${user} enter_room: ${JSON.stringify(reply.error)}`);
      }
      for (const [user, page] of Object.entries(pages)) {
        const r = await page.evaluate(() => window.T.publishCamMic());
        assert.ok(!r.error, `${user} publish: ${JSON.stringify(r.error)}`);
      }
      const ua = {};
      for (const [user, page] of Object.entries(pages)) ua[user] = await page.evaluate(() => navigator.userAgent);
      t.diagnostic(`firefox UA: ${ua['firefox-user']}`);
      t.diagnostic(`chromium UA: ${ua['chromium-user']}`);

      const results = {};
      for (const [user, other] of [['firefox-user', 'chromium-user'], ['chromium-user', 'firefox-user']]) {
        const page = pages[user];
        await waitInPage(page, `${user}: ${other}'s video and audio tracks`, (o) => window.T.hasTrack(o, 'video') && window.T.hasTrack(o, 'audio'), other);
        results[user] = await expectDecoding(page, user, other);
        const v = results[user].video;
        const a = results[user].audio;
        t.diagnostic(
          `${user.split('-')[0]} decodes ${other}: video ${v.codec} framesDecoded ${v.framesDecoded} (${v.frameWidth}x${v.frameHeight} stats, ` +
            `${v.elementWidth}x${v.elementHeight} element), keyframes ${v.keyFramesDecoded}, packets ${v.packetsReceived}; ` +
            `audio ${a.codec} packets ${a.packetsReceived}, samples ${a.totalSamplesReceived}, energy ${a.totalAudioEnergy}, level ${a.audioLevel}`,
        );
      }
      for (const [user, page] of Object.entries(pages)) {
        const pairs = await page.evaluate(selectedPairs);
        t.diagnostic(`${user.split('-')[0]} selected candidate pairs: ${JSON.stringify(pairs)}`);
      }
    } catch (e) {
      t.diagnostic(await ev.save(e).catch((x) => `(could not save failure evidence: ${x.message})`));
      throw e;
    } finally {
      await ev.close();
    }
  });
}

// ------------------------------------------------------------------------------------------------
// The server, inside the server namespace

function configToml(ns) {
  return `# written by tests/browser/firefox.test.mjs
[server]
http = "${ns.srvIp}:${HTTP_PORT}"
reconnect_grace_secs = 5

[media]
bind = "${ns.srvIp}"
udp_port = 0
workers = 1

[[apps]]
sdk_app_id = ${APP.sdkAppId}
secret_key = "${APP.key}"
default_role = "anchor"
dev_mode = true

[apps.roles.anchor]
can_publish = true
max_video_kbps = 1500
max_width = 1280
max_height = 720
max_fps = 30
max_audio_kbps = 64
max_sub_video_kbps = 1500
`;
}

/** `fanout serve` in namespace `ns.srv`, listening and advertising on `ns.srvIp`. */
async function startServerInNamespace(ns) {
  await mkdir(LOG_DIR, { recursive: true });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'browser-e2e-ff-'));
  // A neutral process name (as helpers.mjs does): tooling that stops stray servers by name spares it.
  const exe = path.join(dir, 'sfu-under-test');
  await symlink(FANOUT_BIN, exe);
  const configPath = path.join(dir, 'server.toml');
  await writeFile(configPath, configToml(ns));
  const logPath = path.join(LOG_DIR, 'firefox.server.log');
  const log = createWriteStream(logPath);
  // `ip netns exec` execs the server in place: this child's pid is the server's.
  const child = spawn('ip', ['netns', 'exec', ns.srv, exe, 'serve', '--config', configPath], {
    env: { ...process.env, RUST_LOG: process.env.FANOUT_LOG || 'info', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  const keep = (chunk) => {
    log.write(chunk);
    tail = (tail + chunk.toString()).slice(-30000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  let stopping = false;
  const exitedP = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      if (!stopping) {
        const msg = `\n*** fanout serve exited unexpectedly: code ${code}, signal ${signal} ***\n`;
        keep(Buffer.from(msg));
        process.stderr.write(msg);
      }
      resolve(exited);
    }),
  );
  const url = `http://${ns.srvIp}:${HTTP_PORT}`;
  const stop = async () => {
    stopping = true;
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exitedP;
      clearTimeout(timer);
    }
    log.end();
    await rm(dir, { recursive: true, force: true });
  };
  // Reached from the client namespace over the veth pair: this also checks the link.
  const deadline = Date.now() + 20000;
  let up = false;
  while (Date.now() < deadline && !exited) {
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) {
        up = true;
        break;
      }
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  if (!up) {
    await stop();
    throw new Error(`fanout serve (in ${ns.srv}) not reachable at ${url}/healthz within 20 s: ${exited ? `exited ${JSON.stringify(exited)}` : 'no answer'}\n${tail}`);
  }
  const served = await fetch(`${url}/fanout.js`).then((r) => (r.ok ? r.text() : null), () => null);
  const onDisk = await readFile(path.join(WEB_DIR, 'fanout.js'), 'utf8').catch(() => null);
  if (served !== onDisk) process.stderr.write(`warning: ${FANOUT_BIN} serves a different fanout.js than ${WEB_DIR}: rebuild it\n`);
  return {
    url,
    wsUrl: `ws://${ns.srvIp}:${HTTP_PORT}/v1/signal`,
    logPath,
    tail: () => tail,
    sig: async (userId) => {
      const res = await fetch(`${url}/v1/dev/usersig`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sdk_app_id: APP.sdkAppId, user_id: userId }),
      });
      if (!res.ok) throw new Error(`/v1/dev/usersig: HTTP ${res.status} ${await res.text()}`);
      return (await res.json()).user_sig;
    },
    stop,
  };
}

// ------------------------------------------------------------------------------------------------
// Firefox

async function launchFirefox(origin) {
  const { default: puppeteer } = await import('puppeteer-core');
  const env = { ...process.env };
  const options = {
    browser: 'firefox',
    protocol: 'webDriverBiDi',
    executablePath: FIREFOX,
    headless: true,
    timeout: 30000,
    env,
    extraPrefsFirefox: {
      // Fake camera (a test pattern) and microphone (a tone), no permission prompt.
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      // The pages come from http://10.77.0.1: make it a secure context (for getUserMedia).
      'dom.securecontext.allowlist': new URL(origin).hostname,
      // Remote audio plays without a user gesture.
      'media.autoplay.default': 0,
      'media.autoplay.blocking_policy': 0,
    },
  };
  if (process.env.FANOUT_FIREFOX_LOG === '1') {
    await mkdir(LOG_DIR, { recursive: true });
    options.dumpio = true;
    env.MOZ_LOG = 'timestamp,jsep:5,signaling:5,mtransport:5,webrtc_trace:1,RTCRtpReceiver:5';
    env.MOZ_LOG_FILE = path.join(LOG_DIR, 'firefox.moz.log');
  }
  return puppeteer.launch(options);
}

// ------------------------------------------------------------------------------------------------
// Pages of both drivers, and their failure evidence

const HARNESS_SOURCE = await readFile(path.join(HERE, 'harness.js'), 'utf8');

class Evidence {
  constructor(srv, name) {
    this.server = srv;
    this.name = name;
    /** @type {Array<{label: string, page: any, close: () => Promise<void>, console: string[]}>} */
    this.pages = [];
  }

  /**
   * A page on the server's origin with the harness loaded. `driver` is 'playwright' or 'puppeteer'
   * (their Page APIs agree on what is used here: on, goto, evaluate, addScriptTag, screenshot).
   */
  async open(label, driver, make) {
    const { page, close } = await make();
    const entry = { label, page, close, console: [] };
    this.pages.push(entry);
    page.on('console', (m) => entry.console.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => entry.console.push(`[pageerror] ${e && e.message ? e.message : e}`));
    page.setDefaultTimeout(WAIT_MS);
    await page.goto(`${this.server.url}/`, { waitUntil: 'load', timeout: WAIT_MS });
    await page.addScriptTag({ type: 'module', content: HARNESS_SOURCE });
    await waitInPage(page, `${label} (${driver}): the harness`, () => !!(window.T && window.T.ready), undefined, 10000);
    await page.evaluate((u) => (window.T.wsUrl = u), this.server.wsUrl);
    return page;
  }

  async save(error) {
    await mkdir(FAILURE_DIR, { recursive: true });
    const lines = [`test ${this.name} failed: ${error && error.stack ? error.stack : error}`];
    for (const { label, page, console: out } of this.pages) {
      const base = path.join(FAILURE_DIR, `${this.name}-${label}`);
      try {
        await Promise.race([
          page.screenshot({ path: `${base}.png`, fullPage: true }),
          sleep(10000).then(() => {
            throw new Error('timed out');
          }),
        ]);
      } catch (e) {
        lines.push(`(no screenshot of ${label}: ${e.message})`);
      }
      let state = '';
      try {
        state = JSON.stringify(await page.evaluate(() => window.T && window.T.diagnose()), null, 1);
      } catch (e) {
        state = `(no state: ${e.message})`;
      }
      let stats = '';
      try {
        stats = JSON.stringify(await page.evaluate(allStats), null, 1);
      } catch (e) {
        stats = `(no stats: ${e.message})`;
      }
      await writeFile(`${base}.log`, `${out.join('\n')}\n\n--- harness state ---\n${state}\n\n--- getStats ---\n${stats}\n`);
      lines.push(`page ${label}: screenshot ${base}.png, console + state + stats ${base}.log`);
    }
    const tailPath = path.join(FAILURE_DIR, `${this.name}-server.log`);
    await writeFile(tailPath, this.server.tail());
    lines.push(`server output (tail): ${tailPath} (full log: ${this.server.logPath})`);
    return lines.join('\n');
  }

  async close() {
    for (const { close } of this.pages) await Promise.race([close().catch(() => {}), sleep(5000)]);
    this.pages = [];
  }
}

// ------------------------------------------------------------------------------------------------
// In-page statistics (functions passed to evaluate: they run in the page)

/** Per kind of `userId`'s remote tracks: inbound-rtp, codec and the playing element's size. */
async function decodeStats(userId) {
  const pc = window.T.client && window.T.client.subscriberConnection;
  const out = {};
  if (!pc) return out;
  for (const t of window.T.remoteTracks.filter((x) => x.userId === userId)) {
    const tr = pc.getTransceivers().find((x) => x.mid === t.mid);
    if (!tr) continue;
    const report = await tr.receiver.getStats();
    let s = null;
    report.forEach((x) => {
      if (x.type === 'inbound-rtp') s = x;
    });
    const codec = s && s.codecId && report.get(s.codecId);
    const el = [...document.querySelectorAll('#harness-sink [data-mid]')].find((e) => e.dataset.mid === t.mid);
    out[t.kind] = {
      mid: t.mid,
      codec: codec ? codec.mimeType : null,
      inbound: !!s,
      packetsReceived: s && s.packetsReceived,
      bytesReceived: s && s.bytesReceived,
      packetsLost: s && s.packetsLost,
      framesDecoded: s && s.framesDecoded,
      keyFramesDecoded: s && s.keyFramesDecoded,
      frameWidth: s && s.frameWidth,
      frameHeight: s && s.frameHeight,
      pliCount: s && s.pliCount,
      nackCount: s && s.nackCount,
      totalSamplesReceived: s && s.totalSamplesReceived,
      totalAudioEnergy: s && s.totalAudioEnergy,
      audioLevel: s && s.audioLevel,
      elementWidth: el ? el.videoWidth : null,
      elementHeight: el ? el.videoHeight : null,
      elementTime: el ? el.currentTime : null,
      trackMuted: t.track.muted,
    };
  }
  return out;
}

/** The selected (or succeeded, nominated) candidate pair of each connection, as local -> remote. */
async function selectedPairs() {
  const out = {};
  const c = window.T.client;
  for (const [name, pc] of [['publisher', c && c.publisherConnection], ['subscriber', c && c.subscriberConnection]]) {
    if (!pc) continue;
    const report = await pc.getStats();
    const all = [];
    report.forEach((s) => all.push(s));
    const transport = all.find((s) => s.type === 'transport');
    let pair = transport && all.find((s) => s.id === transport.selectedCandidatePairId);
    if (!pair) pair = all.find((s) => s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded')));
    const cand = (id) => {
      const x = all.find((s) => s.id === id);
      return x ? `${x.address || x.ip}:${x.port}/${x.candidateType}` : null;
    };
    out[name] = {
      state: pc.connectionState,
      pair: pair ? `${cand(pair.localCandidateId)} -> ${cand(pair.remoteCandidateId)}` : null,
      srtpCipher: transport ? transport.srtpCipher : undefined,
    };
  }
  return out;
}

/** Every getStats entry of both connections (failure evidence). */
async function allStats() {
  const c = window.T && window.T.client;
  const out = {};
  for (const [name, pc] of [['publisher', c && c.publisherConnection], ['subscriber', c && c.subscriberConnection]]) {
    if (!pc) continue;
    const all = [];
    (await pc.getStats()).forEach((s) => all.push(s));
    out[name] = all;
  }
  return out;
}

/**
 * Samples `other`'s remote tracks in `page` until, between two samples 1.5 s apart, video
 * framesDecoded and audio packetsReceived grow, the decoded frame has a size, and the audio has
 * samples and energy (where the browser reports them). Returns the last sample.
 */
async function expectDecoding(page, label, other, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let first = null;
  let now = null;
  let problems = ['no sample yet'];
  while (Date.now() < deadline) {
    now = await page.evaluate(decodeStats, other);
    if (first) {
      problems = [];
      const v0 = first.video;
      const v = now.video;
      const a0 = first.audio;
      const a = now.audio;
      if (!v || !v.inbound) problems.push(`${other}/video: ${v ? 'no inbound-rtp stats' : 'no remote track'}`);
      else {
        if (!(v.framesDecoded > (v0?.framesDecoded || 0))) {
          problems.push(`${other}/video: framesDecoded not rising (${v0?.framesDecoded} -> ${v.framesDecoded}; packets ${v0?.packetsReceived} -> ${v.packetsReceived}, keyframes ${v.keyFramesDecoded}, PLIs ${v.pliCount})`);
        }
        const statsSize = v.frameWidth > 0 && v.frameHeight > 0;
        const elementSize = v.elementWidth > 0 && v.elementHeight > 0;
        if (!statsSize && !elementSize) problems.push(`${other}/video: no frame size (stats ${v.frameWidth}x${v.frameHeight}, element ${v.elementWidth}x${v.elementHeight})`);
      }
      if (!a || !a.inbound) problems.push(`${other}/audio: ${a ? 'no inbound-rtp stats' : 'no remote track'}`);
      else {
        if (!(a.packetsReceived > (a0?.packetsReceived || 0))) problems.push(`${other}/audio: packetsReceived not rising (${a0?.packetsReceived} -> ${a.packetsReceived})`);
        if (a.totalSamplesReceived !== undefined && !(a.totalSamplesReceived > 0)) problems.push(`${other}/audio: totalSamplesReceived ${a.totalSamplesReceived}`);
        if (a.totalAudioEnergy !== undefined && !(a.totalAudioEnergy > 0)) problems.push(`${other}/audio: totalAudioEnergy ${a.totalAudioEnergy}`);
        if (a.totalSamplesReceived === undefined && a.totalAudioEnergy === undefined && !(a.bytesReceived > 0)) problems.push(`${other}/audio: nothing decoded (bytes ${a.bytesReceived})`);
      }
      if (!problems.length) return now;
    }
    first = now;
    await sleep(1500);
  }
  throw new Error(`${label}: ${other}'s media not decoded within ${timeout} ms:\n  ${problems.join('\n  ')}\nlast sample: ${JSON.stringify(now)}`);
}
