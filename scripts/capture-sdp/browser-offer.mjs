// Captures one publisher offer from a real browser and writes it, byte for
// byte as the browser produced it, to a file.
//
//   node browser-offer.mjs <chromium|firefox> <audio-video|simulcast|audio-only> <out.sdp>
//
// Chromium (/usr/bin/chromium) is driven by puppeteer-core over CDP, Firefox
// ESR (/usr/bin/firefox-esr) by puppeteer-core over WebDriver BiDi. Both use
// fake capture devices. The page is served from 127.0.0.1 so that it is a
// secure context (getUserMedia needs one). The browser's version string is
// printed on stderr as "version: ...".
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const [browserName, scenario, outPath] = process.argv.slice(2);
const SCENARIOS = ['audio-video', 'simulcast', 'audio-only'];
if (!['chromium', 'firefox'].includes(browserName) || !SCENARIOS.includes(scenario) || !outPath) {
  console.error('usage: node browser-offer.mjs <chromium|firefox> <audio-video|simulcast|audio-only> <out.sdp>');
  process.exit(2);
}

// Hard upper bound on the whole run, whatever hangs.
const overall = setTimeout(() => {
  console.error('timed out after 90 s');
  process.exit(1);
}, 90_000);

// Runs inside the page. Returns the local description's SDP after ICE
// gathering completes, or after at most 3 s.
async function makeOffer(scenario) {
  const wantVideo = scenario !== 'audio-only';
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: wantVideo });
  const pc = new RTCPeerConnection();
  const [audioTrack] = stream.getAudioTracks();
  pc.addTransceiver(audioTrack, { direction: 'sendonly' });
  if (wantVideo) {
    const [videoTrack] = stream.getVideoTracks();
    const init = { direction: 'sendonly' };
    if (scenario === 'simulcast') {
      init.sendEncodings = [
        { rid: 'q', scaleResolutionDownBy: 4 },
        { rid: 'h', scaleResolutionDownBy: 2 },
        { rid: 'f' },
      ];
    }
    pc.addTransceiver(videoTrack, init);
  }
  const gathered = new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === 'complete') resolve('complete');
    };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(() => resolve('timeout'), 3000);
  });
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const how = pc.iceGatheringState === 'complete' ? 'complete' : await gathered;
  const sdp = pc.localDescription.sdp;
  pc.close();
  stream.getTracks().forEach((t) => t.stop());
  return { sdp, how };
}

const server = createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end('<!doctype html><title>capture-sdp</title>');
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${server.address().port}/`;

const profileDir = mkdtempSync(join(tmpdir(), `capture-sdp-${browserName}-`));
let browser;
try {
  if (browserName === 'chromium') {
    browser = await puppeteer.launch({
      executablePath: '/usr/bin/chromium',
      ignoreDefaultArgs: true,
      pipe: true,
      args: [
        '--no-sandbox',
        '--headless',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${profileDir}`,
        '--use-fake-device-for-media-stream',
        '--use-fake-ui-for-media-stream',
        'about:blank',
      ],
      timeout: 30_000,
    });
  } else {
    browser = await puppeteer.launch({
      browser: 'firefox',
      protocol: 'webDriverBiDi',
      executablePath: '/usr/bin/firefox-esr',
      headless: true,
      userDataDir: profileDir,
      extraPrefsFirefox: {
        'media.navigator.streams.fake': true,
        'media.navigator.permission.disabled': true,
      },
      timeout: 30_000,
    });
  }
  console.error(`version: ${await browser.version()}`);
  const page = await browser.newPage();
  await page.goto(url, { timeout: 15_000 });
  const { sdp, how } = await page.evaluate(makeOffer, scenario);
  console.error(`ice gathering: ${how}`);
  writeFileSync(outPath, sdp);
} finally {
  if (browser) await browser.close().catch(() => {});
  server.close();
  rmSync(profileDir, { recursive: true, force: true });
  clearTimeout(overall);
}
