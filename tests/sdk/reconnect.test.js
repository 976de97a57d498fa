// The official SDK's reconnect step (§7 step 18): the WebSocket drops under a connected client,
// the SDK reports `disconnected`, logs in again by itself (re-auth, re-bind) and reports
// `reconnected`; messages reach it again afterwards.
// Needs a running Parley: PARLEY_API_URL, PARLEY_APP_ID, PARLEY_AUTH_KEY, PARLEY_WS_URL.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { PASSWORD, sdkConfig, client, within, next: nextCall } = require('./support');

// This file runs in its own process, so its reconnect settings do not touch the other files.
const config = sdkConfig({ reconnect: { enable: true, timeInterval: 1 } });

const run = `rc${Date.now().toString(36)}`;

function next(c, name, ms) {
  return within(nextCall(c, name), ms);
}

async function online(who) {
  const c = client(config);
  await within(c.createSession());
  const login = `${run}_${who}`;
  const { user } = await within(c.users.signup({ login, password: PASSWORD }));
  await within(c.login({ login, password: PASSWORD }));
  assert.equal(await within(c.chat.connect({ userId: user.id, password: PASSWORD })), true);
  return { c, id: user.id };
}

let A, B;

after(async () => {
  for (const x of [A, B]) {
    try { await x.c.chat.disconnect(); } catch (_) { /* already closed */ }
  }
});

test('after the connection drops the SDK reconnects by itself and receives again', async () => {
  A = await online('alice');
  B = await online('bob');
  const disconnected = next(A.c, 'onDisconnectedListener');
  const reconnected = next(A.c, 'onReconnectListener', 15000);
  const transport = A.c.chat.xmppClient.socket;
  // Drop the underlying WebSocket abruptly, as a lost network or a restarted proxy would.
  if (transport.socket && typeof transport.socket.terminate === 'function') {
    transport.socket.terminate();
  } else {
    transport.end();
  }
  await disconnected;
  await reconnected;
  assert.equal(A.c.chat.isConnected, true);
  const got = next(A.c, 'onMessageListener');
  B.c.chat.send(A.id, { type: 'chat', body: 'after reconnect' });
  const [from, msg] = await got;
  assert.equal(from, B.id);
  assert.equal(msg.body, 'after reconnect');
});
