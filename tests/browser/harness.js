// In-page test harness (loaded as a module script into a page served by Fanout): `window.T` wraps one
// FanoutClient from the server's /fanout.js and records its events and tracks for the Node side.
import { FanoutClient, FanoutError } from '/fanout.js';

const SERVER_EVENTS = [
  'user-entered', 'user-exited', 'role-changed', 'kicked', 'stream-added', 'stream-removed',
  'limit-exceeded', 'active-speakers', 'stream-paused', 'stream-resumed', 'offer', 'disconnected', 'connection-state', 'error',
];

function plain(detail) {
  const out = {};
  for (const [k, v] of Object.entries(detail || {})) {
    if (k === 'sdp') out.sdpLength = String(v).length;
    else if (v instanceof MediaStreamTrack) out[k] = { id: v.id, kind: v.kind, readyState: v.readyState, muted: v.muted };
    else if (v instanceof MediaStream) continue;
    else if (v instanceof Error) out[k] = { code: v.code, message: v.message };
    else out[k] = v;
  }
  return out;
}

function errorOf(e) {
  const out = { code: e && e.code !== undefined ? e.code : null, message: e && e.message ? e.message : String(e), fanout: e instanceof FanoutError };
  if (e && e.sdp) {
    out.sdp = e.sdp;
    out.offer = T.client && T.client.publisherConnection && T.client.publisherConnection.localDescription && T.client.publisherConnection.localDescription.sdp;
  }
  return out;
}

async function statsOf(pc) {
  if (!pc) return null;
  const report = await pc.getStats();
  const all = [];
  report.forEach((s) => all.push(s));
  return all;
}

