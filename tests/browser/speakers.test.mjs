// Active speakers: a continuous tone published as the microphone carries RFC 6464 audio levels
// (Chromium's fake microphone only beeps once a second, too quiet on average to count as speech);
// the server's router turns them into `active_speakers` events naming the publisher.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, withSession, join, waitInPage } from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('speakers');
  browser = await launchBrowser('speakers');
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

test('a publishing microphone shows up in active_speakers', async (t) => {
  await withSession(t, browser, server, async (s) => {
    const talker = await s.open('talker');
    const listener = await s.open('listener');
    for (const [page, user] of [[talker, 'talker'], [listener, 'listener']]) {
      const reply = await join(page, server, { userId: user, roomId: 4001 });
      assert.ok(!reply.error, `${user} enter_room: ${JSON.stringify(reply.error)}`);
    }
    const r = await talker.evaluate(async () => {
      try {
        const ctx = new AudioContext();
        const osc = ctx.createOscillator();
        osc.frequency.value = 440;
        const gain = ctx.createGain();
        gain.gain.value = 0.8;
        const dest = ctx.createMediaStreamDestination();
        osc.connect(gain).connect(dest);
        osc.start();
        await ctx.resume();
        window.toneContext = ctx;
        await window.T.client.publish({ audio: dest.stream.getAudioTracks()[0] });
        return {};
      } catch (e) {
        return { error: String(e && e.message || e) };
      }
    });
    assert.ok(!r.error, `talker publish: ${JSON.stringify(r.error)}`);
    await waitInPage(listener, 'listener hears that talker speaks', () =>
      window.T.eventsNamed('active-speakers').some((e) => (e.detail.user_ids || []).includes('talker')));
    const seen = await listener.evaluate(() => window.T.eventsNamed('active-speakers').map((e) => e.detail.user_ids));
    t.diagnostic(`active_speakers events at the listener: ${JSON.stringify(seen.slice(0, 5))}`);
    assert.ok(seen.every((ids) => !ids.includes('listener')), 'a user who does not publish never speaks');
  });
});
