// The demo page's logic: a thin UI over fanout.js. Stable hooks for tests and scripts:
//   #join, #exit, #camera, #mic, #screen, #new-role + #switch-role, #error (data-code),
//   #status (data-state), #local-video, .tile[data-user="<id>"] with video[data-kind="video"],
//   video[data-kind="sub_video"], audio[data-kind="audio"], button[data-action="layer"].
// Query parameters prefill the form: ?sdk_app_id=..&room=..&user=..&role=..&autojoin=1

import { FanoutClient, FanoutError, fetchDevUserSig } from '/fanout.js';

const $ = (sel) => document.querySelector(sel);

/** @type {FanoutClient|null} */
let client = null;
const local = { audio: null, video: null, screen: null };

// ------------------------------------------------------------------------------------------------
// Status, errors, log

function setStatus(state, text) {
  const el = $('#status');
  el.dataset.state = state;
  el.textContent = text;
}

function showError(err, context) {
  const el = $('#error');
  const code = err instanceof FanoutError || (err && typeof err.code === 'number') ? err.code : 'ERR';
  const msg = err && err.message ? err.message : String(err);
  el.dataset.code = String(code);
  el.textContent = `${context ? `${context}: ` : ''}error ${code}: ${msg}`;
  el.hidden = false;
  log(`error ${code} (${context || 'unknown'}): ${msg}`);
}

function clearError() {
  const el = $('#error');
  el.hidden = true;
  el.textContent = '';
  delete el.dataset.code;
}

function log(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  const ol = $('#log');
  ol.prepend(li);
  while (ol.children.length > 200) ol.lastChild.remove();
}

/** Runs an action; failures land in the error line. */
async function guarded(context, fn) {
  clearError();
  try {
    return await fn();
  } catch (e) {
    showError(e, context);
    return undefined;
  }
}

// ------------------------------------------------------------------------------------------------
// Remote tiles

function tileOf(userId, create = true) {
  let tile = document.querySelector(`.tile.remote[data-user="${CSS.escape(userId)}"]`);
  if (!tile && create) {
    tile = $('#remote-tile').content.firstElementChild.cloneNode(true);
    tile.dataset.user = userId;
    tile.querySelector('.name').textContent = userId;
    tile.querySelector('[data-action="layer"]').addEventListener('click', (e) => toggleLayer(userId, e.currentTarget));
    $('#tiles').append(tile);
  }
  return tile;
}

function setTileRole(userId, roleName) {
  const tile = tileOf(userId);
  tile.dataset.role = roleName || '';
  tile.querySelector('.role').textContent = roleName || '';
}

function refreshTileStreams(userId) {
  const tile = tileOf(userId, false);
  const u = client && client.remoteUsers.get(userId);
  if (!tile) return;
  const kinds = u ? [...u.streams].sort() : [];
  tile.dataset.streams = kinds.join(' ');
  tile.querySelector('.streams').textContent = kinds.length ? `[${kinds.join(', ')}]` : '';
}

function removeTile(userId) {
  const tile = tileOf(userId, false);
  if (!tile) return;
  for (const m of tile.querySelectorAll('video, audio')) m.srcObject = null;
  tile.remove();
}

function attachRemote({ userId, kind, stream }) {
  const tile = tileOf(userId);
  if (kind === 'audio') {
    let audio = tile.querySelector('audio[data-kind="audio"]');
    if (!audio) {
      audio = document.createElement('audio');
      audio.dataset.kind = 'audio';
      audio.autoplay = true;
      tile.append(audio);
    }
    audio.srcObject = stream;
    audio.play().catch(() => {});
  } else {
    const video = tile.querySelector(`video[data-kind="${kind}"]`);
    video.srcObject = stream;
    video.hidden = false;
    video.play().catch(() => {});
  }
  updatePlaceholder(tile);
}

function detachRemote({ userId, kind }) {
  const tile = tileOf(userId, false);
  if (!tile) return;
  if (kind === 'audio') {
    tile.querySelector('audio[data-kind="audio"]')?.remove();
  } else {
    const video = tile.querySelector(`video[data-kind="${kind}"]`);
    video.srcObject = null;
    video.hidden = true;
  }
  updatePlaceholder(tile);
}

function updatePlaceholder(tile) {
  const anyVideo = [...tile.querySelectorAll('video')].some((v) => !v.hidden);
  tile.querySelector('.placeholder').hidden = anyVideo;
}

async function toggleLayer(userId, button) {
  const next = button.dataset.layer === 'high' ? 'low' : 'high';
  await guarded('set_subscription', async () => {
    await client.setSubscription(userId, 'video', true, next);
    button.dataset.layer = next;
    button.textContent = next === 'high' ? 'Small stream' : 'Big stream';
  });
}

