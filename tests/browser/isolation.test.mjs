// Rooms are isolated, and the server enforces roles: driven through the SDK in headless Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, withSession, join, waitInPage, expectFlowing, sleep, APP2 } from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('isolation');
  browser = await launchBrowser('isolation');
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

test('a page in another room receives nothing from the first room', async (t) => {
  await withSession(t, browser, server, async (s) => {
    const pages = {};
    const joins = [
      ['ivy', { roomId: 2001 }],
      ['jack', { roomId: 2001 }],
      ['kim', { roomId: 2002 }], // another room of the same app
      ['lou', { strRoomId: '2001' }], // string room "2001" is not numeric room 2001
      ['max', { roomId: 2001, app: APP2 }], // the same room number in another app
    ];
    for (const [u, where] of joins) {
      pages[u] = await s.open(u);
      const reply = await join(pages[u], server, { userId: u, ...where });
      assert.ok(!reply.error, `${u} enter_room: ${JSON.stringify(reply.error)}`);
      assert.deepEqual(reply.users.map((x) => x.user_id), u === 'jack' ? ['ivy'] : [], `${u} sees the right people`);
    }
    for (const u of ['ivy', 'jack', 'kim']) {
      const r = await pages[u].evaluate(() => window.T.publishCamMic());
      assert.ok(!r.error, `${u} publish: ${JSON.stringify(r.error)}`);
    }
    // The first room works...
    await waitInPage(pages.ivy, "ivy: jack's video", () => window.T.hasTrack('jack', 'video'));
    await waitInPage(pages.jack, "jack: ivy's video", () => window.T.hasTrack('ivy', 'video'));
    await expectFlowing(pages.ivy, 'ivy', [{ userId: 'jack', kind: 'video' }, { userId: 'jack', kind: 'audio' }]);
    // ...and nothing of it shows up elsewhere, nor does kim's room leak into it.
    await sleep(4000);
    for (const u of ['kim', 'lou', 'max']) {
      const seen = await pages[u].evaluate(async () => ({
        events: window.T.events.filter((e) => ['offer', 'remote-track', 'user-entered', 'stream-added'].includes(e.name)).map((e) => e.name),
        subscriber: !!window.T.client.subscriberConnection,
        inbound: await window.T.inboundRtp(),
      }));
      assert.deepEqual(seen, { events: [], subscriber: false, inbound: [] }, `${u} received something`);
    }
    for (const u of ['ivy', 'jack']) {
      const tracks = await pages[u].evaluate(() => window.T.tracks().map((x) => `${x.userId}/${x.kind}`).sort());
      const other = u === 'ivy' ? 'jack' : 'ivy';
      assert.deepEqual(tracks, [`${other}/audio`, `${other}/video`], `${u}'s tracks`);
      const entered = await pages[u].evaluate(() => window.T.eventsNamed('user-entered').map((e) => e.detail.user_id));
      assert.deepEqual(entered, u === 'ivy' ? ['jack'] : []);
    }
  });
});

test("an audience user's publish attempt fails with -3343", async (t) => {
  await withSession(t, browser, server, async (s) => {
    const host = await s.open('host');
    const viewer = await s.open('viewer');
    assert.ok(!(await join(host, server, { userId: 'host', roomId: 2003 })).error);
    const reply = await join(viewer, server, { userId: 'viewer', roomId: 2003, roleName: 'audience' });
    assert.ok(!reply.error, `viewer enter_room: ${JSON.stringify(reply.error)}`);
    assert.equal(reply.role_name, 'audience');
    assert.equal(reply.limits.can_publish, false);

    const r = await viewer.evaluate(() => window.T.publishCamMic());
    assert.ok(r.error, 'an audience publish must fail');
    assert.equal(r.error.code, -3343, `error: ${JSON.stringify(r.error)}`);
    // The failed attempt left no publishing connection behind, and the host heard of no stream.
    assert.equal(await viewer.evaluate(() => window.T.client.publisherConnection), null);
    await sleep(1500);
    assert.deepEqual(await host.evaluate(() => window.T.eventsNamed('stream-added').map((e) => e.detail)), []);

    // Still an audience member in good standing: it receives the host once the host publishes.
    assert.ok(!(await host.evaluate(() => window.T.publishCamMic())).error);
    await waitInPage(viewer, "viewer: host's video", () => window.T.hasTrack('host', 'video'));
    await expectFlowing(viewer, 'viewer', [{ userId: 'host', kind: 'video' }, { userId: 'host', kind: 'audio' }]);
  });
});
