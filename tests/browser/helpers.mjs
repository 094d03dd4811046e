// Shared machinery of the browser end-to-end tests: start a Fanout server on loopback with a
// temporary config, launch Debian's headless Chromium, open pages that drive the SDK, wait for
// conditions with bounded timeouts, and leave screenshots and logs behind when a test fails.

import { spawn, execFile } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createWriteStream, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const FANOUT_BIN = process.env.FANOUT_BIN || path.join(ROOT, 'target', 'debug', 'fanout');
export const WEB_DIR = path.join(ROOT, 'crates', 'fanout-server', 'web');
export const FAILURE_DIR = path.join(ROOT, 'target', 'browser-failures');
export const LOG_DIR = path.join(ROOT, 'target', 'browser-logs');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Two applications; the second one has no dev_mode (its UserSigs come from the CLI). */
export const APP = { sdkAppId: 1400000001, key: 'browser-tests-secret-key-0123456789abcdef0123456789abcdef' };
export const APP2 = { sdkAppId: 1400000002, key: 'browser-tests-other-app-key-fedcba9876543210fedcba98765432' };

/** Default bound of every wait, in ms. */
export const WAIT_MS = Number(process.env.FANOUT_TEST_WAIT_MS || 25000);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const execFileP = promisify(execFile);

// ------------------------------------------------------------------------------------------------
// The server

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function configToml(port, host) {
  const roles = `
[apps.roles.anchor]
can_publish = true
max_video_kbps = 1500
max_width = 1280
max_height = 720
max_fps = 30
max_audio_kbps = 64
max_sub_video_kbps = 1500

[apps.roles.anchor_hd]
can_publish = true
max_video_kbps = 2000
max_width = 1280
max_height = 720
max_fps = 30
max_audio_kbps = 64
max_sub_video_kbps = 1500

[apps.roles.anchor_sd]
can_publish = true
max_video_kbps = 600
max_width = 640
max_height = 360
max_fps = 15
max_audio_kbps = 64
max_sub_video_kbps = 600

[apps.roles.audience]
can_publish = false
`;
  return `# written by tests/browser/helpers.mjs
[server]
http = "${host ? '0.0.0.0' : '127.0.0.1'}:${port}"
reconnect_grace_secs = 5

[media]
bind = "${host ? '0.0.0.0' : '127.0.0.1'}"
${host ? `public_ip = "${host}"` : ''}
udp_port = 0
workers = 1

[[apps]]
sdk_app_id = ${APP.sdkAppId}
secret_key = "${APP.key}"
default_role = "anchor"
dev_mode = true
${roles}
[[apps]]
sdk_app_id = ${APP2.sdkAppId}
secret_key = "${APP2.key}"
default_role = "anchor"
${roles}`;
}

/**
 * A running `fanout serve` with a temporary config on a free loopback port.
 * @param {string} name used for the log file under target/browser-logs/
 * @param {{host?: string}} [net] `host`: listen on every address and announce (and be reached at)
 *   this one, for pages in network namespaces of their own (bandwidth.test.mjs)
 */
