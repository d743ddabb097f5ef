// MQTT.js against the real broker: every scenario over TCP and WebSockets, with MQTT 3.1.1 and MQTT 5.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WAIT_MS, connect, startBroker } from '../broker.mjs';

let broker;
before(async () => {
  broker = await startBroker();
});
after(() => broker.stop());

const transports = ['tcp', 'ws'];
const versions = [
  { protocolVersion: 4, name: '3.1.1' },
  { protocolVersion: 5, name: '5' },
];

for (const transport of transports) {
  for (const { protocolVersion, name } of versions) {
    describe(`${transport}, MQTT ${name}`, () => {
      const url = () => broker[transport];
      // Client ids and topics unique per combination, so the combinations never see each other's traffic.
      const tag = `${transport}-${protocolVersion}`;
      const open = (id, options = {}) => connect(url(), { protocolVersion, clientId: `${tag}-${id}`, ...options });
      // A persistent session: Clean Session 0 (3.1.1), or Clean Start 0 with a Session Expiry Interval (5).
      const persistent =
        protocolVersion === 5 ? { clean: false, properties: { sessionExpiryInterval: 60 } } : { clean: false };

      it('connects: CONNACK accepted, no session present [MQTT-3.2.2-2]', async () => {
        const { client, connack } = await open('connect');
        assert.equal(connack.sessionPresent, false);
        if (protocolVersion === 5) assert.equal(connack.reasonCode, 0);
        else assert.equal(connack.returnCode, 0);
        await client.endAsync();
      });

      it('subscribes and delivers QoS 0, 1 and 2 at the QoS published [MQTT-3.8.4-8]', async () => {
        const sub = await open('qos-sub');
        const grants = await sub.client.subscribeAsync(`${tag}/qos/#`, { qos: 2 });
        assert.deepEqual(
          grants.map((g) => g.qos),
          [2],
        );
        const pub = await open('qos-pub');
        for (const qos of [0, 1, 2]) {
          await pub.client.publishAsync(`${tag}/qos/${qos}`, `qos${qos}`, { qos });
        }
        const got = await sub.inbox.take(3);
        const byQos = got.map((m) => [m.packet.qos, m.payload]).sort();
        assert.deepEqual(byQos, [
          [0, 'qos0'],
          [1, 'qos1'],
          [2, 'qos2'],
        ]);
        assert.ok(await sub.inbox.quiet(300), 'QoS 2 is delivered exactly once');
        await Promise.all([sub.client.endAsync(), pub.client.endAsync()]);
      });

      it('keeps a retained message for later subscribers and clears it with an empty payload [MQTT-3.3.1-5] [MQTT-3.3.1-6]', async () => {
        const topic = `${tag}/retained`;
        const pub = await open('ret-pub');
        await pub.client.publishAsync(topic, 'kept', { qos: 1, retain: true });
        const first = await open('ret-sub1');
        await first.client.subscribeAsync(topic, { qos: 1 });
        const [message] = await first.inbox.take(1);
        assert.equal(message.payload, 'kept');
        assert.equal(message.packet.retain, true, 'sent because of a new subscription: RETAIN set [MQTT-3.3.1-8] (3.1.1)');
        await pub.client.publishAsync(topic, '', { qos: 1, retain: true });
        const second = await open('ret-sub2');
        await second.client.subscribeAsync(topic, { qos: 1 });
        assert.ok(await second.inbox.quiet(500), 'a cleared retained message is not sent');
        await Promise.all([pub.client.endAsync(), first.client.endAsync(), second.client.endAsync()]);
      });

      it('publishes the will when the connection drops, not after a DISCONNECT [MQTT-3.1.2-8] [MQTT-3.1.2-10]', async () => {
        const topic = `${tag}/will`;
        const watcher = await open('will-watcher');
        await watcher.client.subscribeAsync(topic, { qos: 1 });
        const will = { topic, payload: Buffer.from('gone'), qos: 1, retain: false };
        const polite = await open('will-polite', { will });
        await polite.client.endAsync();
        assert.ok(await watcher.inbox.quiet(500), 'no will after a normal DISCONNECT');
        const crashing = await open('will-crash', { will });
        crashing.client.stream.destroy();
        const [message] = await watcher.inbox.take(1);
        assert.equal(message.payload, 'gone');
        crashing.client.end(true);
        await watcher.client.endAsync();
      });

      it('resumes a persistent session: Session Present, and messages queued while offline arrive [MQTT-4.4.0-1]', async () => {
        const topic = `${tag}/resume`;
        const first = await open('resume', { ...persistent });
        await first.client.subscribeAsync(topic, { qos: 1 });
        await first.client.endAsync();
        const pub = await open('resume-pub');
        await pub.client.publishAsync(topic, 'one', { qos: 1 });
        await pub.client.publishAsync(topic, 'two', { qos: 1 });
        const again = await open('resume', { ...persistent });
        assert.equal(again.connack.sessionPresent, true, '[MQTT-3.2.2-3]');
        const got = await again.inbox.take(2);
        assert.deepEqual(
          got.map((m) => [m.payload, m.packet.qos]),
          [
            ['one', 1],
            ['two', 1],
          ],
          'in order, at QoS 1',
        );
        // Ending the session: a clean connect finds none.
        await again.client.endAsync();
        const clean = await open('resume', { clean: true });
        assert.equal(clean.connack.sessionPresent, false);
        await Promise.all([clean.client.endAsync(), pub.client.endAsync()]);
      });
    });
  }
}

// One cross-version check: an MQTT 5 publisher's message reaches an MQTT 3.1.1 subscriber over the other transport.
describe('mixed', () => {
  it('MQTT 5 over WebSockets to MQTT 3.1.1 over TCP', async () => {
    const sub = await connect(broker.tcp, { protocolVersion: 4, clientId: 'mixed-sub' });
    await sub.client.subscribeAsync('mixed/t', { qos: 1 });
    const pub = await connect(broker.ws, { protocolVersion: 5, clientId: 'mixed-pub' });
    await pub.client.publishAsync('mixed/t', 'across', { qos: 1, properties: { userProperties: { a: 'b' } } });
    const [message] = await sub.inbox.take(1, WAIT_MS);
    assert.equal(message.payload, 'across');
    await Promise.all([sub.client.endAsync(), pub.client.endAsync()]);
  });
});
