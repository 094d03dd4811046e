// The demo page, driven like a person would: fill the form, click, look at the tiles.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, withSession, waitInPage, WAIT_MS } from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('demo');
  browser = await launchBrowser('demo');
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

async function joinViaForm(page, { user, room, role = 'anchor' }) {
  await page.fill('#sdk-app-id', '1400000001');
  await page.fill('#room-id', String(room));
  await page.fill('#user-id', user);
  await page.selectOption('#role', role);
  await page.click('#join');
  await page.waitForSelector('#status[data-state="joined"]', { timeout: WAIT_MS }).catch(async (e) => {
    const err = await page.textContent('#error');
    throw new Error(`${user} did not join: ${err || e.message}`);
  });
}

/** Whether the `<video>` matched by `selector` is playing frames (its time advances, it has a size). */
async function expectPlaying(page, selector, what) {
  await waitInPage(
    page,
    what,
    async (sel) => {
      const v = document.querySelector(sel);
      if (!v || v.hidden || !v.srcObject || v.videoWidth === 0) return false;
      const t0 = v.currentTime;
      await new Promise((r) => setTimeout(r, 300));
      return v.currentTime > t0 ? { w: v.videoWidth, h: v.videoHeight } : false;
    },
    selector,
  );
}

test('demo page: two users see and hear each other, role switch, error line, exit', async (t) => {
  await withSession(t, browser, server, async (s) => {
    const alice = await s.open('alice');
    const bob = await s.open('bob');
    assert.equal(await alice.getAttribute('body', 'data-ready'), '1');

    await joinViaForm(alice, { user: 'alice', room: 3001 });
    await joinViaForm(bob, { user: 'bob', room: 3001 });
    await expectPlaying(alice, '#local-video', 'alice: local preview');

    // Each sees the other's tile, with live video and an audio element.
    await expectPlaying(alice, '.tile[data-user="bob"] video[data-kind="video"]', "alice: bob's video playing");
    await expectPlaying(bob, '.tile[data-user="alice"] video[data-kind="video"]', "bob: alice's video playing");
    for (const [page, other] of [[alice, 'bob'], [bob, 'alice']]) {
      await waitInPage(page, `audio element of ${other}`, (u) => {
        const a = document.querySelector(`.tile[data-user="${u}"] audio[data-kind="audio"]`);
        return !!(a && a.srcObject && a.srcObject.getAudioTracks().length === 1 && !a.paused);
      }, other);
    }
    assert.equal(await alice.locator('.tile.remote').count(), 1);

    // Bob becomes audience: his video disappears from alice's page, the tile stays.
    await bob.selectOption('#new-role', 'audience');
    await bob.click('#switch-role');
    await waitInPage(bob, 'bob: role audience', () => document.querySelector('#room-info').dataset.role === 'audience');
    await waitInPage(alice, "alice: bob's video gone, tile marked audience", () => {
      const tile = document.querySelector('.tile[data-user="bob"]');
      const v = tile && tile.querySelector('video[data-kind="video"]');
      return !!tile && tile.dataset.role === 'audience' && v.hidden && !v.srcObject && !tile.querySelector('audio');
    });
    assert.equal(await bob.getAttribute('#camera', 'data-state'), 'off');

    // As audience, starting the camera fails and the error line shows the code.
    await bob.click('#camera');
    await waitInPage(bob, 'error line with -3343', () => {
      const e = document.querySelector('#error');
      return !e.hidden && e.dataset.code === '-3343' && e.textContent.includes('-3343');
    });
    t.diagnostic(`bob's error line: ${await bob.textContent('#error')}`);

    // Bob still sees alice while audience.
    await expectPlaying(bob, '.tile[data-user="alice"] video[data-kind="video"]', "bob (audience): alice's video");

    // Bob exits: his tile disappears at alice's.
    await bob.click('#exit');
    await waitInPage(bob, 'bob: left', () => document.querySelector('#status').dataset.state === 'idle');
    await waitInPage(alice, "alice: bob's tile removed", () => !document.querySelector('.tile[data-user="bob"]'));
  });
});

test('demo page: a bad UserID shows the server error on the error line', async (t) => {
  await withSession(t, browser, server, async (s) => {
    const page = await s.open('baduser');
    await page.fill('#room-id', '3002');
    await page.fill('#user-id', '12345'); // digits only: not a valid UserID
    await page.click('#join');
    await waitInPage(page, 'an error on the error line', () => {
      const e = document.querySelector('#error');
      return !e.hidden && e.textContent.length > 0 && e.dataset.code;
    });
    const code = await page.getAttribute('#error', 'data-code');
    t.diagnostic(`error line: ${await page.textContent('#error')}`);
    // The dev endpoint refuses the UserID (HTTP 400) or the server does (-3319).
    assert.ok(['-400', '-3319'].includes(code), `code ${code}`);
    assert.equal(await page.getAttribute('#status', 'data-state'), 'idle');
    assert.equal(await page.isEnabled('#join'), true);
  });
});
