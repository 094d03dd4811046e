// Shaped links for subscriber pages: a bridge on the host (10.77.1.1) and, per subscriber, a
// network namespace behind a veth pair whose host side is shaped with `tbf` (this kernel has no
// netem), and the stepped-link scenario of issue 10 sampled every 250 ms. Shared by
// bandwidth.test.mjs (Fanout) and janus-bandwidth.mjs (the same scenario on Janus VideoRoom), so
// that their figures come from the same links, steps and arithmetic.
//
//   bridge bwbr<pid> (host, 10.77.1.1)
//     port bwa<pid> (shaped) <-> bwap<pid> in fanout-bw-a-<pid> (10.77.1.2)
//     port bwb<pid> (shaped) <-> bwbp<pid> in fanout-bw-b-<pid> (10.77.1.3)
//
// Needs root and iproute2 (`ip`, `tc`).
import { execFileSync } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, sleep } from './helpers.mjs';
import { removeNamespace } from './netns.mjs';

const PID = process.pid;
export const HOST_IP = '10.77.1.1';
export const BRIDGE = `bwbr${PID}`;
export const LINKS = {
  a: { ns: `fanout-bw-a-${PID}`, host: `bwa${PID}`, peer: `bwap${PID}`, ip: '10.77.1.2' },
  b: { ns: `fanout-bw-b-${PID}`, host: `bwb${PID}`, peer: `bwbp${PID}`, ip: '10.77.1.3' },
};

/** Subscriber A's link: 3 Mbit/s -> 600 kbit/s -> 250 kbit/s -> 3 Mbit/s; `fits` is the
 * highest layer (frame height) that fits each step. */
export const STEPS = [
  { kbit: 3000, secs: 10, fits: 720 },
  { kbit: 600, secs: 16, fits: 360 },
  { kbit: 250, secs: 16, fits: 180 },
  { kbit: 3000, secs: 20, fits: 720 },
];

/** The highest layer of the SDK's simulcast (180p ~150, 360p ~500, 720p ~1200 kb/s of video
 * plus ~40 kb/s of audio) that fits `kbit` with ~15% to spare. */
function fitting(kbit) {
  if (kbit >= 1600) return 720;
  if (kbit >= 620) return 360;
  return 180;
}

/** Steps from `BANDWIDTH_STEPS` ("kbit:secs,kbit:secs,..."), e.g. "1000:60,600:60" for long
 * steady caps (layer switches per minute), or none. */
export function stepsFromEnv() {
  const v = process.env.BANDWIDTH_STEPS;
  if (!v) return null;
  return v.split(',').map((x) => {
    const [kbit, secs] = x.split(':').map(Number);
    if (!(kbit > 0 && secs > 0)) throw new Error(`BANDWIDTH_STEPS: bad step ${x}`);
    return { kbit, secs, fits: fitting(kbit) };
  });
}

export function run(cmd, args) {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10000 }).toString();
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr ? e.stderr.toString().trim() : e.message}`, { cause: e });
  }
}

/** Deletes namespaces of earlier runs whose process is gone. */
function removeStale() {
  for (const line of run('ip', ['netns', 'list']).split('\n')) {
    const m = /^(fanout-bw-[ab]-(\d+))/.exec(line.trim());
    if (!m) continue;
    let alive = true;
    try {
      process.kill(Number(m[2]), 0);
    } catch (e) {
      alive = e.code === 'EPERM';
    }
    if (!alive || Number(m[2]) === PID) removeNamespace(m[1]);
  }
}

export function createLinks() {
  removeStale();
  run('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
  run('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', BRIDGE]);
  run('ip', ['link', 'set', BRIDGE, 'up']);
  for (const l of Object.values(LINKS)) {
    run('ip', ['netns', 'add', l.ns]);
    run('ip', ['link', 'add', l.host, 'type', 'veth', 'peer', 'name', l.peer, 'netns', l.ns]);
    run('ip', ['link', 'set', l.host, 'master', BRIDGE]);
    run('ip', ['link', 'set', l.host, 'up']);
    run('ip', ['-n', l.ns, 'link', 'set', 'lo', 'up']);
    run('ip', ['-n', l.ns, 'addr', 'add', `${l.ip}/24`, 'dev', l.peer]);
    run('ip', ['-n', l.ns, 'link', 'set', l.peer, 'up']);
    run('ip', ['-n', l.ns, 'route', 'add', 'default', 'via', HOST_IP]);
  }
}

export function removeLinks() {
  try {
    run('ip', ['link', 'del', BRIDGE]);
  } catch {
    /* not made, or gone */
  }
  for (const l of Object.values(LINKS)) {
    try {
      run('ip', ['link', 'del', l.host]);
    } catch {
      /* gone with its namespace */
    }
    removeNamespace(l.ns);
  }
}

/** Shapes traffic toward a subscriber (its bridge port's egress): a token bucket of `kbit`,
 * 200 ms of queue (a home router's buffer is rarely shallower). */
export function shape(link, kbit) {
  const burst = Math.max(4000, Math.round((kbit * 1000) / 8 / 50)); // 20 ms of the rate, >= 4 kB
  run('tc', ['qdisc', 'replace', 'dev', link.host, 'root', 'tbf', 'rate', `${kbit}kbit`, 'burst', String(burst), 'latency', '200ms']);
}

/** Chromium inside subscriber `k`'s namespace: playwright talks to it over a pipe, which
 * `ip netns exec` keeps. */
export async function launchInNamespace(k, tmp, args) {
  const wrapper = path.join(tmp, `chromium-${k}`);
  await writeFile(wrapper, `#!/bin/sh\nexec ip netns exec ${LINKS[k].ns} ${CHROMIUM} "$@"\n`);
  await chmod(wrapper, 0o755);
  return chromium.launch({ executablePath: wrapper, headless: true, args, timeout: 30000 });
}