export async function startServer(name, net = {}) {
  if (!existsSync(FANOUT_BIN)) {
    throw new Error(`${FANOUT_BIN} is missing: run \`cargo build -p fanout-server\` (tests/browser/run.sh does)`);
  }
  await mkdir(LOG_DIR, { recursive: true });
  // The server runs through a symlink under a neutral name: other tooling on a shared machine that
  // stops stray servers by name (pkill fanout) then leaves this test's server alone.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'browser-e2e-'));
  const exe = path.join(dir, 'sfu-under-test');
  await symlink(FANOUT_BIN, exe);
  const logPath = path.join(LOG_DIR, `${name}.server.log`);
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const configPath = path.join(dir, 'server.toml');
    await writeFile(configPath, configToml(port, net.host));
    const log = createWriteStream(logPath, { flags: attempt ? 'a' : 'w' });
    const child = spawn(exe, ['serve', '--config', configPath], {
      env: { ...process.env, RUST_LOG: process.env.FANOUT_LOG || 'info', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let tail = '';
    const keep = (chunk) => {
      log.write(chunk);
      tail = (tail + chunk.toString()).slice(-20000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let exited = null;
    let stopping = false;
    const exitedP = new Promise((r) =>
      child.on('exit', (code, signal) => {
        exited = { code, signal };
        if (!stopping) {
          const msg = `\n*** fanout serve exited unexpectedly: code ${code}, signal ${signal} ***\n`;
          keep(Buffer.from(msg));
          process.stderr.write(msg);
        }
        r(exited);
      }),
    );
    const base = `http://${net.host || '127.0.0.1'}:${port}`;
    const deadline = Date.now() + 20000;
    let up = false;
    while (Date.now() < deadline && !exited) {
      try {
        const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
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
      stopping = true;
      child.kill('SIGKILL');
      await exitedP;
      log.end();
      lastError = new Error(`fanout serve did not come up on port ${port}: ${exited ? `exited ${JSON.stringify(exited)}` : 'no /healthz within 20 s'}\n${tail}`);
      if (/address|in use/i.test(tail)) continue;
      break;
    }
    // The binary embeds web/ at build time: say so when it serves something else than the files here.
    for (const file of ['fanout.js', 'app.js', 'index.html', 'style.css']) {
      const served = await fetch(`${base}/${file === 'index.html' ? '' : file}`).then((r) => (r.ok ? r.text() : null), () => null);
      const onDisk = await readFile(path.join(WEB_DIR, file), 'utf8').catch(() => null);
      if (served !== onDisk) {
        process.stderr.write(`warning: ${FANOUT_BIN} serves a different ${file} than ${WEB_DIR}/${file}: rebuild it (cargo build -p fanout-server)\n`);
      }
    }
    return {
      port,
      url: base,
      wsUrl: `ws://${net.host || '127.0.0.1'}:${port}/v1/signal`,
      logPath,
      configPath,
      /** The last 20 kB of the server's output. */
      tail: () => tail,
      /** Lines of the server's Prometheus /metrics matching `re` (empty when there is no /metrics). */
      metrics: async (re = /./) => {
        const text = await fetch(`${base}/metrics`).then((r) => (r.ok ? r.text() : ''), () => '');
        return text.split('\n').filter((l) => l && !l.startsWith('#') && re.test(l));
      },
      /** A UserSig: from /v1/dev/usersig (dev_mode app), else from the CLI. */
      sig: (userId, app = APP) => userSig(base, userId, app),
      async stop() {
        stopping = true;
        if (!exited) {
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 3000);
          await exitedP;
          clearTimeout(t);
        }
        log.end();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  throw lastError;
}

let devEndpointMissing = false;

async function userSig(base, userId, app) {
  if (app === APP && !devEndpointMissing) {
    const res = await fetch(`${base}/v1/dev/usersig`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sdk_app_id: app.sdkAppId, user_id: userId }),
    });
    if (res.ok) return (await res.json()).user_sig;
    if (res.status !== 404 && res.status !== 405) throw new Error(`/v1/dev/usersig: HTTP ${res.status} ${await res.text()}`);
    devEndpointMissing = true;
  }
  return cliSig(userId, app);
}

/** A UserSig minted by `fanout sig gen`. */
export async function cliSig(userId, app = APP) {
  const { stdout } = await execFileP(FANOUT_BIN, ['sig', 'gen', '--app', String(app.sdkAppId), '--key', app.key, '--user', userId]);
  return stdout.trim();
}

// ------------------------------------------------------------------------------------------------
// The browser

export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  // getDisplayMedia without a picker (the fake capture device stands in for the screen).
  '--auto-select-desktop-capture-source=Entire screen',
  '--auto-accept-this-tab-capture',
];

/**
 * Launches Chromium (a fresh profile each time). With FANOUT_CHROMIUM_LOG=1 its own log (WebRTC
 * warnings included, e.g. "Failed to unprotect SRTP packet") goes to target/browser-logs/<name>.chromium.log.
 * @param {string} [name]
 */
export async function launchBrowser(name = 'browser') {
  const options = { executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS], timeout: 30000 };
  if (process.env.FANOUT_CHROMIUM_LOG === '1') {
    await mkdir(LOG_DIR, { recursive: true });
    options.args.push('--enable-logging=stderr', '--v=0', '--vmodule=*/webrtc/*=1');
  }
  return chromium.launch(options);
}

/**
 * A set of pages of one test; on failure it saves a screenshot of each page, the pages' console
 * output and the server's log tail.
 */
export class Session {
  /**
   * @param {import('playwright-core').Browser} browser
   * @param {Awaited<ReturnType<typeof startServer>>} server
   * @param {string} name the test's name (file names)
   */
  constructor(browser, server, name) {
    this.browser = browser;
    this.server = server;
    this.name = name.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 60);
    /** @type {Array<{label: string, page: import('playwright-core').Page, context: any, console: string[]}>} */
    this.pages = [];
  }

  /**
   * A new page (own browser context) on the server's origin, with the test harness loaded.
   * @param {string} label
   * @param {string} [pathAndQuery] default `/` (the demo page, idle until its form is used)
   */
  async open(label, pathAndQuery = '/') {
    const context = await this.browser.newContext({ viewport: { width: 1000, height: 760 } });
    const page = await context.newPage();
    const entry = { label, page, context, console: [] };
    this.pages.push(entry);
    page.on('console', (m) => entry.console.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => entry.console.push(`[pageerror] ${e.message}`));
    page.setDefaultTimeout(WAIT_MS);
    await page.goto(`${this.server.url}${pathAndQuery}`, { waitUntil: 'load' });
    await installHarness(page, this.server.wsUrl);
    return page;
  }

  /** Saves screenshots and logs of every page (call when the test failed). */
  async saveFailure(error) {
    await mkdir(FAILURE_DIR, { recursive: true });
    const lines = [`test ${this.name} failed: ${error && error.stack ? error.stack : error}`];
    for (const { label, page, console: out } of this.pages) {
      const base = path.join(FAILURE_DIR, `${this.name}-${label}`);
      try {
        await page.screenshot({ path: `${base}.png`, fullPage: true, timeout: 5000 });
      } catch (e) {
        lines.push(`(no screenshot of ${label}: ${e.message})`);
      }
      let state = '';
      try {
        state = JSON.stringify(await page.evaluate(() => window.T && window.T.diagnose()), null, 1);
      } catch (e) {
        state = `(no state: ${e.message})`;
      }
      await writeFile(`${base}.log`, `${out.join('\n')}\n\n--- harness state ---\n${state}\n`);
      lines.push(`page ${label}: screenshot ${base}.png, console + state ${base}.log`);
    }
    await writeFile(path.join(FAILURE_DIR, `${this.name}-server.log`), this.server.tail());
    lines.push(`server output (tail): ${path.join(FAILURE_DIR, `${this.name}-server.log`)} (full log: ${this.server.logPath})`);
    return lines.join('\n');
  }

  async close() {
    for (const { context } of this.pages) await context.close().catch(() => {});
    this.pages = [];
  }
}

/**
 * Runs `fn(session)`; when it throws, saves screenshots/logs and reports where they went.
 * @param {import('node:test').TestContext} t
 */
export async function withSession(t, browser, server, fn) {
  const s = new Session(browser, server, t.name);
  try {
    await fn(s);
  } catch (e) {
    const where = await s.saveFailure(e).catch((x) => `(could not save failure evidence: ${x.message})`);
    t.diagnostic(where);
    throw e;
  } finally {
    await s.close();
  }
}

// ------------------------------------------------------------------------------------------------
// The in-page harness: window.T wraps one FanoutClient and records what happens to it.

const HARNESS_SOURCE = await readFile(path.join(HERE, 'harness.js'), 'utf8');

async function installHarness(page, wsUrl) {
  await page.addScriptTag({ type: 'module', content: HARNESS_SOURCE });
  await page.waitForFunction(() => window.T && window.T.ready, null, { timeout: 10000 });
  await page.evaluate((u) => (window.T.wsUrl = u), wsUrl);
}

/**
 * Waits until `predicate(arg)` (run in the page, sync or async) is truthy, polling every 200 ms;
 * returns its value. The error names `what` and adds the page's harness state. (Polled from Node
 * with `evaluate`, which awaits an async predicate: `waitForFunction` would take its pending
 * promise as truthy and return at once.)
 */
export async function waitInPage(page, what, predicate, arg, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (;;) {
    try {
      // Bounded by what is left of the wait, so a predicate that never settles cannot hang it.
      const left = Math.max(deadline - Date.now(), 1);
      let timer;
      const value = await Promise.race([
        page.evaluate(predicate, arg),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`predicate still running after ${timeout} ms`)), left);
        }),
      ]).finally(() => clearTimeout(timer));
      if (value) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  {
    const e = lastError;
    let state = '';
    try {
      state = JSON.stringify(await page.evaluate(() => window.T.diagnose()));
    } catch {
      /* page gone */
    }
    throw new Error(`timed out after ${timeout} ms waiting for ${what}\npage state: ${state.slice(0, 4000)}`, { cause: e });
  }
}

