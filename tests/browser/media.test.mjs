// Media through the SFU, driven through the SDK in headless Chromium: three publishers in one room,
// a screen share, a role switch to audience, and exit_room.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, withSession, join, waitInPage, expectFlowing, sleep } from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('media');
  browser = await launchBrowser('media');
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

/** Opens one page per user, joins `roomId` and publishes camera + microphone on each. */
async function roomOfPublishers(s, roomId, users, { audio = true, video = true } = {}) {
  const pages = {};
  for (const u of users) {
    pages[u] = await s.open(u);
    const reply = await join(pages[u], server, { userId: u, roomId });
    assert.ok(!reply.error, `${u} enter_room: ${JSON.stringify(reply.error)}`);
  }
  for (const u of users) {
    const r = await pages[u].evaluate((o) => window.T.publishCamMic(o), { audio, video });
    assert.ok(!r.error, `${u} publish: ${JSON.stringify(r.error)}`);
  }
  return pages;
}

function othersOf(users, u) {
  return users.filter((x) => x !== u);
}

/** The server's `fanout_twcc_feedback_sent_total` (the media workers publish it once a second). */
async function twccFeedbackSent() {
  const [line] = await server.metrics(/^fanout_twcc_feedback_sent_total /);
  return line ? Number(line.split(' ').pop()) : NaN;
}

test('three publishers: everyone decodes the two other videos and receives their audio', async (t) => {
  await withSession(t, browser, server, async (s) => {
    const users = ['alice', 'bob', 'carol'];
    const pages = await roomOfPublishers(s, 1001, users);
    for (const u of users) {
      const expected = othersOf(users, u).flatMap((o) => [{ userId: o, kind: 'video' }, { userId: o, kind: 'audio' }]);
      await waitInPage(
        pages[u],
        `${u}: remote tracks ${JSON.stringify(expected)}`,
        (exp) => exp.every(({ userId, kind }) => window.T.hasTrack(userId, kind)),
        expected,
      );
      const stats = await expectFlowing(pages[u], u, expected);
      t.diagnostic(`${u} receives: ${stats.map((x) => `${x.userId}/${x.kind} ${x.kind === 'audio' ? `${x.inbound.packetsReceived} pkts` : `${x.inbound.framesDecoded} frames ${x.inbound.frameWidth}x${x.inbound.frameHeight}`}`).join(', ')}`);
    }
    // Chromium numbered its packets with the transport-wide sequence extension the answers
    // accepted, and the server answered them with transport-cc feedback (its estimator runs on it).
    let feedback = await twccFeedbackSent();
    for (const end = Date.now() + 5000; !(feedback > 0) && Date.now() < end; await sleep(250)) {
      feedback = await twccFeedbackSent();
    }
    assert.ok(feedback > 0, `fanout_twcc_feedback_sent_total is ${feedback} after three publishers sent media`);
    t.diagnostic(`transport-cc feedback sent so far: ${feedback}`);
    // Which SRTP protection profile Chromium negotiated with the server (logged, not asserted).
    const info = await pages.alice.evaluate(() => window.T.transportInfo());
    for (const [side, i] of Object.entries(info)) {
      t.diagnostic(`alice ${side} transport: srtpCipher=${i.srtpCipher} dtlsCipher=${i.dtlsCipher} tlsVersion=${i.tlsVersion} dtlsRole=${i.dtlsRole} remote=${i.remoteCandidate}`);
    }
    console.log(`SRTP cipher negotiated by Chromium: publisher=${info.publisher?.srtpCipher} subscriber=${info.subscriber?.srtpCipher}`);
  });
});