// ------------------------------------------------------------------------------------------------
// Local media

function showLocal() {
  const v = $('#local-video');
  v.srcObject = local.video ? new MediaStream([local.video]) : null;
  const s = $('#local-screen');
  s.srcObject = local.screen ? new MediaStream([local.screen]) : null;
  s.hidden = !local.screen;
  setButton('#camera', !!local.video, 'Stop camera', 'Start camera');
  setButton('#mic', !!local.audio, 'Stop microphone', 'Start microphone');
  setButton('#screen', !!local.screen, 'Stop sharing', 'Share screen');
}

function setButton(sel, on, onText, offText) {
  const b = $(sel);
  b.dataset.state = on ? 'on' : 'off';
  b.textContent = on ? onText : offText;
}

function stopLocal(which) {
  for (const k of which) {
    if (local[k]) local[k].stop();
    local[k] = null;
  }
  showLocal();
}

async function toggleCamera() {
  if (local.video) {
    await guarded('unpublish video', () => client.unpublish('video'));
    stopLocal(['video']);
    return;
  }
  await guarded('camera', async () => {
    const track = await client.startCamera();
    try {
      await client.publish({ video: track }, { simulcast: $('#simulcast').checked });
    } catch (e) {
      track.stop();
      throw e;
    }
    local.video = track;
    showLocal();
  });
}

async function toggleMic() {
  if (local.audio) {
    await guarded('unpublish audio', () => client.unpublish('audio'));
    stopLocal(['audio']);
    return;
  }
  await guarded('microphone', async () => {
    const track = await client.startMicrophone();
    try {
      await client.publish({ audio: track });
    } catch (e) {
      track.stop();
      throw e;
    }
    local.audio = track;
    showLocal();
  });
}

async function toggleScreen() {
  if (local.screen) {
    await guarded('unpublish screen', () => client.unpublish('sub_video'));
    stopLocal(['screen']);
    return;
  }
  await guarded('screen share', async () => {
    const track = await client.startScreenShare();
    try {
      await client.publish({ screen: track });
    } catch (e) {
      track.stop();
      throw e;
    }
    local.screen = track;
    // The browser's "Stop sharing" bar ends the track.
    track.addEventListener('ended', () => {
      if (local.screen === track) toggleScreen();
    });
    showLocal();
  });
}

// ------------------------------------------------------------------------------------------------
// Joining and leaving

function wireClient(c) {
  c.addEventListener('remote-track', (e) => {
    log(`track from ${e.detail.userId}: ${e.detail.kind}`);
    attachRemote(e.detail);
  });
  c.addEventListener('remote-track-removed', (e) => {
    log(`track gone from ${e.detail.userId}: ${e.detail.kind}`);
    detachRemote(e.detail);
  });
  c.addEventListener('user-entered', (e) => {
    log(`${e.detail.user_id} entered as ${e.detail.role_name}`);
    setTileRole(e.detail.user_id, e.detail.role_name);
  });
  c.addEventListener('user-exited', (e) => {
    log(`${e.detail.user_id} left (${e.detail.reason})`);
    removeTile(e.detail.user_id);
  });
  c.addEventListener('role-changed', (e) => {
    log(`${e.detail.user_id} is now ${e.detail.role_name}`);
    setTileRole(e.detail.user_id, e.detail.role_name);
  });
  for (const name of ['stream-added', 'stream-removed']) {
    c.addEventListener(name, (e) => {
      log(`${name.replace('-', ' ')}: ${e.detail.user_id} ${e.detail.kind}`);
      tileOf(e.detail.user_id);
      refreshTileStreams(e.detail.user_id);
      if (name === 'stream-removed') detachRemote({ userId: e.detail.user_id, kind: e.detail.kind });
    });
  }
  c.addEventListener('limit-exceeded', (e) => {
    showError({ code: 'LIMIT', message: `${e.detail.kind}: ${e.detail.reason}` }, 'limit exceeded');
  });
  c.addEventListener('active-speakers', (e) => {
    for (const t of document.querySelectorAll('.tile.remote')) {
      t.classList.toggle('speaking', e.detail.user_ids.includes(t.dataset.user));
    }
  });
  c.addEventListener('kicked', (e) => {
    showError({ code: `kicked ${e.detail.reason}`, message: ['', 'removed by the admin', 'room dismissed', 'entered elsewhere'][e.detail.reason] || 'kicked' }, 'kicked');
    leftRoom();
  });
  c.addEventListener('connection-state', (e) => {
    log(`${e.detail.target} connection: ${e.detail.state} (ICE ${e.detail.iceState})`);
    if (e.detail.state === 'failed') showError({ code: 'ICE', message: `${e.detail.target} connection failed` }, 'media');
  });
  c.addEventListener('error', (e) => showError(e.detail.error, e.detail.context));
  c.addEventListener('disconnected', (e) => {
    log(`signalling closed (${e.detail.code} ${e.detail.reason || ''})`);
    if (client === c) {
      if (e.detail.code !== 1000) showError({ code: e.detail.code, message: `signalling closed: ${e.detail.reason || 'no reason'}` }, 'connection');
      leftRoom();
    }
  });
}

