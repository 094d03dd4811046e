// Two network namespaces joined by a veth pair, for tests whose browsers gather no loopback ICE
// candidates (Firefox): the server lives in one, the browsers (and the Node process driving them) in
// the other, so the browsers reach the server over a real interface with a default route.
//
//   fanout-ff-srv-<pid>   veth ffs<pid> 10.77.0.1/24, lo up
//   fanout-ff-cli-<pid>   veth ffc<pid> 10.77.0.2/24, lo up, default route via 10.77.0.1
//
// Needs root and `ip` (iproute2). The names carry the creating process's pid, so concurrent runs do
// not collide (the addresses are private to each pair) and leftovers of a crashed run are known by
// their dead pid: `removeStale()` deletes them (and stops what still runs inside them).

import { execFileSync } from 'node:child_process';

export const SRV_IP = '10.77.0.1';
export const CLI_IP = '10.77.0.2';
const NAME_RE = /^fanout-ff-(srv|cli)-(\d+)$/;

function ip(args) {
  try {
    return execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10000 }).toString();
  } catch (e) {
    const err = e.stderr ? e.stderr.toString().trim() : e.message;
    throw new Error(`ip ${args.join(' ')}: ${err}`, { cause: e });
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** Names of this test's namespaces that exist now. */
export function listNamespaces() {
  return ip(['netns', 'list'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n) => n && NAME_RE.test(n));
}

/** Stops every process left in namespace `name` (SIGKILL), then deletes it; never throws. */
export function removeNamespace(name) {
  try {
    for (const pid of ip(['netns', 'pids', name]).split(/\s+/).filter(Boolean).map(Number)) {
      if (pid !== process.pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  } catch {
    /* no such namespace */
  }
  try {
    ip(['netns', 'del', name]);
  } catch (e) {
    if (!/No such file/.test(e.message)) process.stderr.write(`warning: ${e.message}\n`);
  }
}

/** Deletes namespaces of earlier runs whose creating process is gone. Returns their names. */
export function removeStale() {
  const removed = [];
  for (const name of listNamespaces()) {
    const pid = Number(NAME_RE.exec(name)[2]);
    if (pid === process.pid || !alive(pid)) {
      removeNamespace(name);
      removed.push(name);
    }
  }
  return removed;
}

/**
 * Creates the server and client namespaces (deleting stale ones first). The result is plain data
 * (it crosses into the client namespace as JSON) plus `remove()`, which is also run when the process
 * exits or is interrupted.
 */
export function createNamespaces() {
  const stale = removeStale();
  const tag = String(process.pid);
  const ns = { srv: `fanout-ff-srv-${tag}`, cli: `fanout-ff-cli-${tag}`, srvIp: SRV_IP, cliIp: CLI_IP, stale };
  const srvIf = `ffs${tag}`;
  const cliIf = `ffc${tag}`;
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    removeNamespace(ns.cli);
    removeNamespace(ns.srv);
  };
  const onSignal = (sig) => {
    remove();
    process.kill(process.pid, sig);
  };
  process.once('exit', remove);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    ip(['netns', 'add', ns.srv]);
    ip(['netns', 'add', ns.cli]);
    ip(['link', 'add', srvIf, 'netns', ns.srv, 'type', 'veth', 'peer', 'name', cliIf, 'netns', ns.cli]);
    ip(['-n', ns.srv, 'link', 'set', 'lo', 'up']);
    ip(['-n', ns.srv, 'addr', 'add', `${SRV_IP}/24`, 'dev', srvIf]);
    ip(['-n', ns.srv, 'link', 'set', srvIf, 'up']);
    ip(['-n', ns.cli, 'link', 'set', 'lo', 'up']);
    ip(['-n', ns.cli, 'addr', 'add', `${CLI_IP}/24`, 'dev', cliIf]);
    ip(['-n', ns.cli, 'link', 'set', cliIf, 'up']);
    // Firefox gathers no candidate at all without a default route.
    ip(['-n', ns.cli, 'route', 'add', 'default', 'via', SRV_IP]);
  } catch (e) {
    remove();
    throw e;
  }
  return {
    ...ns,
    remove() {
      remove();
      process.off('exit', remove);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** Why namespaces cannot be made here, or null when they can (root and `ip` present). */
export function netnsUnavailable() {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root (network namespaces)';
  try {
    ip(['netns', 'list']);
  } catch (e) {
    return `\`ip netns\` does not work (install iproute2): ${e.message}`;
  }
  return null;
}