test('a screen share (sub_video) reaches the others', async (t) => {
  await withSession(t, browser, server, async (s) => {
    const users = ['sharer', 'viewer1', 'viewer2'];
    const pages = {};
    for (const u of users) {
      pages[u] = await s.open(u);
      const reply = await join(pages[u], server, { userId: u, roomId: 1002 });
      assert.ok(!reply.error, `${u} enter_room: ${JSON.stringify(reply.error)}`);
    }
    // The sharer sends the microphone as well (the viewers send nothing).
    const mic = await pages.sharer.evaluate(() => window.T.publishCamMic({ video: false }));
    assert.ok(!mic.error, `sharer publish audio: ${JSON.stringify(mic.error)}`);
    const shared = await pages.sharer.evaluate(() => window.T.publishScreen('display'));
    assert.ok(!shared.error, `sharer publish screen: ${JSON.stringify(shared.error)}`);
    t.diagnostic(`screen source: ${shared.source} (${shared.label}, ${shared.settings?.width}x${shared.settings?.height})`);
    for (const v of ['viewer1', 'viewer2']) {
      await waitInPage(pages[v], `${v}: stream_added sharer/sub_video`, () =>
        window.T.eventsNamed('stream-added', { user_id: 'sharer', kind: 'sub_video' }).length > 0,
      );
      await waitInPage(pages[v], `${v}: remote sub_video track of sharer`, () => window.T.hasTrack('sharer', 'sub_video'));
      const stats = await expectFlowing(pages[v], v, [
        { userId: 'sharer', kind: 'sub_video' },
        { userId: 'sharer', kind: 'audio' },
      ]);
      const sv = stats.find((x) => x.kind === 'sub_video');
      t.diagnostic(`${v}: sub_video ${sv.inbound.framesDecoded} frames ${sv.inbound.frameWidth}x${sv.inbound.frameHeight}`);
    }
  });
});

test('switching a user to audience removes its streams at the others', async (t) => {
  await withSession(t, browser, server, async (s) => {
    const users = ['anna', 'ben', 'cleo'];
    const pages = await roomOfPublishers(s, 1003, users);
    for (const u of ['anna', 'ben']) {
      await waitInPage(pages[u], `${u}: cleo's audio and video`, () => window.T.hasTrack('cleo', 'video') && window.T.hasTrack('cleo', 'audio'));
    }
    await expectFlowing(pages.anna, 'anna', [{ userId: 'cleo', kind: 'video' }]);

    const r = await pages.cleo.evaluate(() => window.T.call('switchRole', 'audience'));
    assert.ok(!r.error, `switch_role: ${JSON.stringify(r.error)}`);
    assert.equal(r.result.role_name, 'audience');
    assert.equal(r.result.limits.can_publish, false);

    for (const u of ['anna', 'ben']) {
      await waitInPage(pages[u], `${u}: role_changed cleo -> audience`, () =>
        window.T.eventsNamed('role-changed', { user_id: 'cleo', role_name: 'audience' }).length > 0,
      );
      await waitInPage(pages[u], `${u}: stream_removed cleo video + audio`, () =>
        window.T.eventsNamed('stream-removed', { user_id: 'cleo', kind: 'video' }).length > 0 &&
        window.T.eventsNamed('stream-removed', { user_id: 'cleo', kind: 'audio' }).length > 0,
      );
      await waitInPage(pages[u], `${u}: cleo's tracks removed`, () =>
        !window.T.hasTrack('cleo', 'video') && !window.T.hasTrack('cleo', 'audio') &&
        window.T.removedTracks.filter((x) => x.userId === 'cleo').length >= 2,
      );
      // The others' streams are untouched.
      const other = u === 'anna' ? 'ben' : 'anna';
      await expectFlowing(pages[u], u, [{ userId: other, kind: 'video' }, { userId: other, kind: 'audio' }]);
    }
    // Cleo (audience now) still receives the two anchors.
    await expectFlowing(pages.cleo, 'cleo', [{ userId: 'anna', kind: 'video' }, { userId: 'ben', kind: 'video' }]);
  });
});

