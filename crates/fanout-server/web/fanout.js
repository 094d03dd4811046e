// fanout.js: the browser SDK of Fanout, a real-time SFU with TRTC's room model.
//
// One ES module, no dependencies, no build step. Served by the Fanout server at `/fanout.js`:
//
//   import { FanoutClient } from '/fanout.js';
//   const client = new FanoutClient();
//   client.addEventListener('remote-track', (e) => show(e.detail.userId, e.detail.kind, e.detail.stream));
//   await client.connect();                      // ws(s)://<this page's host>/v1/signal
//   await client.enterRoom({ sdkAppId: 1400000001, userId: 'alice', userSig, roomId: 1234 });
//   const cam = await client.startCamera();
//   const mic = await client.startMicrophone();
//   await client.publish({ video: cam, audio: mic });
//
// The wire protocol (docs/protocol.md) uses two RTCPeerConnections per participant: a publishing one
// (the client offers, `publish`) and a subscribing one (the server offers with the `offer` event, the
// client answers with `subscribe_answer`). This module hides both behind one object.

/**
 * Client-side error codes. Server errors keep the server's (negative) codes from docs/protocol.md,
 * e.g. -3343 privilege denied; these are the codes of failures that never reached the server.
 * @readonly
 * @enum {number}
 */
export const ClientErrorCode = Object.freeze({
  /** The WebSocket is not open (call `connect()` first, or it closed). */
  NOT_CONNECTED: -1,
  /** The server did not answer a request in time. */
  TIMEOUT: -2,
  /** The WebSocket closed while a request was waiting for its reply. */
  CONNECTION_CLOSED: -3,
  /** A WebRTC operation of the browser failed (createOffer, setRemoteDescription, ...). */
  WEBRTC: -4,
  /** The call is not valid in the client's current state (e.g. publish before enterRoom). */
  INVALID_STATE: -5,
  /** Bad arguments given to an SDK method. */
  INVALID_ARGUMENT: -6,
  /** getUserMedia / getDisplayMedia failed (no device, permission denied, ...). */
  DEVICE: -7,
});

/** Error codes of the server (docs/protocol.md), by name. @readonly @enum {number} */
export const ServerErrorCode = Object.freeze({
  MISSING_PARAM: -3316,
  UNKNOWN_APP: -3317,
  BAD_ROOM_ID: -3318,
  BAD_USER_ID: -3319,
  MALFORMED_USER_SIG: -3320,
  USER_SIG_REJECTED: -100018,
  PRIVATE_MAP_KEY_REJECTED: -100006,
  ROLE_NOT_FOUND: -3340,
  NOT_IN_ROOM: -3341,
  ALREADY_IN_ROOM: -3342,
  PRIVILEGE_DENIED: -3343,
  MALFORMED_REQUEST: -3344,
  QUOTA_EXCEEDED: -3345,
});

/**
 * A failed SDK call. `code` is the server's error code (docs/protocol.md) or a `ClientErrorCode`.
 */
export class FanoutError extends Error {
  /**
   * @param {number} code
   * @param {string} message
   * @param {{op?: string, cause?: unknown, sdp?: string}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'FanoutError';
    /** @type {number} */
    this.code = code;
    /** The signalling op that failed, when the failure came from a request. @type {string|undefined} */
    this.op = extra.op;
    /** The SDP the browser refused, for WebRTC failures. @type {string|undefined} */
    this.sdp = extra.sdp;
    if (extra.cause !== undefined) this.cause = extra.cause;
  }

  toString() {
    return `FanoutError ${this.code}: ${this.message}`;
  }
}

/** Stream kinds of the protocol. @typedef {'audio'|'video'|'sub_video'} StreamKind */

/**
 * A remote track as the `remote-track` event reports it.
 * @typedef {object} RemoteTrack
 * @property {string} userId   the publisher's UserID
 * @property {StreamKind} kind
 * @property {MediaStreamTrack} track
 * @property {MediaStream} stream a stream holding just this track (attach it to a media element)
 * @property {string} mid        the subscribing connection's media section carrying it
 */

/**
 * Options of `enterRoom`.
 * @typedef {object} EnterRoomOptions
 * @property {number} sdkAppId
 * @property {string} userId
 * @property {string} userSig
 * @property {number} [roomId]       numeric room (give this or strRoomId)
 * @property {string} [strRoomId]    string room
 * @property {string} [roleName]     e.g. "anchor", "audience"
 * @property {string} [privateMapKey]
 */

