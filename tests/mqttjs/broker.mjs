// The real mqtt-broker binary on ephemeral ports (one TCP and one WebSocket listener), and small promise helpers
// around MQTT.js, for the tests in test/.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';

export const WAIT_MS = 5000;
const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..', '..');

/** MQTT_BROKER_BIN, else the most recently built binary (a stale release build must not stand in for the code). */
function brokerBinary() {
  if (process.env.MQTT_BROKER_BIN) return process.env.MQTT_BROKER_BIN;
  const built = ['release', 'debug']
    .map((profile) => join(ROOT, 'target', profile, 'mqtt-broker'))
    .flatMap((path) => {
      try {
        return [{ path, mtime: statSync(path).mtimeMs }];
      } catch {
        return [];
      }
    });
  if (built.length === 0) throw new Error('no mqtt-broker binary: run cargo build --bin mqtt-broker first');
  return built.sort((a, b) => b.mtime - a.mtime)[0].path;
}

/** Starts the broker; resolves once it has logged both listeners' addresses. */
export async function startBroker() {
  const dir = mkdtempSync(join(tmpdir(), 'mqttjs-'));
  const config = join(dir, 'broker.toml');
  writeFileSync(
    config,
    [
      '[[listeners]]',
      'address = "127.0.0.1:0"',
      '',
      '[[listeners]]',
      'address = "127.0.0.1:0"',
      'protocol = "ws"',
      '',
    ].join('\n'),
  );
  const child = spawn(brokerBinary(), ['--config', config, '--data-dir', join(dir, 'data')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log = [];
  const addresses = await new Promise((resolvePromise, reject) => {
    const found = {};
    const timer = setTimeout(() => reject(new Error(`broker did not start: ${log.join('\n')}`)), 20000);
    let pending = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) {
        log.push(line);
        const match = line.match(/listening on (\S+) \((mqtt|ws)\b/);
        if (match) found[match[2]] = match[1];
        if (found.mqtt && found.ws) {
          clearTimeout(timer);
          resolvePromise(found);
        }
      }
    });
    child.on('exit', (code) => reject(new Error(`broker exited with ${code}: ${log.join('\n')}`)));
  });
  return {
    tcp: `mqtt://${addresses.mqtt}`,
    ws: `ws://${addresses.ws}/mqtt`,
    log,
    stop() {
      child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Every message a client receives, collected from the moment the client is made (messages that arrive in the same
 * read as the CONNACK are not missed).
 */
class Inbox {
  constructor(client) {
    this.queue = [];
    this.waiters = [];
    client.on('message', (topic, payload, packet) => {
      this.queue.push({ topic, payload: payload.toString(), packet });
      this.waiters = this.waiters.filter((wake) => !wake());
    });
  }

  /** Resolves with the next `count` messages; rejects if they do not all arrive within `timeoutMs`. */
  take(count, timeoutMs = WAIT_MS) {
    return new Promise((resolvePromise, reject) => {
      const ready = () => {
        if (this.queue.length < count) return false;
        clearTimeout(timer);
        resolvePromise(this.queue.splice(0, count));
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((wake) => wake !== ready);
        reject(new Error(`got ${this.queue.length} of ${count} messages: ${JSON.stringify(this.queue.map((m) => m.topic))}`));
      }, timeoutMs);
      if (!ready()) this.waiters.push(ready);
    });
  }

  /** Resolves true when nothing (more) arrives within `ms`. */
  async quiet(ms = 500) {
    await new Promise((r) => setTimeout(r, ms));
    return this.queue.length === 0;
  }
}

/** Connects and resolves with { client, connack, inbox }; rejects on an error or refusal. No automatic reconnects. */
export function connect(url, options) {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: WAIT_MS, ...options });
  const inbox = new Inbox(client);
  return new Promise((resolvePromise, reject) => {
    client.once('connect', (connack) => resolvePromise({ client, connack, inbox }));
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
  });
}
