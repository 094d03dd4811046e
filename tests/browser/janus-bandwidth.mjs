// Issue 10's side-by-side benchmark: the stepped-link scenario of bandwidth.test.mjs (same
// namespaces, tbf steps and sampling, shaped.mjs) on Janus VideoRoom, Debian's `janus`, with the
// same Chromium publisher settings (720p30 camera, three simulcast layers at Fanout's SDK's
// bitrates, room bitrate 2 Mb/s like Fanout's anchor_hd role). Janus estimates no subscriber's
// bandwidth: its subscribers get the substream they asked for (by default the highest), which
// is what this measures. Prints one JSON line per step and a Markdown table; a benchmark, not a
// test (it asserts only that the run worked). Needs root.
//
//   node tests/browser/janus-bandwidth.mjs
//
// Environment: CHROMIUM, JANUS (default /usr/bin/janus), BANDWIDTH_STEPS (shaped.mjs).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, HERE, sleep } from './helpers.mjs';
import { netnsUnavailable } from './netns.mjs';
import { BRIDGE, HOST_IP, LINKS, STEPS, createLinks, launchInNamespace, removeLinks, shape, stepLink, stepsFromEnv } from './shaped.mjs';

const JANUS = process.env.JANUS || '/usr/bin/janus';
const ROOM = 9001;
const log = (m) => console.log(m);

function janusLib() {
  for (const d of ['/usr/lib/x86_64-linux-gnu/janus', '/usr/lib/aarch64-linux-gnu/janus', '/usr/lib/janus', '/usr/local/lib/janus']) {
    if (existsSync(path.join(d, 'plugins'))) return d;
  }
  throw new Error('no Janus plugin folder found (apt-get install janus)');
}

async function startJanus(dir, port) {
  const lib = janusLib();
  await writeFile(path.join(dir, 'janus.jcfg'), `general: {
	configs_folder = "${dir}"
	plugins_folder = "${lib}/plugins"
	transports_folder = "${lib}/transports"
	events_folder = "${lib}/events"
	loggers_folder = "${lib}/loggers"
	debug_level = 4
	admin_secret = "unused-janus-bandwidth"
	session_timeout = 60
}
certificates: {
}
media: {
	rtp_port_range = "20000-40000"
}
nat: {
	ice_lite = false
	ice_tcp = false
	full_trickle = false
	ice_enforce_list = "${BRIDGE}"
	ignore_mdns = true
}
plugins: {
	disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}
transports: {
	disable = "libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so,libjanus_websockets.so"
}
loggers: {
	disable = "libjanus_jsonlog.so"
}
events: {
	broadcast = false
}
`);
  await writeFile(path.join(dir, 'janus.transport.http.jcfg'), `general: {
	json = "compact"
	base_path = "/janus"
	http = true
	port = ${port}
	ip = "127.0.0.1"
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
`);
  await writeFile(path.join(dir, 'janus.plugin.videoroom.jcfg'), 'general: {\n}\n');
  const child = spawn(JANUS, ['-C', path.join(dir, 'janus.jcfg'), '-F', dir, '-L', path.join(dir, 'janus.log')], {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  for (let i = 0; i < 100; i += 1) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/janus`, { method: 'POST', body: '{"janus":"info","transaction":"x"}' });
      if ((await r.text()).includes('server_info')) return child;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  child.kill();
  throw new Error(`janus did not start: ${await readFile(path.join(dir, 'janus.log'), 'utf8').catch(() => '')}`);
}

/** The page, and /janus proxied to Janus's HTTP API (one origin: no CORS, and the subscribers'
 * namespaces reach it on the bridge). */
function startPageServer(janusPort) {
  const page = readFile(path.join(HERE, 'janus-page.html'));
  const srv = http.createServer(async (req, res) => {
    if (req.url === '/' || req.url.startsWith('/janus.html')) {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(await page);
      return;
    }
    if (!req.url.startsWith('/janus')) {
      res.writeHead(404);
      res.end();
      return;
    }
    const up = http.request({ host: '127.0.0.1', port: janusPort, path: req.url, method: req.method, headers: { 'content-type': 'application/json' } }, (r) => {
      res.writeHead(r.statusCode, { 'content-type': 'application/json' });
      r.pipe(res);
    });
    up.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  return new Promise((resolve) => srv.listen(0, HOST_IP, () => resolve(srv)));
}

async function main() {
  const why = netnsUnavailable();
  if (why) throw new Error(`cannot run: ${why}`);
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'janus-bw-'));
  createLinks();
  process.once('exit', removeLinks);
  shape(LINKS.a, 3000);
  shape(LINKS.b, 3000);
  const janusPort = 18000 + (process.pid % 1000);
  const janus = await startJanus(tmp, janusPort);
  const pages = await startPageServer(janusPort);
  const url = `http://${HOST_IP}:${pages.address().port}/janus.html`;
  const args = [...CHROMIUM_ARGS, `--unsafely-treat-insecure-origin-as-secure=http://${HOST_IP}:${pages.address().port}`];
  const browsers = {};
  try {
    browsers.pub = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 30000 });
    for (const k of ['a', 'b']) browsers[k] = await launchInNamespace(k, tmp, args);
    const open = async (b) => {
      const p = await (await b.newContext()).newPage();
      p.on('console', (m) => m.type() === 'error' && !m.text().includes('404') && log(`page: ${m.text()}`));
      await p.goto(url);
      await p.evaluate(() => window.J.start());
      return p;
    };
    const pub = await open(browsers.pub);
    const feed = await pub.evaluate((room) => window.J.publish(room, 2_000_000), ROOM);
    const subA = await open(browsers.a);
    const subB = await open(browsers.b);
    await subA.evaluate(([room, f]) => window.J.subscribe(room, f), [ROOM, feed]);
    await subB.evaluate(([room, f]) => window.J.subscribe(room, f), [ROOM, feed]);
    const sample = (p) => async () => ({ at: Date.now(), paused: false, ...(await p.evaluate(() => window.J.stats())) });
    const deadline = Date.now() + 40000;
    let start = null;
    while (Date.now() < deadline) {
      start = { a: await sample(subA)(), b: await sample(subB)() };
      if (start.a.height === 720 && start.b.height === 720) break;
      await sleep(500);
    }
    if (!start || start.a.height !== 720 || start.b.height !== 720) {
      throw new Error(`both subscribers at 720p: ${JSON.stringify(start)}; janus events: ${JSON.stringify(await subA.evaluate(() => window.J.events.slice(-5)))}`);
    }
    const { figures, bAtTop, bSamples } = await stepLink(stepsFromEnv() || STEPS, sample(subA), sample(subB), log);
    log(`B at 720p in ${bAtTop} of ${bSamples} samples`);
    log('\n| A\'s link | A\'s height at the end | A frames/s | A freezes (total s) | longest stall | A layer switches after 5 s | A audio loss | B frames/s | B freezes |');
    log('| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |');
    for (const f of figures) {
      log(`| ${f.kbit} kbit/s | ${f.height}p | ${f.framesPerSec} | ${f.freezes} (${f.freezeSecs} s) | ${f.longestStallMs} ms | ${f.switchesAfter5s} | ${(100 * f.audioLoss).toFixed(2)}% | ${f.bFramesPerSec} | ${f.bFreezes} |`);
    }
  } finally {
    for (const b of Object.values(browsers)) await b.close().catch(() => {});
    pages.close();
    janus.kill();
    removeLinks();
    await rm(tmp, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