const KINDS = /** @type {const} */ (['audio', 'video', 'sub_video']);
const PING_INTERVAL_MS = 5000;
const DEFAULT_REQUEST_TIMEOUT_MS = 15000;

/**
 * The signalling URL of the server that served this page: `ws(s)://<host>/v1/signal`.
 * @returns {string}
 */
export function defaultSignalUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/v1/signal`;
}

/**
 * Asks a development server for a UserSig (`POST /v1/dev/usersig`; only apps with `dev_mode = true`).
 * Never use this in production: real UserSigs come from your own backend.
 * @param {number} sdkAppId
 * @param {string} userId
 * @param {string} [baseUrl] the server's HTTP origin (default: this page's)
 * @returns {Promise<string>}
 */
export async function fetchDevUserSig(sdkAppId, userId, baseUrl = '') {
  let res;
  try {
    res = await fetch(`${baseUrl}/v1/dev/usersig`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sdk_app_id: Number(sdkAppId), user_id: userId }),
    });
  } catch (e) {
    throw new FanoutError(ClientErrorCode.NOT_CONNECTED, `cannot reach /v1/dev/usersig: ${e}`, { cause: e });
  }
  let body = {};
  try {
    body = await res.json();
  } catch {
    /* not JSON: keep the status */
  }
  if (!res.ok || typeof body.user_sig !== 'string') {
    throw new FanoutError(-res.status, `/v1/dev/usersig: HTTP ${res.status}: ${body.error || res.statusText}`);
  }
  return body.user_sig;
}

/**
 * Simulcast layers for a camera track, lowest first (rids the server maps to layers: q < h < f).
 * Browsers drop layers the resolution cannot carry (Chromium sends two layers below 960x540), so
 * smaller captures get two layers, q and f.
 * @param {MediaStreamTrack} track
 * @returns {RTCRtpEncodingParameters[]}
 */
export function simulcastEncodings(track) {
  const { height = 0 } = track.getSettings ? track.getSettings() : {};
  if (height >= 540) {
    return [
      { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
      { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
      { rid: 'f', maxBitrate: 1_200_000 },
    ];
  }
  return [
    { rid: 'q', scaleResolutionDownBy: 2, maxBitrate: 200_000 },
    { rid: 'f', maxBitrate: 900_000 },
  ];
}

/** `user_entered` -> `user-entered`. */
function kebab(name) {
  return String(name).replace(/_/g, '-');
}

/**
 * A promise queue: each task starts after the previous one settled, so negotiations never overlap.
 */
class SerialQueue {
  constructor() {
    /** @type {Promise<unknown>} */
    this._tail = Promise.resolve();
  }
  /**
   * @template T
   * @param {() => Promise<T>} task
   * @returns {Promise<T>}
   */
  run(task) {
    const p = this._tail.then(task, task);
    this._tail = p.catch(() => {});
    return p;
  }
}

/**
 * The Fanout client: one signalling WebSocket, one publishing and one subscribing RTCPeerConnection.
 *
 * Events (all `CustomEvent`s; read `event.detail`):
 * - `remote-track` {@link RemoteTrack}: a remote user's track started arriving.
 * - `remote-track-removed` {userId, kind, track, stream, mid}: it is no longer received.
 * - server events, renamed with dashes, detail = the event's fields: `user-entered` {user_id,
 *   role_name}, `user-exited` {user_id, reason}, `role-changed` {user_id, role_name}, `kicked`
 *   {reason}, `stream-added` {user_id, kind}, `stream-removed` {user_id, kind}, `limit-exceeded`
 *   {kind, reason}, `active-speakers` {user_ids}, `stream-paused` {user_id, kind, reason:
 *   'bandwidth'} (a received stream stopped: this connection's estimated bandwidth does not fit even
 *   its lowest layer; show a placeholder, not a frozen picture), `stream-resumed` {user_id, kind},
 *   `layers-needed` {kind, rids} (dynacast: the simulcast layers of a published stream some
 *   subscriber needs; the SDK turns the others off, see `publish`'s `dynacast` option),
 *   `offer` {sdp, tracks} (handled by the SDK; for information).
 * - `server-event` {event, ...}: every server event, raw.
 * - `connection-state` {target: 'publisher'|'subscriber', state, iceState}: RTCPeerConnection states.
 * - `disconnected` {code, reason}: the WebSocket closed (the client left its room).
 * - `error` {error: FanoutError, context}: a background failure (negotiating a server offer, keep-alive).
 */
export class FanoutClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {number} [options.requestTimeoutMs=15000] how long a request may wait for its reply
   * @param {boolean} [options.sendCandidates=true] trickle the browser's ICE candidates to the server
   *   (the server is ICE-lite and learns the client's address from its connectivity checks anyway)
   * @param {RTCConfiguration} [options.rtcConfig] extra RTCPeerConnection configuration
   */
  constructor(options = {}) {
    super();
    this.options = { requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS, sendCandidates: true, ...options };
    /** @type {WebSocket|null} */
    this._ws = null;
    this._nextReq = 1;
    /** @type {Map<number, {resolve: Function, reject: Function, op: string, timer: any}>} */
    this._pending = new Map();
    this._pingTimer = null;
    /** The `enter_room` reply while in a room, else null. */
    this.room = null;
    /** This client's UserID while in a room. @type {string|null} */
    this.userId = null;
    /** The role in effect (`enter_room` / `switch_role` replies). @type {string|null} */
    this.roleName = null;
    /** The role's limits (`can_publish`, `max_video_kbps`, ...). */
    this.limits = null;
    /**
     * Everyone else in the room: UserID -> {roleName, streams: Set<StreamKind>}.
     * @type {Map<string, {roleName: string, streams: Set<string>}>}
     */
    this.remoteUsers = new Map();
    this._resetMedia();
  }

  _resetMedia() {
    /** @type {RTCPeerConnection|null} */
    this._pub = null;
    /** kind -> RTCRtpTransceiver of the publishing connection. @type {Map<string, RTCRtpTransceiver>} */
    this._pubTransceivers = new Map();
    /** kind -> the published track (absent when not published). @type {Map<string, MediaStreamTrack>} */
    this._published = new Map();
    /** kind -> the simulcast rids sent now, once dynacast changed them. @type {Map<string, string[]>} */
    this.activeLayers = new Map();
    this._pubNegotiated = false;
    this._pubCandidates = [];
    this._pubQueue = new SerialQueue();
    /** @type {RTCPeerConnection|null} */
    this._sub = null;
    this._subNegotiated = false;
    this._subCandidates = [];
    this._subQueue = new SerialQueue();
    /** mid -> the RemoteTrack currently surfaced for it. @type {Map<string, RemoteTrack>} */
    this._remoteTracks = new Map();
    this._localStream = new MediaStream();
    this._epoch = (this._epoch || 0) + 1;
  }

  // ---------------------------------------------------------------------------------------------
  // Signalling

  /**
   * Opens the signalling WebSocket.
   * @param {string} [url] default: `ws(s)://<this page's host>/v1/signal`
   * @returns {Promise<void>}
   */
  connect(url = defaultSignalUrl()) {
    if (this._ws && this._ws.readyState <= WebSocket.OPEN) {
      return Promise.reject(new FanoutError(ClientErrorCode.INVALID_STATE, 'already connected'));
    }
    return new Promise((resolve, reject) => {
      let opened = false;
      const ws = new WebSocket(url);
      this._ws = ws;
      ws.onopen = () => {
        opened = true;
        this._pingTimer = setInterval(() => {
          this._request('ping', {}).catch((error) => this._emit('error', { error, context: 'ping' }));
        }, PING_INTERVAL_MS);
        resolve();
      };
      ws.onmessage = (m) => this._onMessage(m.data);
      ws.onerror = () => {
        if (!opened) reject(new FanoutError(ClientErrorCode.NOT_CONNECTED, `cannot connect to ${url}`));
      };
      ws.onclose = (e) => {
        if (!opened) reject(new FanoutError(ClientErrorCode.NOT_CONNECTED, `cannot connect to ${url}`));
        if (this._ws === ws) this._onClose(e.code, e.reason);
      };
    });
  }

  /** Whether the signalling WebSocket is open. */
  get connected() {
    return !!this._ws && this._ws.readyState === WebSocket.OPEN;
  }

  /** Closes everything: leaves the room (without waiting), closes the WebSocket and both connections. */
  disconnect() {
    const ws = this._ws;
    if (ws) {
      ws.close(1000, 'bye');
      this._onClose(1000, 'closed by the client');
    }
  }

  _onClose(code, reason) {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
    this._ws = null;
    for (const [, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new FanoutError(ClientErrorCode.CONNECTION_CLOSED, `connection closed (${code} ${reason || ''})`.trim(), { op: p.op }));
    }
    this._pending.clear();
    const wasInRoom = !!this.room;
    this._leaveLocally();
    this._emit('disconnected', { code, reason, wasInRoom });
  }

  /**
   * Sends one request and waits for its reply.
   * @param {string} op
   * @param {object} fields
   * @returns {Promise<any>} the reply without `res` and `ok`
   */
  _request(op, fields = {}) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new FanoutError(ClientErrorCode.NOT_CONNECTED, 'not connected; call connect() first', { op }));
    }
    const req = this._nextReq++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(req);
        reject(new FanoutError(ClientErrorCode.TIMEOUT, `no reply to \`${op}\` within ${this.options.requestTimeoutMs} ms`, { op }));
      }, this.options.requestTimeoutMs);
      this._pending.set(req, { resolve, reject, op, timer });
      ws.send(JSON.stringify({ req, op, ...fields }));
    });
  }

  _onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    if ('res' in msg) {
      const p = this._pending.get(msg.res);
      if (!p) return; // timed out already, or res: null for a frame we never sent
      this._pending.delete(msg.res);
      clearTimeout(p.timer);
      const { res, ok, code, error, ...body } = msg;
      if (ok) p.resolve(body);
      else p.reject(new FanoutError(code, error || `\`${p.op}\` failed`, { op: p.op }));
      return;
    }
    if (typeof msg.event === 'string') this._onEvent(msg);
  }

  _onEvent(msg) {
    const { event, ...fields } = msg;
    switch (event) {
      case 'user_entered':
        this.remoteUsers.set(fields.user_id, { roleName: fields.role_name, streams: new Set() });
        break;
      case 'user_exited':
        this.remoteUsers.delete(fields.user_id);
        break;
      case 'role_changed': {
        const u = this.remoteUsers.get(fields.user_id);
        if (u) u.roleName = fields.role_name;
        break;
      }
      case 'stream_added': {
        const u = this.remoteUsers.get(fields.user_id);
        if (u) u.streams.add(fields.kind);
        else this.remoteUsers.set(fields.user_id, { roleName: '', streams: new Set([fields.kind]) });
        break;
      }
      case 'stream_removed':
        this.remoteUsers.get(fields.user_id)?.streams.delete(fields.kind);
        break;
      case 'kicked':
        this._leaveLocally();
        break;
      case 'layers_needed':
        this._pubQueue
          .run(() => this._applyLayersNeeded(fields.kind, fields.rids || []))
          .catch((error) => this._emit('error', { error, context: 'dynacast' }));
        break;
      case 'offer': {
        const epoch = this._epoch;
        this._subQueue
          .run(() => (epoch === this._epoch ? this._answerOffer(fields.sdp, fields.tracks || []) : undefined))
          .catch((error) => this._emit('error', { error, context: 'subscribe' }));
        break;
      }
      default:
        break;
    }
    this._emit('server-event', msg);
    this._emit(kebab(event), fields);
  }

  _emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  // ---------------------------------------------------------------------------------------------
  // Rooms

  /**
   * Enters (and if needed creates) a room.
   * @param {EnterRoomOptions} opts
   * @returns {Promise<{room: object, role_name: string, role_fallback: boolean, limits: object,
   *   privileges: number, users: Array<{user_id: string, role_name: string, streams: string[]}>}>}
   */
  async enterRoom(opts) {
    const { sdkAppId, userId, userSig, roomId, strRoomId, roleName, privateMapKey } = opts || {};
    const fields = { sdk_app_id: Number(sdkAppId), user_id: userId, user_sig: userSig };
    if (roomId !== undefined && roomId !== null && roomId !== '') fields.room_id = Number(roomId);
    if (strRoomId !== undefined && strRoomId !== null && strRoomId !== '') fields.str_room_id = String(strRoomId);
    if (roleName) fields.role_name = roleName;
    if (privateMapKey) fields.private_map_key = privateMapKey;
    const reply = await this._request('enter_room', fields);
    this._closePeers();
    this.room = reply;
    this.userId = userId;
    this.roleName = reply.role_name;
    this.limits = reply.limits;
    this.remoteUsers = new Map(
      (reply.users || []).map((u) => [u.user_id, { roleName: u.role_name, streams: new Set(u.streams || []) }]),
    );
    return reply;
  }

  /**
   * Leaves the room; both peer connections close. Local tracks are not stopped (they are yours).
   * @returns {Promise<void>}
   */
  async exitRoom() {
    try {
      await this._request('exit_room');
    } finally {
      this._leaveLocally();
    }
  }

  /** Forgets the room and closes both peer connections. */
  _leaveLocally() {
    this._closePeers();
    this.room = null;
    this.userId = null;
    this.roleName = null;
    this.limits = null;
    this.remoteUsers = new Map();
  }

  _closePeers() {
    const removed = [...this._remoteTracks.values()];
    try {
      this._pub?.close();
    } catch {
      /* already closed */
    }
    try {
      this._sub?.close();
    } catch {
      /* already closed */
    }
    this._resetMedia();
    for (const t of removed) this._emit('remote-track-removed', t);
  }

  /**
   * Switches role (e.g. "anchor" <-> "audience"). When the new role cannot publish, the server stops
   * forwarding this user's streams and the SDK stops sending them (the tracks stay yours, unstopped).
   * @param {string} roleName
   * @param {string} [privateMapKey]
   * @returns {Promise<{role_name: string, limits: object, privileges: number}>}
   */
  async switchRole(roleName, privateMapKey) {
    const fields = { role_name: roleName };
    if (privateMapKey) fields.private_map_key = privateMapKey;
    const reply = await this._request('switch_role', fields);
    this.roleName = reply.role_name;
    this.limits = reply.limits;
    if (reply.limits && reply.limits.can_publish === false) {
      // The server already stopped forwarding our streams; stop sending them. The transceivers
      // stay (inactive, without a track) so the connection keeps its transport: publishing again
      // after switching back reuses them. No renegotiation: the server refuses `publish` now.
      await this._pubQueue.run(async () => {
        for (const tr of this._pubTransceivers.values()) {
          await tr.sender.replaceTrack(null).catch(() => {});
          try {
            tr.direction = 'inactive';
          } catch {
            /* closed */
          }
        }
        this._published.clear();
      });
    }
    return reply;
  }

  /**
   * Chooses whether (and which layer of) a remote user's stream is received.
   * @param {string} userId
   * @param {StreamKind} kind
   * @param {boolean} enabled
   * @param {'high'|'low'} [layer] TRTC's big / small stream (needs the publisher to use simulcast)
   */
  async setSubscription(userId, kind, enabled, layer) {
    const fields = { user_id: userId, kind, enabled: !!enabled };
    if (layer) fields.layer = layer;
    await this._request('set_subscription', fields);
  }

  /**
   * Says how a received stream is shown, so that the server sends no more than it needs: the
   * largest size it is rendered at (the server forwards the smallest simulcast layer that covers
   * it; 0 or absent: no limit), whether it is paused (hidden: nothing is sent, the track stays
   * negotiated, and resuming is immediate), and its priority when bandwidth is short (0-255,
   * higher first; screen shares and active speakers come first among equals).
   * @param {string} userId
   * @param {StreamKind} kind
   * @param {{maxWidth?: number, maxHeight?: number, paused?: boolean, priority?: number}} constraints
   */
  async setVideoConstraints(userId, kind, { maxWidth = 0, maxHeight = 0, paused = false, priority = 0 } = {}) {
    await this._request('set_subscription', {
      user_id: userId,
      kind,
      enabled: true,
      max_width: Math.max(0, Math.round(maxWidth)),
      max_height: Math.max(0, Math.round(maxHeight)),
      paused: !!paused,
      priority: Math.max(0, Math.min(255, Math.round(priority))),
    });
  }

  /**
   * Adaptive stream, as LiveKit calls it: keeps the server told how big `element` (the `<video>`
   * showing a remote video) is drawn, and pauses the stream while the element is hidden (not
   * intersecting the viewport, or `display: none`), so that no 720p is sent to a 160-pixel tile and
   * nothing to a tab nobody looks at. Updates are debounced (300 ms). Returns a function that stops
   * watching (and lifts the constraints).
   * @param {HTMLVideoElement} element
   * @param {string} userId
   * @param {StreamKind} [kind='video']
   * @param {{priority?: number}} [options]
   * @returns {() => Promise<void>}
   */
  adaptiveStream(element, userId, kind = 'video', { priority = 0 } = {}) {
    let visible = true;
    let timer = null;
    let last = '';
    const push = () => {
      timer = null;
      const ratio = (typeof window !== 'undefined' && window.devicePixelRatio) || 1;
      const width = Math.round(element.clientWidth * ratio);
      const height = Math.round(element.clientHeight * ratio);
      const paused = !visible || width === 0 || height === 0;
      const key = `${width}x${height}:${paused}`;
      if (key === last) return;
      last = key;
      this.setVideoConstraints(userId, kind, { maxWidth: width, maxHeight: height, paused, priority }).catch((error) =>
        this._emit('error', { error, context: 'adaptive stream' }),
      );
    };
    const schedule = () => {
      if (timer === null) timer = setTimeout(push, 300);
    };
    const resize = typeof ResizeObserver === 'function' ? new ResizeObserver(schedule) : null;
    const seen =
      typeof IntersectionObserver === 'function'
        ? new IntersectionObserver((entries) => {
            visible = entries.some((e) => e.isIntersecting);
            schedule();
          })
        : null;
    resize?.observe(element);
    seen?.observe(element);
    schedule();
    return async () => {
      resize?.disconnect();
      seen?.disconnect();
      if (timer !== null) clearTimeout(timer);
      await this.setVideoConstraints(userId, kind, { priority });
    };
  }

  /** Keep-alive / round trip. The SDK pings every 5 s by itself. */
  async ping() {
    await this._request('ping');
  }

  // ---------------------------------------------------------------------------------------------
  // Local media

  /**
   * Opens the camera.
   * @param {MediaTrackConstraints|boolean} [constraints]
   * @returns {Promise<MediaStreamTrack>}
   */
  async startCamera(constraints = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } }) {
    return this._getUserMedia({ video: constraints }, 'video');
  }

  /**
   * Opens the microphone.
   * @param {MediaTrackConstraints|boolean} [constraints]
   * @returns {Promise<MediaStreamTrack>}
   */
  async startMicrophone(constraints = true) {
    return this._getUserMedia({ audio: constraints }, 'audio');
  }

  /**
   * Captures the screen (getDisplayMedia). Publish the track as `screen` (kind `sub_video`).
   * @param {DisplayMediaStreamOptions} [options]
   * @returns {Promise<MediaStreamTrack>}
   */
  async startScreenShare(options = { video: { frameRate: { ideal: 15 } }, audio: false }) {
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia(options);
      const [track] = stream.getVideoTracks();
      track.contentHint = 'detail';
      return track;
    } catch (e) {
      throw new FanoutError(ClientErrorCode.DEVICE, `screen capture failed: ${e && e.message ? e.message : e}`, { cause: e });
    }
  }

  async _getUserMedia(constraints, what) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      return what === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
    } catch (e) {
      throw new FanoutError(ClientErrorCode.DEVICE, `cannot open the ${what === 'audio' ? 'microphone' : 'camera'}: ${e && e.message ? e.message : e}`, { cause: e });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Publishing

  /** The publishing RTCPeerConnection (null before the first publish), e.g. for `getStats()`. */
  get publisherConnection() {
    return this._pub;
  }

  /** The subscribing RTCPeerConnection (null before the server's first offer). */
  get subscriberConnection() {
    return this._sub;
  }

  /** Kinds published now, with their tracks. @returns {Map<StreamKind, MediaStreamTrack>} */
  get publishedTracks() {
    return new Map(this._published);
  }

  /** Tracks received now, by mid. @returns {RemoteTrack[]} */
  get remoteTracks() {
    return [...this._remoteTracks.values()];
  }

  /**
   * Publishes (or replaces) local tracks. Kinds not given keep their current state. Each call
   * renegotiates the publishing connection (`publish` op) with every kind now published.
   * @param {object} tracks
   * @param {MediaStreamTrack} [tracks.audio] microphone
   * @param {MediaStreamTrack} [tracks.video] camera (TRTC's main stream)
   * @param {MediaStreamTrack} [tracks.screen] screen share (TRTC's sub stream, kind `sub_video`)
   * @param {object} [options]
   * @param {boolean} [options.simulcast=false] send the camera in several layers (rids q, h, f; see
   *   `simulcastEncodings`) so receivers can pick the big or the small stream with
   *   `setSubscription(..., layer)`; applies when the camera's transceiver is created (first publish)
   * @param {boolean} [options.dynacast=true] with simulcast, stop encoding the layers the server
   *   says no subscriber needs (`layers-needed` events) and start them again when it names them:
   *   saves the uplink and the CPU of layers no one watches
   * @returns {Promise<void>}
   */
  async publish(tracks = {}, options = {}) {
    if (options.dynacast !== undefined) this._dynacast = options.dynacast !== false;
    const wanted = [];
    for (const [key, kind] of [['audio', 'audio'], ['video', 'video'], ['screen', 'sub_video'], ['sub_video', 'sub_video']]) {
      const t = tracks[key];
      if (t === undefined || t === null) continue;
      if (!(t instanceof MediaStreamTrack)) {
        throw new FanoutError(ClientErrorCode.INVALID_ARGUMENT, `publish: \`${key}\` must be a MediaStreamTrack`);
      }
      if ((kind === 'audio') !== (t.kind === 'audio')) {
        throw new FanoutError(ClientErrorCode.INVALID_ARGUMENT, `publish: \`${key}\` must be a${kind === 'audio' ? 'n audio' : ' video'} track`);
      }
      wanted.push([kind, t]);
    }
    if (!this.room) throw new FanoutError(ClientErrorCode.INVALID_STATE, 'publish: enter a room first');
    return this._pubQueue.run(async () => {
      const pc = this._ensurePublisher();
      const undo = [];
      for (const [kind, track] of wanted) {
        let tr = this._pubTransceivers.get(kind);
        if (tr && (tr.stopped || tr.currentDirection === 'stopped')) {
          // Rejected by an earlier answer: the kind needs a new media section.
          this._pubTransceivers.delete(kind);
          tr = undefined;
        }
        if (!tr) {
          const init = { direction: 'sendonly', streams: [this._localStream] };
          if (kind === 'video' && options.simulcast) init.sendEncodings = simulcastEncodings(track);
          tr = pc.addTransceiver(track, init);
          this._pubTransceivers.set(kind, tr);
          undo.push(() => {
            try {
              tr.stop();
            } catch {
              /* closed */
            }
            this._pubTransceivers.delete(kind);
          });
        } else {
          const before = tr.sender.track;
          const dir = tr.direction;
          await tr.sender.replaceTrack(track);
          tr.direction = 'sendonly';
          undo.push(async () => {
            await tr.sender.replaceTrack(before).catch(() => {});
            tr.direction = dir;
          });
        }
        if (kind === 'sub_video' && !track.contentHint) track.contentHint = 'detail';
      }
      const previous = new Map(this._published);
      for (const [kind, track] of wanted) this._published.set(kind, track);
      try {
        await this._negotiatePublisher();
      } catch (e) {
        this._published = previous;
        for (const u of undo.reverse()) await u();
        throw e;
      }
    });
  }

  /**
   * Stops publishing one kind (the track itself is not stopped).
   * @param {StreamKind|'screen'} kind
   * @returns {Promise<void>}
   */
  async unpublish(kind) {
    if (kind === 'screen') kind = 'sub_video';
    if (!KINDS.includes(kind)) throw new FanoutError(ClientErrorCode.INVALID_ARGUMENT, `unpublish: unknown kind \`${kind}\``);
    return this._pubQueue.run(async () => {
      const tr = this._pubTransceivers.get(kind);
      if (!tr || !this._published.has(kind)) return;
      this._published.delete(kind);
      await tr.sender.replaceTrack(null).catch(() => {});
      tr.direction = 'inactive';
      await this._negotiatePublisher();
    });
  }

  /**
   * Dynacast: turns the simulcast encodings of `kind` on when their rid is in `rids`, off when
   * not (the lowest layer is always named). Runs inside `_pubQueue`.
   */
  async _applyLayersNeeded(kind, rids) {
    if (this._dynacast === false) return;
    const tr = this._pubTransceivers.get(kind);
    if (!tr || tr.stopped || !tr.sender) return;
    const params = tr.sender.getParameters();
    const encodings = params.encodings || [];
    if (encodings.length < 2 || !encodings.some((e) => e.rid && rids.includes(e.rid))) return;
    let changed = false;
    for (const e of encodings) {
      const active = !e.rid || rids.includes(e.rid);
      if (e.active !== active) {
        e.active = active;
        changed = true;
      }
    }
    if (changed) await tr.sender.setParameters(params);
    this.activeLayers.set(kind, encodings.filter((e) => e.active).map((e) => e.rid));
  }

  _ensurePublisher() {
    if (this._pub) return this._pub;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', ...(this.options.rtcConfig || {}) });
    this._pub = pc;
    this._pubNegotiated = false;
    this._watchPeer(pc, 'publisher');
    return pc;
  }

  /** One offer/answer round of the publishing connection. Runs inside `_pubQueue`. */
  async _negotiatePublisher() {
    const pc = this._pub;
    const epoch = this._epoch;
    let offer;
    try {
      offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
    } catch (e) {
      throw new FanoutError(ClientErrorCode.WEBRTC, `publish: cannot create the offer: ${e.message || e}`, { cause: e });
    }
    const list = [];
    for (const [kind, tr] of this._pubTransceivers) {
      if (this._published.has(kind) && tr.mid !== null) list.push({ mid: tr.mid, kind });
    }
    let reply;
    try {
      reply = await this._request('publish', { sdp: pc.localDescription.sdp, tracks: list });
    } catch (e) {
      if (epoch === this._epoch && this._pub === pc) {
        if (!this._pubNegotiated) {
          // The server has no publishing connection for us: start over next time.
          pc.close();
          this._pub = null;
          this._pubTransceivers.clear();
          this._published.clear();
        } else {
          await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
        }
      }
      throw e;
    }
    if (epoch !== this._epoch) return;
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
    } catch (e) {
      // Back to stable so that the next publish can negotiate again.
      await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      throw new FanoutError(ClientErrorCode.WEBRTC, `publish: the server's answer was refused: ${e.message || e}`, { cause: e, sdp: reply.sdp });
    }
    this._pubNegotiated = true;
    this._flushCandidates('publisher');
  }

  // ---------------------------------------------------------------------------------------------
  // Subscribing

  /** Applies one server offer to the subscribing connection. Runs inside `_subQueue`. */
  async _answerOffer(sdp, tracks) {
    if (!this._sub) {
      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', ...(this.options.rtcConfig || {}) });
      this._sub = pc;
      this._subNegotiated = false;
      this._watchPeer(pc, 'subscriber');
    }
    const pc = this._sub;
    const epoch = this._epoch;
    try {
      await pc.setRemoteDescription({ type: 'offer', sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
    } catch (e) {
      throw new FanoutError(ClientErrorCode.WEBRTC, `cannot apply the server's offer: ${e.message || e}`, { cause: e, sdp });
    }
    if (epoch !== this._epoch) return;
    this._syncRemoteTracks(tracks);
    await this._request('subscribe_answer', { sdp: pc.localDescription.sdp });
    this._subNegotiated = true;
    this._flushCandidates('subscriber');
  }

  /** Brings the surfaced remote tracks in line with the latest offer's track list. */
  _syncRemoteTracks(tracks) {
    const pc = this._sub;
    const byMid = new Map();
    for (const tr of pc.getTransceivers()) {
      if (tr.mid !== null) byMid.set(tr.mid, tr);
    }
    const now = new Map();
    for (const t of tracks) {
      const tr = byMid.get(String(t.mid));
      if (!tr || tr.stopped) continue;
      const dir = tr.currentDirection;
      if (dir !== 'recvonly' && dir !== 'sendrecv') continue;
      now.set(String(t.mid), { userId: t.user_id, kind: t.kind, track: tr.receiver.track });
    }
    for (const [mid, old] of [...this._remoteTracks]) {
      const cur = now.get(mid);
      if (!cur || cur.userId !== old.userId || cur.kind !== old.kind || cur.track !== old.track) {
        this._remoteTracks.delete(mid);
        this._emit('remote-track-removed', old);
      }
    }
    for (const [mid, cur] of now) {
      if (this._remoteTracks.has(mid)) continue;
      const rt = { ...cur, mid, stream: new MediaStream([cur.track]) };
      this._remoteTracks.set(mid, rt);
      this._emit('remote-track', rt);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Peer connection plumbing

  _watchPeer(pc, target) {
    const report = () =>
      this._emit('connection-state', { target, state: pc.connectionState, iceState: pc.iceConnectionState });
    pc.addEventListener('connectionstatechange', report);
    pc.addEventListener('iceconnectionstatechange', report);
    pc.addEventListener('icecandidate', (e) => {
      if (!this.options.sendCandidates || !e.candidate || !e.candidate.candidate) return;
      const c = e.candidate.candidate;
      // mDNS host names and TCP candidates are of no use to the server.
      if (/\.local\s/.test(c) || / tcp /i.test(c)) return;
      const list = target === 'publisher' ? this._pubCandidates : this._subCandidates;
      list.push(c);
      const ready = target === 'publisher' ? this._pubNegotiated : this._subNegotiated;
      const current = target === 'publisher' ? this._pub : this._sub;
      if (ready && current === pc) this._flushCandidates(target);
    });
  }

  _flushCandidates(target) {
    const list = target === 'publisher' ? this._pubCandidates : this._subCandidates;
    while (list.length) {
      const candidate = list.shift();
      this._request('ice_candidate', { target, candidate }).catch((error) =>
        this._emit('error', { error, context: `ice_candidate (${target})` }),
      );
    }
  }
}

export default FanoutClient;
