#!/usr/bin/env node
// The official Syncano JavaScript library (syncano 1.0.30 from npm,
// unchanged) against a running tidewire HTTP shim.
//
// Usage: node syncano_js.js HTTP_BASE ACCOUNT_KEY
//
// Creates a channel, polls it with the library's ChannelPoll (whose first
// request sends ?last_id=&room= and whose GETs carry a {} body), publishes
// through the library (payload sent as a JSON string), reads history and a
// channel list, and deletes the channel. Prints one line per check; exits
// non-zero on the first failure or after 30 s.
'use strict';
const Syncano = require('syncano');

const [base, key] = process.argv.slice(2);
const connection = Syncano({ baseUrl: base, accountKey: key });
const { Channel } = connection;
const props = { instanceName: 'default', name: 'legacyjs' };

function fail(e) {
  console.error('failed:', e && (e.stack || e.message || e));
  process.exit(1);
}
setTimeout(() => fail(new Error('timed out')), 30000).unref();

async function main() {
  const ch = await Channel({ instanceName: 'default', name: 'legacyjs', custom_publish: true }).save();
  if (ch.name !== 'legacyjs' || !ch.links) throw new Error('create: ' + JSON.stringify(ch));
  console.log('create ok');
  const got = await Channel.please().get(props);
  if (got.custom_publish !== true) throw new Error('get: ' + JSON.stringify(got));
  console.log('get ok');
  const list = await Channel.please().list({ instanceName: 'default' });
  if (!list.some((c) => c.name === 'legacyjs')) throw new Error('list: ' + JSON.stringify(list));
  console.log('list ok');

  const received = [];
  // poll() starts the library's poll loop itself.
  const poll = Channel.please().poll(props);
  const all = new Promise((resolve, reject) => {
    poll.on('message', (m) => {
      received.push(m);
      if (received.length === 3) resolve();
    });
    poll.on('error', reject);
  });
  await new Promise((r) => setTimeout(r, 500)); // the first poll parks: new messages only
  const sent = [];
  for (let n = 0; n < 3; n++) {
    const m = await Channel.please().publish(props, { n, text: 'hello' });
    if (!m.id || !m.payload || m.payload.n !== n) throw new Error('publish: ' + JSON.stringify(m));
    sent.push(m.id);
  }
  console.log('publish ok');
  await all;
  poll.stop();
  const ids = received.map((m) => m.id);
  if (JSON.stringify(ids) !== JSON.stringify(sent)) throw new Error('poll: ' + JSON.stringify(received));
  if (received.some((m) => m.action !== 'custom')) throw new Error('poll action: ' + JSON.stringify(received));
  console.log('poll ok');

  const hist = await Channel.please().history(props);
  const hids = (hist.objects || hist).map((m) => m.id);
  if (JSON.stringify(hids) !== JSON.stringify(sent.slice().reverse())) throw new Error('history: ' + JSON.stringify(hist));
  console.log('history ok');

  await Channel.please().delete(props);
  const after = await Channel.please().list({ instanceName: 'default' });
  if (after.some((c) => c.name === 'legacyjs')) throw new Error('deleted channel still listed');
  console.log('delete ok');
  process.exit(0);
}

main().catch(fail);