/**
 * Steps A's link through `steps`, sampling both subscribers every 250 ms. A sample is
 * `{ at, height, frames, freezes, freezeSecs, audioReceived, audioLost, paused }` (Chromium's
 * inbound-rtp statistics; `paused`: the server said the video is paused). Returns per step A's
 * figures, and how often B was at 720p.
 */
export async function stepLink(steps, sampleA, sampleB, log) {
  const figures = [];
  let bAtTop = 0;
  let bSamples = 0;
  const stepStarts = [];
  for (const step of steps) {
    shape(LINKS.a, step.kbit);
    const start = Date.now();
    stepStarts.push(start);
    const trace = [];
    const first = { a: await sampleA(), b: await sampleB() };
    let reached = null;
    let last = first;
    let longestStall = 0;
    let lastFrameAt = Date.now();
    // Changes of the decoded frame height (or of paused) after the first 5 s of the step: layer
    // switches at a steady cap.
    let switches = 0;
    while (Date.now() - start < step.secs * 1000) {
      await sleep(250);
      const now = { a: await sampleA(), b: await sampleB() };
      const fits = now.a.paused ? step.fits === 180 : now.a.height > 0 && now.a.height <= step.fits;
      const atTarget = step.fits === 720 ? now.a.height === 720 : fits;
      if (reached === null && atTarget) reached = (now.a.at - start) / 1000;
      if (now.a.frames > last.a.frames || now.a.paused) lastFrameAt = now.a.at;
      const layer = (x) => (x.paused ? 'paused' : x.height);
      if (now.a.at - start > 5000 && now.a.height > 0 && last.a.height > 0 && layer(now.a) !== layer(last.a)) switches += 1;
      longestStall = Math.max(longestStall, now.a.at - lastFrameAt);
      if (trace.length === 0 || now.a.at - trace[trace.length - 1].at >= 1000) {
        trace.push({ at: now.a.at, s: Math.round((now.a.at - start) / 1000), h: now.a.height, f: now.a.frames, p: now.a.paused });
      }
      bSamples += 1;
      if (now.b.height === 720) bAtTop += 1;
      last = now;
    }
    const audioReceived = last.a.audioReceived - first.a.audioReceived;
    const audioLost = Math.max(0, last.a.audioLost - first.a.audioLost);
    const fig = {
      kbit: step.kbit,
      reachedSecs: reached,
      height: last.a.height,
      paused: last.a.paused,
      framesPerSec: +((last.a.frames - first.a.frames) / step.secs).toFixed(1),
      audioPerSec: audioReceived / step.secs,
      audioLoss: audioLost / Math.max(1, audioReceived + audioLost),
      freezes: last.a.freezes - first.a.freezes,
      freezeSecs: +(last.a.freezeSecs - first.a.freezeSecs).toFixed(2),
      longestStallMs: longestStall,
      switchesAfter5s: switches,
      bFramesPerSec: +((last.b.frames - first.b.frames) / step.secs).toFixed(1),
      bFreezes: last.b.freezes - first.b.freezes,
    };
    figures.push(fig);
    log(`A at ${step.kbit} kbit/s: ${JSON.stringify(fig)}`);
    log(`  trace: ${trace.map((x) => `${x.s}s ${x.h}p f${x.f}${x.p ? ' paused' : ''}`).join(', ')}`);
  }
  return { figures, bAtTop, bSamples, stepStarts };
}