test('exit_room fires user_exited at the others', async (t) => {
  await withSession(t, browser, server, async (s) => {
    const users = ['dora', 'eli', 'finn'];
    const pages = await roomOfPublishers(s, 1004, users, { video: false });
    for (const u of ['dora', 'eli']) {
      await waitInPage(pages[u], `${u}: finn's audio`, () => window.T.hasTrack('finn', 'audio'));
      await waitInPage(pages.finn, `finn: ${u}'s audio`, (x) => window.T.hasTrack(x, 'audio'), u);
    }
    const r = await pages.finn.evaluate(() => window.T.call('exitRoom'));
    assert.ok(!r.error, `exit_room: ${JSON.stringify(r.error)}`);
    for (const u of ['dora', 'eli']) {
      const ev = await waitInPage(pages[u], `${u}: user_exited finn`, () => {
        const e = window.T.eventsNamed('user-exited', { user_id: 'finn' });
        return e.length ? e[0].detail : false;
      });
      assert.equal(ev.reason, 'left');
      await waitInPage(pages[u], `${u}: finn's audio track removed`, () => !window.T.hasTrack('finn', 'audio'));
    }
    // Nothing more arrives for finn after it left.
    await sleep(1000);
    const late = await pages.finn.evaluate(() => window.T.events.filter((e) => e.name === 'remote-track').length);
    assert.ok(late >= 2, 'finn had received the others before leaving');
    const state = await pages.finn.evaluate(() => ({ room: window.T.client.room, pub: !!window.T.client.publisherConnection, sub: !!window.T.client.subscriberConnection }));
    assert.deepEqual(state, { room: null, pub: false, sub: false });
  });
});