async function join(ev) {
  ev.preventDefault();
  if (client) return;
  const joinBtn = $('#join');
  joinBtn.disabled = true;
  const sdkAppId = Number($('#sdk-app-id').value.trim());
  const room = $('#room-id').value.trim();
  const userId = $('#user-id').value.trim();
  const roleName = $('#role').value;
  const c = new FanoutClient();
  const ok = await guarded('join', async () => {
    setStatus('connecting', 'getting a UserSig…');
    const userSig = await fetchDevUserSig(sdkAppId, userId);
    setStatus('connecting', 'connecting…');
    wireClient(c);
    client = c;
    await c.connect();
    const roomFields = /^\d+$/.test(room) ? { roomId: Number(room) } : { strRoomId: room };
    const reply = await c.enterRoom({ sdkAppId, userId, userSig, roleName, ...roomFields });
    const roomName = reply.room.room_id !== undefined ? reply.room.room_id : JSON.stringify(reply.room.str_room_id);
    $('#room-info').textContent = `room ${roomName} (owner ${reply.room.owner}) as ${reply.role_name}${reply.role_fallback ? ' (fallback)' : ''}`;
    $('#room-info').dataset.role = reply.role_name;
    $('#new-role').value = reply.role_name === 'audience' ? 'anchor' : 'audience';
    $('#local-name').textContent = userId;
    $('#local-tile').hidden = false;
    $('#local-tile').dataset.user = userId;
    for (const u of reply.users) {
      setTileRole(u.user_id, u.role_name);
      refreshTileStreams(u.user_id);
    }
    setStatus('joined', `in room ${roomName}`);
    $('#join-form').classList.add('joined');
    for (const el of $('#join-form').elements) el.disabled = true;
    $('#controls').hidden = false;
    return true;
  });
  if (!ok) {
    if (client === c) client = null;
    c.disconnect();
    setStatus('idle', 'not connected');
    joinBtn.disabled = false;
    return;
  }
  if ($('#auto-publish').checked && client.limits && client.limits.can_publish) {
    await toggleCamera();
    await toggleMic();
  }
}

function leftRoom() {
  stopLocal(['audio', 'video', 'screen']);
  for (const t of [...document.querySelectorAll('.tile.remote')]) removeTile(t.dataset.user);
  $('#local-tile').hidden = true;
  $('#controls').hidden = true;
  $('#join-form').classList.remove('joined');
  for (const el of $('#join-form').elements) el.disabled = false;
  $('#room-info').textContent = '';
  setStatus('idle', 'not connected');
  const c = client;
  client = null;
  if (c && c.connected) c.disconnect();
}

async function exit() {
  if (!client) return;
  await guarded('exit', () => client.exitRoom());
  leftRoom();
}

async function switchRole() {
  const roleName = $('#new-role').value;
  await guarded('switch role', async () => {
    const reply = await client.switchRole(roleName);
    log(`switched to ${reply.role_name}`);
    $('#room-info').dataset.role = reply.role_name;
    $('#room-info').textContent = $('#room-info').textContent.replace(/ as .*$/, ` as ${reply.role_name}`);
    $('#new-role').value = reply.role_name === 'audience' ? 'anchor' : 'audience';
    if (!reply.limits.can_publish) stopLocal(['audio', 'video', 'screen']);
  });
}

// ------------------------------------------------------------------------------------------------
// Start

function init() {
  const q = new URLSearchParams(location.search);
  if (q.get('sdk_app_id')) $('#sdk-app-id').value = q.get('sdk_app_id');
  if (q.get('room')) $('#room-id').value = q.get('room');
  $('#user-id').value = q.get('user') || `user_${Math.random().toString(36).slice(2, 8)}`;
  if (q.get('role')) $('#role').value = q.get('role');
  if (q.get('publish') === '0') $('#auto-publish').checked = false;
  $('#join-form').addEventListener('submit', join);
  $('#exit').addEventListener('click', exit);
  $('#camera').addEventListener('click', () => client && toggleCamera());
  $('#mic').addEventListener('click', () => client && toggleMic());
  $('#screen').addEventListener('click', () => client && toggleScreen());
  $('#switch-role').addEventListener('click', () => client && switchRole());
  document.body.dataset.ready = '1';
  if (q.get('autojoin') === '1') $('#join').click();
}

init();
