// WHEP: a browser page plays another browser's stream over plain HTTP (fetch + RTCPeerConnection),
// the way a standard WHEP player does, and decodes its video; DELETE on the Location leaves.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, withSession, join, waitInPage, APP } from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('whep');
  browser = await launchBrowser('whep');
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

test("a WHEP player in a browser decodes another browser's published video", async (t) => {
  await withSession(t, browser, server, async (s) => {
    const alice = await s.open('alice');
    const reply = await join(alice, server, { userId: 'alice', roomId: 3001 });
    assert.ok(!reply.error, `alice enter_room: ${JSON.stringify(reply.error)}`);
    // A member of the room tells when alice's streams exist on the server (they count once her media
    // flows); a WHEP session takes the streams present when it starts.
    const watcher = await s.open('watcher');
    const entered = await join(watcher, server, { userId: 'watcher', roomId: 3001 });
    assert.ok(!entered.error, `watcher enter_room: ${JSON.stringify(entered.error)}`);
    const pub = await alice.evaluate(() => window.T.publishCamMic());
    assert.ok(!pub.error, `alice publish: ${JSON.stringify(pub.error)}`);
    for (const kind of ['audio', 'video']) {
      await waitInPage(watcher, `stream_added alice/${kind}`, (k) =>
        window.T.eventsNamed('stream-added', { user_id: 'alice', kind: k }).length > 0, kind);
    }

    const player = await s.open('player');
    const token = await server.sig('player', APP);
    const started = await player.evaluate(async ({ app, room, token }) => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
      const video = document.createElement('video');
      video.muted = true;
      video.autoplay = true;
      document.body.appendChild(video);
      const stream = new MediaStream();
      pc.ontrack = (e) => {
        stream.addTrack(e.track);
        video.srcObject = stream;
      };
      await pc.setLocalDescription(await pc.createOffer());
      // Wait for host candidates (no trickle in this player).
      await new Promise((resolve) => {
        if (pc.iceGatheringState === 'complete') return resolve();
        pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
        setTimeout(resolve, 3000);
      });
      const r = await fetch(`/v1/whep/${app}/${room}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
        body: pc.localDescription.sdp,
      });
      const answer = await r.text();
      if (r.status !== 201) return { status: r.status, answer };
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      window.whep = { pc, location: r.headers.get('Location') };
      return { status: r.status, location: window.whep.location };
    }, { app: APP.sdkAppId, room: 3001, token });
    assert.equal(started.status, 201, `WHEP POST: ${JSON.stringify(started)}`);
    assert.match(started.location, /^\/v1\/whep\/sessions\//);

    // The player decodes video (frames rising) and receives audio.
    await waitInPage(player, 'WHEP video frames decoded', async () => {
      const stats = await window.whep.pc.getStats();
      let frames = 0;
      stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') frames = Math.max(frames, r.framesDecoded || 0); });
      return frames > 20;
    });
    await waitInPage(player, 'WHEP audio packets', async () => {
      const stats = await window.whep.pc.getStats();
      let packets = 0;
      stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'audio') packets = r.packetsReceived || 0; });
      return packets > 50;
    });
    const size = await player.evaluate(async () => {
      const stats = await window.whep.pc.getStats();
      const video = [];
      stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') video.push(r.framesDecoded ?? 0); });
      const kinds = [];
      stats.forEach((r) => { if (r.type === 'inbound-rtp') kinds.push([r.kind, r.mediaType, r.packetsReceived]); });
      return { video, kinds, state: window.whep.pc.connectionState };
    });
    t.diagnostic(`WHEP player video streams' decoded frames so far: ${JSON.stringify(size)}`);

    // alice saw the player enter; DELETE makes it leave.
    await waitInPage(alice, 'alice sees the player', () => window.T.eventsNamed('user-entered', { user_id: 'player' }).length > 0);
    const status = await player.evaluate(async () => (await fetch(window.whep.location, { method: 'DELETE' })).status);
    assert.equal(status, 200);
    await waitInPage(alice, 'alice sees the player leave', () => window.T.eventsNamed('user-exited', { user_id: 'player' }).length > 0);
  });
});