test('simulcast: a subscriber switches between the big and the small stream', async (t) => {
  await withSession(t, browser, server, async (s) => {
    const pub = await s.open('pub');
    const sub = await s.open('sub');
    assert.ok(!(await join(pub, server, { userId: 'pub', roomId: 1005 })).error);
    assert.ok(!(await join(sub, server, { userId: 'sub', roomId: 1005 })).error);
    const r = await pub.evaluate(async () => {
      const video = await window.T.client.startCamera({ width: 1280, height: 720, frameRate: 30 });
      return window.T.call('publish', { video }, { simulcast: true });
    });
    assert.ok(!r.error, `publish: ${JSON.stringify(r.error)}`);
    await waitInPage(sub, "sub: pub's video", () => window.T.hasTrack('pub', 'video'));

    /** Waits until sub decodes pub's video at `height` (and frames keep coming). */
    async function expectLayer(layer, height) {
      const deadline = Date.now() + 20000;
      let v = null;
      while (Date.now() < deadline) {
        const st = await sub.evaluate(() => window.T.receiveStats());
        v = st.find((x) => x.kind === 'video')?.inbound;
        if (v && v.frameHeight === height) break;
        await sleep(500);
      }
      try {
        assert.equal(v?.frameHeight, height, `${layer} layer: decoded height ${v?.frameHeight}, expected ${height}`);
        const stats = await expectFlowing(sub, `sub (${layer} layer)`, [{ userId: 'pub', kind: 'video' }], 10000);
        v = stats.find((x) => x.kind === 'video').inbound;
        t.diagnostic(`${layer}: ${v.frameWidth}x${v.frameHeight}, ${v.framesDecoded} frames decoded, ${v.keyFramesDecoded} keyframes, ${v.pliCount} PLIs, ${v.framesDropped} dropped, ${v.freezeCount} freezes`);
      } catch (e) {
        const ts = await sub.evaluate(() => window.T.rtpTimestamps('pub', 'video', 1500));
        const out1 = await pub.evaluate(() => window.T.outboundRtp());
        await sleep(1000);
        const out2 = await pub.evaluate(() => window.T.outboundRtp());
        const sending = out2.map((o) => `${o.rid} ${o.width}x${o.height} ${o.fps} fps, +${o.bytesSent - (out1.find((x) => x.rid === o.rid)?.bytesSent || 0)} bytes/s`);
        const metrics = await server.metrics(/^fanout_(?!.*_bucket)/);
        const pubEvents = await pub.evaluate(() => window.T.events.filter((x) => x.name !== 'connection-state'));
        e.message += `\nRTP timestamps arriving at sub (1.5 s; empty = no packets for 10 s): ${JSON.stringify(ts.slice(0, 40))}` +
          `\npublisher is sending: ${sending.join('; ')}\npublisher's events: ${JSON.stringify(pubEvents)}\nserver metrics: ${metrics.join(' | ').slice(0, 3000)}`;
        throw e;
      }
    }

    const layers = await pub.evaluate(() => window.T.outboundRtp());
    t.diagnostic(`publisher layers: ${layers.map((l) => `${l.rid} ${l.width}x${l.height}`).join(', ')}`);
    await expectLayer('high (default)', 720);
    let first = true;
    for (const [layer, height] of [['low', 180], ['high', 720], ['low', 180], ['high', 720]]) {
      const res = await sub.evaluate((l) => window.T.call('setSubscription', 'pub', 'video', true, l), layer);
      assert.ok(!res.error, `set_subscription ${layer}: ${JSON.stringify(res.error)}`);
      await expectLayer(layer, height);
      if (first) {
        // Dynacast: with its only subscriber on the small stream, the publisher is told to
        // send only q, and stops encoding h and f (asked back at once by the next step).
        first = false;
        await waitInPage(pub, 'pub: layers_needed [q] applied', () =>
          JSON.stringify(window.T.client.activeLayers.get('video')) === '["q"]', undefined, 15000);
        const out1 = await pub.evaluate(() => window.T.outboundRtp());
        await sleep(1000);
        const out2 = await pub.evaluate(() => window.T.outboundRtp());
        const grew = (rid) => (out2.find((o) => o.rid === rid)?.bytesSent || 0) - (out1.find((o) => o.rid === rid)?.bytesSent || 0);
        t.diagnostic(`dynacast: bytes sent in 1 s: q +${grew('q')}, h +${grew('h')}, f +${grew('f')}`);
        assert.ok(grew('q') > 0, 'q still sent');
        assert.ok(grew('f') < 2000 && grew('h') < 2000, `h and f stopped: h +${grew('h')}, f +${grew('f')}`);
      }
    }
    // The rendered size (set_subscription's max_width/max_height, the SDK's adaptive stream): a
    // 320x180 tile gets the 320x180 layer, a 400x225 one the 640x360 layer, no limit the top.
    for (const [size, height] of [[[320, 180], 180], [[400, 225], 360], [[0, 0], 720]]) {
      const res = await sub.evaluate(
        ([w, h]) => window.T.call('setVideoConstraints', 'pub', 'video', { maxWidth: w, maxHeight: h }),
        size,
      );
      assert.ok(!res.error, `setVideoConstraints ${size}: ${JSON.stringify(res.error)}`);
      await expectLayer(`rendered at ${size.join('x')}`, height);
    }
    // Adaptive stream on the page's own <video>: drawn at 160x90 it gets the 180p layer.
    const adaptive = await sub.evaluate(async () => {
      const v = document.createElement('video');
      v.style.width = '160px';
      v.style.height = '90px';
      v.style.position = 'fixed';
      v.style.top = '0';
      v.style.left = '0';
      v.muted = true;
      v.autoplay = true;
      v.srcObject = new MediaStream([window.T.remoteTracks.find((t) => t.userId === 'pub' && t.kind === 'video').track]);
      document.body.appendChild(v);
      window.__stopAdaptive = window.T.client.adaptiveStream(v, 'pub', 'video');
      return true;
    });
    assert.ok(adaptive);
    await expectLayer('adaptive 160x90', 180);
    await sub.evaluate(() => window.__stopAdaptive());
    await expectLayer('adaptive stopped', 720);
  });
});

