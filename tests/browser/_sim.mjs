import { startServer, launchBrowser, Session, join, expectFlowing, sleep, waitInPage } from './helpers.mjs';
const server = await startServer('sim');
const browser = await launchBrowser();
for (let round = 0; round < 4; round++) {
const s = new Session(browser, server, 'sim');
try {
  const a = await s.open('a'); const b = await s.open('b');
  await join(a, server, { userId: 'a', roomId: 10 + round }); await join(b, server, { userId: 'b', roomId: 10 + round });
  console.log('pub', await a.evaluate(async () => { const c = window.T.client; const v = await c.startCamera({ width: 1280, height: 720 }); return window.T.call('publish', { video: v }, { simulcast: true }); }));
  await waitInPage(b, 'b gets a video', () => window.T.hasTrack('a', 'video'));
  for (const layer of ['high', 'low', 'high']) {
    if (layer !== 'high' || true) await b.evaluate((l) => window.T.call('setSubscription', 'a', 'video', true, l), layer);
    await sleep(3000);
    const st = await expectFlowing(b, 'b', [{ userId: 'a', kind: 'video' }], 10000);
    const v = st.find(x => x.kind === 'video').inbound;
    console.log(round, layer, `${v.frameWidth}x${v.frameHeight} frames ${v.framesDecoded} kf ${v.keyFramesDecoded} pli ${v.pliCount}`);
  }
  console.log('outbound', JSON.stringify(await a.evaluate(async () => { const r = await window.T.client.publisherConnection.getStats(); const o = []; r.forEach(s => s.type === 'outbound-rtp' && o.push({ rid: s.rid, w: s.frameWidth, h: s.frameHeight, fps: s.framesPerSecond, kbps: s.targetBitrate, lim: s.qualityLimitationReason })); return o; })));
} catch (e) { console.log('FAIL', e.message.slice(0, 1200)); }
await s.close();
}
await browser.close(); await server.stop();