/** Joins a room through the harness (connect + enter_room). */
export async function join(page, server, { userId, roomId, strRoomId, roleName, app = APP }) {
  const userSig = await server.sig(userId, app);
  return page.evaluate((o) => window.T.join(o), { sdkAppId: app.sdkAppId, userId, userSig, roomId, strRoomId, roleName });
}

/**
 * Samples the receive statistics twice and checks that every listed remote stream grows: video
 * `framesDecoded`, audio `packetsReceived` (and `totalSamplesReceived` > 0).
 * @returns the second sample
 */
export async function expectFlowing(page, label, expected, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last = null;
  let first = null;
  let problems = [];
  while (Date.now() < deadline) {
    const now = await page.evaluate(() => window.T.receiveStats());
    if (first) {
      problems = [];
      for (const { userId, kind } of expected) {
        const a = first.find((s) => s.userId === userId && s.kind === kind);
        const b = now.find((s) => s.userId === userId && s.kind === kind);
        if (!b) {
          problems.push(`${userId}/${kind}: no remote track`);
          continue;
        }
        if (!b.inbound) {
          problems.push(`${userId}/${kind}: no inbound-rtp stats`);
          continue;
        }
        if (kind === 'audio') {
          if (!(b.inbound.packetsReceived > (a?.inbound?.packetsReceived || 0)))
            problems.push(`${userId}/audio: packetsReceived not rising (${a?.inbound?.packetsReceived} -> ${b.inbound.packetsReceived})`);
          if (!(b.inbound.totalSamplesReceived > 0)) problems.push(`${userId}/audio: totalSamplesReceived ${b.inbound.totalSamplesReceived}`);
        } else if (!(b.inbound.framesDecoded > (a?.inbound?.framesDecoded || 0))) {
          problems.push(`${userId}/${kind}: framesDecoded not rising (${a?.inbound?.framesDecoded} -> ${b.inbound.framesDecoded}; packetsReceived ${a?.inbound?.packetsReceived} -> ${b.inbound.packetsReceived}, keyframes ${b.inbound.keyFramesDecoded}, PLIs sent ${b.inbound.pliCount})`);
        }
      }
      last = now;
      if (!problems.length) return now;
    }
    first = now;
    await sleep(1500);
  }
  const diag = await page.evaluate(() => window.T.diagnose()).catch(() => null);
  throw new Error(`${label}: media not flowing within ${timeout} ms:\n  ${problems.join('\n  ')}\nlast stats: ${JSON.stringify(last)}\npage state: ${JSON.stringify(diag).slice(0, 6000)}`);
}
