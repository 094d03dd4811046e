import { startServer, launchBrowser, Session, join, expectFlowing, sleep, waitInPage } from './helpers.mjs';
const server = await startServer('exp');
const browser = await launchBrowser();
const s = new Session(browser, server, 'exp');
try {
  const a = await s.open('a'); const b = await s.open('b');
  await join(a, server, { userId: 'a', roomId: 9 }); await join(b, server, { userId: 'b', roomId: 9 });
  console.log('pub', await a.evaluate(() => window.T.publishCamMic({ simulcast: false })));
  await waitInPage(b, 'b gets a video', () => window.T.hasTrack('a', 'video'));
  let st = await expectFlowing(b, 'b', [{ userId: 'a', kind: 'video' }]);
  console.log('high', JSON.stringify(st.find(x => x.kind === 'video').inbound));
  console.log('low', await b.evaluate(() => window.T.call('setSubscription', 'a', 'video', true, 'low')));
  await sleep(4000);
  st = await expectFlowing(b, 'b', [{ userId: 'a', kind: 'video' }]);
  console.log('after low', JSON.stringify(st.find(x => x.kind === 'video').inbound));
  console.log('outbound', JSON.stringify(await a.evaluate(async () => { const r = await window.T.client.publisherConnection.getStats(); const o = []; r.forEach(s => s.type === 'outbound-rtp' && o.push({ rid: s.rid, w: s.frameWidth, h: s.frameHeight, fps: s.framesPerSecond, bytes: s.bytesSent, lim: s.qualityLimitationReason })); return o; })));
  console.log('unpub', await a.evaluate(() => window.T.call('unpublish', 'video')));
  await waitInPage(b, 'b loses a video', () => !window.T.hasTrack('a', 'video'));
  console.log('b events', JSON.stringify(await b.evaluate(() => window.T.events.filter(e => e.name.startsWith('stream') || e.name.startsWith('remote')).map(e => e.name + ' ' + e.detail.kind))));
  console.log('repub', await a.evaluate(async () => window.T.call('publish', { video: await window.T.client.startCamera() })));
  await waitInPage(b, 'b gets a video again', () => window.T.hasTrack('a', 'video'), undefined, 10000);
  st = await expectFlowing(b, 'b', [{ userId: 'a', kind: 'video' }], 10000);
  console.log('again', JSON.stringify(st.find(x => x.kind === 'video').inbound));
  // role round trip
  console.log('aud', JSON.stringify((await a.evaluate(() => window.T.call('switchRole', 'audience'))).error));
  await waitInPage(b, 'b loses a', () => !window.T.hasTrack('a', 'video') && !window.T.hasTrack('a', 'audio'));
  console.log('anchor', JSON.stringify((await a.evaluate(() => window.T.call('switchRole', 'anchor'))).error));
  console.log('repub2', await a.evaluate(async () => window.T.call('publish', { video: window.T.local.video, audio: window.T.local.audio })));
  await waitInPage(b, 'b gets a again', () => window.T.hasTrack('a', 'video') && window.T.hasTrack('a', 'audio'), undefined, 10000);
  st = await expectFlowing(b, 'b', [{ userId: 'a', kind: 'video' }, { userId: 'a', kind: 'audio' }], 10000);
  console.log('OK after role round trip');
} catch (e) { console.log('FAIL', e.message.slice(0, 3000)); }
await s.close(); await browser.close(); await server.stop();