test('unpublish, publish again, and back to anchor after audience', async (t) => {
  await withSession(t, browser, server, async (s) => {
    const users = ['gus', 'hal'];
    const pages = await roomOfPublishers(s, 1006, users);
    const { gus, hal } = pages;
    await waitInPage(hal, "hal: gus's video + audio", () => window.T.hasTrack('gus', 'video') && window.T.hasTrack('gus', 'audio'));
    await expectFlowing(hal, 'hal', [{ userId: 'gus', kind: 'video' }]);

    // Camera off: the video goes away at hal, the audio stays.
    const off = await gus.evaluate(() => window.T.call('unpublish', 'video'));
    assert.ok(!off.error, `camera off (unpublish video with audio still on): ${JSON.stringify(off.error)}`);
    await waitInPage(hal, "hal: stream_removed gus/video, track gone", () =>
      window.T.eventsNamed('stream-removed', { user_id: 'gus', kind: 'video' }).length === 1 && !window.T.hasTrack('gus', 'video'));
    await expectFlowing(hal, 'hal', [{ userId: 'gus', kind: 'audio' }]);

    // Camera on again (a new capture): hal decodes it again.
    const again = await gus.evaluate(async () => window.T.call('publish', { video: await window.T.client.startCamera() }));
    assert.ok(!again.error, `publish again: ${JSON.stringify(again.error)}`);
    await waitInPage(hal, "hal: gus's video again", () =>
      window.T.eventsNamed('stream-added', { user_id: 'gus', kind: 'video' }).length === 2 && window.T.hasTrack('gus', 'video'));
    await expectFlowing(hal, 'hal', [{ userId: 'gus', kind: 'video' }, { userId: 'gus', kind: 'audio' }]);

    // Everything off, then everything on again.
    for (const kind of ['audio', 'video']) {
      const r = await gus.evaluate((k) => window.T.call('unpublish', k), kind);
      assert.ok(!r.error, `unpublish ${kind}: ${JSON.stringify(r.error)}`);
    }
    await waitInPage(hal, "hal: gus's streams gone", () => !window.T.hasTrack('gus', 'video') && !window.T.hasTrack('gus', 'audio'));
    const all = await gus.evaluate(() => window.T.call('publish', { video: window.T.local.video, audio: window.T.local.audio }));
    assert.ok(!all.error, `publish both again: ${JSON.stringify(all.error)}`);
    await waitInPage(hal, "hal: gus's streams back after unpublishing both", () => window.T.hasTrack('gus', 'video') && window.T.hasTrack('gus', 'audio'));
    await expectFlowing(hal, 'hal', [{ userId: 'gus', kind: 'video' }, { userId: 'gus', kind: 'audio' }]);

    // Audience and back: publishing works again with the same tracks.
    const aud = await gus.evaluate(() => window.T.call('switchRole', 'audience'));
    assert.ok(!aud.error, `switch to audience: ${JSON.stringify(aud.error)}`);
    await waitInPage(hal, "hal: gus's streams gone", () => !window.T.hasTrack('gus', 'video') && !window.T.hasTrack('gus', 'audio'));
    const back = await gus.evaluate(() => window.T.call('switchRole', 'anchor'));
    assert.ok(!back.error, `switch back: ${JSON.stringify(back.error)}`);
    const republish = await gus.evaluate(() =>
      window.T.call('publish', { video: window.T.client.publishedTracks.get('video') || window.T.local.video, audio: window.T.local.audio }),
    );
    assert.ok(!republish.error, `publish after role round trip: ${JSON.stringify(republish.error)}`);
    await waitInPage(hal, "hal: gus's streams back", () => window.T.hasTrack('gus', 'video') && window.T.hasTrack('gus', 'audio'));
    await expectFlowing(hal, 'hal', [{ userId: 'gus', kind: 'video' }, { userId: 'gus', kind: 'audio' }]);
  });
});