const T = {
  ready: true,
  wsUrl: null,
  /** @type {FanoutClient|null} */
  client: null,
  events: [],
  remoteTracks: [],
  removedTracks: [],
  local: {},
  lastOfferSdp: null,

  /** Connects and enters a room; returns the reply or {error}. */
  async join({ sdkAppId, userId, userSig, roomId, strRoomId, roleName }) {
    const c = new FanoutClient();
    this.client = c;
    for (const name of SERVER_EVENTS) {
      c.addEventListener(name, (e) => {
        if (name === 'offer') this.lastOfferSdp = e.detail.sdp;
        this.events.push({ name, at: Date.now(), detail: plain(e.detail) });
      });
    }
    c.addEventListener('remote-track', (e) => {
      this.remoteTracks.push(e.detail);
      // Play it, as an application would (Chromium decodes remote audio for playout only).
      const el = document.createElement(e.detail.kind === 'audio' ? 'audio' : 'video');
      el.autoplay = true;
      el.muted = e.detail.kind !== 'audio';
      el.dataset.mid = e.detail.mid;
      el.srcObject = e.detail.stream;
      this.sink().append(el);
      el.play().catch(() => {});
      this.events.push({ name: 'remote-track', at: Date.now(), detail: plain(e.detail) });
    });
    c.addEventListener('remote-track-removed', (e) => {
      this.remoteTracks = this.remoteTracks.filter((t) => t.mid !== e.detail.mid || t.track !== e.detail.track);
      for (const el of this.sink().querySelectorAll(`[data-mid="${CSS.escape(e.detail.mid)}"]`)) {
        if (el.srcObject === e.detail.stream) {
          el.srcObject = null;
          el.remove();
        }
      }
      this.removedTracks.push(e.detail);
      this.events.push({ name: 'remote-track-removed', at: Date.now(), detail: plain(e.detail) });
    });
    try {
      await c.connect(this.wsUrl || undefined);
      const reply = await c.enterRoom({ sdkAppId, userId, userSig, roomId, strRoomId, roleName });
      return reply;
    } catch (e) {
      return { error: errorOf(e) };
    }
  },

  /** A hidden box holding the media elements that play remote tracks. */
  sink() {
    let box = document.getElementById('harness-sink');
    if (!box) {
      box = document.createElement('div');
      box.id = 'harness-sink';
      box.style.cssText = 'position:fixed;right:0;bottom:0;width:160px;opacity:0.01;pointer-events:none';
      document.body.append(box);
    }
    return box;
  },

  /** Opens fake camera and/or microphone and publishes them; returns {} or {error}. */
  async publishCamMic({ audio = true, video = true, simulcast = false } = {}) {
    try {
      const tracks = {};
      if (video) tracks.video = this.local.video = await this.client.startCamera();
      if (audio) tracks.audio = this.local.audio = await this.client.startMicrophone();
      await this.client.publish(tracks, { simulcast });
      return {};
    } catch (e) {
      return { error: errorOf(e) };
    }
  },

  /**
   * Publishes a screen share: getDisplayMedia when `source` is 'display' (falls back to a canvas when
   * it fails), or a canvas captureStream() track when 'canvas'. Returns {source} or {error}.
   */
  async publishScreen(source = 'display') {
    let track = null;
    let used = source;
    if (source === 'display') {
      try {
        track = await this.client.startScreenShare();
      } catch (e) {
        this.events.push({ name: 'note', at: Date.now(), detail: { text: `getDisplayMedia failed: ${e.message}` } });
        used = 'canvas';
      }
    }
    if (!track) track = this.canvasTrack();
    this.local.screen = track;
    try {
      await this.client.publish({ screen: track });
      return { source: used, label: track.label, settings: track.getSettings() };
    } catch (e) {
      return { error: errorOf(e) };
    }
  },

  /** A 640x360 animated canvas as a video track. */
  canvasTrack() {
    const canvas = document.createElement('canvas');
    canvas.width = 640;
    canvas.height = 360;
    const g = canvas.getContext('2d');
    let n = 0;
    const draw = () => {
      n++;
      g.fillStyle = `hsl(${(n * 3) % 360} 60% 35%)`;
      g.fillRect(0, 0, 640, 360);
      g.fillStyle = '#fff';
      g.font = '48px sans-serif';
      g.fillText(`screen ${n}`, 40, 120);
      g.fillRect((n * 7) % 600, 200, 40, 40);
    };
    draw();
    this._canvasTimer = setInterval(draw, 66);
    const track = canvas.captureStream(15).getVideoTracks()[0];
    return track;
  },

  /** Runs an SDK call and returns {result} or {error: {code, message}}. */
  async call(method, ...args) {
    try {
      return { result: (await this.client[method](...args)) ?? null };
    } catch (e) {
      return { error: errorOf(e) };
    }
  },

  eventsNamed(name, filter = {}) {
    return this.events.filter((e) => e.name === name && Object.entries(filter).every(([k, v]) => e.detail[k] === v));
  },

  /** Remote tracks now surfaced: [{userId, kind, mid, readyState, muted}]. */
  tracks() {
    return this.remoteTracks.map((t) => ({ userId: t.userId, kind: t.kind, mid: t.mid, readyState: t.track.readyState, muted: t.track.muted }));
  },

  hasTrack(userId, kind) {
    return this.remoteTracks.some((t) => t.userId === userId && t.kind === kind);
  },

  /** Per remote track: its receiver's inbound-rtp statistics. */
  async receiveStats() {
    const pc = this.client && this.client.subscriberConnection;
    const out = [];
    if (!pc) return out;
    const byMid = new Map(pc.getTransceivers().filter((t) => t.mid !== null).map((t) => [t.mid, t]));
    for (const t of this.remoteTracks) {
      const tr = byMid.get(t.mid);
      let inbound = null;
      if (tr) {
        const report = await tr.receiver.getStats();
        report.forEach((s) => {
          if (s.type === 'inbound-rtp') {
            inbound = {
              ssrc: s.ssrc, packetsReceived: s.packetsReceived, packetsLost: s.packetsLost, bytesReceived: s.bytesReceived,
              framesDecoded: s.framesDecoded, keyFramesDecoded: s.keyFramesDecoded, frameWidth: s.frameWidth, frameHeight: s.frameHeight,
              totalSamplesReceived: s.totalSamplesReceived, audioLevel: s.audioLevel, codecId: s.codecId, nackCount: s.nackCount, pliCount: s.pliCount,
              firCount: s.firCount, framesReceived: s.framesReceived, framesDropped: s.framesDropped, freezeCount: s.freezeCount,
              totalFreezesDuration: s.totalFreezesDuration, jitterBufferDelay: s.jitterBufferDelay,
            };
          }
        });
      }
      out.push({ userId: t.userId, kind: t.kind, mid: t.mid, inbound });
    }
    return out;
  },

  /**
   * RTP timestamps of the packets arriving on one remote track, sampled every 20 ms for `ms`
   * (getSynchronizationSources): shows how the SFU rewrites timestamps, e.g. across a layer switch.
   */
  async rtpTimestamps(userId, kind, ms = 1000) {
    const t = this.remoteTracks.find((x) => x.userId === userId && x.kind === kind);
    const pc = this.client && this.client.subscriberConnection;
    const tr = t && pc && pc.getTransceivers().find((x) => x.mid === t.mid);
    if (!tr) return [];
    const seen = [];
    const end = Date.now() + ms;
    while (Date.now() < end) {
      for (const src of tr.receiver.getSynchronizationSources()) {
        const last = seen[seen.length - 1];
        if (!last || last.rtpTimestamp !== src.rtpTimestamp) seen.push({ at: Math.round(src.timestamp), source: src.source, rtpTimestamp: src.rtpTimestamp });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return seen;
  },

  /** outbound-rtp entries of the publishing connection (one per simulcast layer). */
  async outboundRtp() {
    const all = await statsOf(this.client && this.client.publisherConnection);
    return (all || [])
      .filter((s) => s.type === 'outbound-rtp')
      .map((s) => ({ kind: s.kind, mid: s.mid, rid: s.rid, ssrc: s.ssrc, width: s.frameWidth, height: s.frameHeight, fps: s.framesPerSecond, bytesSent: s.bytesSent, targetBitrate: s.targetBitrate, qualityLimitationReason: s.qualityLimitationReason }));
  },

  /** inbound-rtp entries of the subscribing connection (all of them, mapped or not). */
  async inboundRtp() {
    const all = await statsOf(this.client && this.client.subscriberConnection);
    return (all || []).filter((s) => s.type === 'inbound-rtp').map((s) => ({ kind: s.kind, mid: s.mid, ssrc: s.ssrc, packetsReceived: s.packetsReceived }));
  },

  /** DTLS/SRTP and ICE facts of both connections' transports. */
  async transportInfo() {
    const out = {};
    for (const [name, pc] of [['publisher', this.client.publisherConnection], ['subscriber', this.client.subscriberConnection]]) {
      const all = await statsOf(pc);
      if (!all) continue;
      const transport = all.find((s) => s.type === 'transport');
      const pair = transport && all.find((s) => s.id === transport.selectedCandidatePairId);
      const remote = pair && all.find((s) => s.id === pair.remoteCandidateId);
      out[name] = {
        connectionState: pc.connectionState,
        iceConnectionState: pc.iceConnectionState,
        dtlsState: transport && transport.dtlsState,
        srtpCipher: transport && transport.srtpCipher,
        dtlsCipher: transport && transport.dtlsCipher,
        tlsVersion: transport && transport.tlsVersion,
        dtlsRole: transport && transport.dtlsRole,
        remoteCandidate: remote ? `${remote.address || remote.ip}:${remote.port} ${remote.candidateType} ${remote.protocol}` : null,
      };
    }
    return out;
  },

  /** Everything useful when a test fails. */
  async diagnose() {
    const c = this.client;
    const pcInfo = (pc) =>
      pc && {
        connectionState: pc.connectionState,
        iceConnectionState: pc.iceConnectionState,
        signalingState: pc.signalingState,
        transceivers: pc.getTransceivers().map((t) => ({ mid: t.mid, direction: t.direction, currentDirection: t.currentDirection, track: t.receiver.track && t.receiver.track.kind })),
      };
    let transport = null;
    try {
      transport = c ? await this.transportInfo() : null;
    } catch (e) {
      transport = String(e);
    }
    return {
      userId: c && c.userId,
      role: c && c.roleName,
      connected: c && c.connected,
      publisher: c && pcInfo(c.publisherConnection),
      subscriber: c && pcInfo(c.subscriberConnection),
      transport,
      tracks: this.tracks(),
      events: this.events.slice(-60),
      lastOfferSdp: this.lastOfferSdp,
      publisherLocalSdp: c && c.publisherConnection && c.publisherConnection.localDescription && c.publisherConnection.localDescription.sdp,
      publisherRemoteSdp: c && c.publisherConnection && c.publisherConnection.remoteDescription && c.publisherConnection.remoteDescription.sdp,
    };
  },
};

window.T = T;
