// Real-time chat through the official `connectycube` SDK (6.1.2) over Parley's WebSocket
// listener: connect with a password and with a session token, a 1:1 message with an
// extension, the automatic delivered receipt, typing, ping, last activity, disconnect.
// Needs a running Parley: PARLEY_API_URL, PARLEY_APP_ID, PARLEY_AUTH_KEY, PARLEY_WS_URL
// (run.sh starts one and sets them).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Cube, APP_ID, PASSWORD, client, within, next } = require('./support');
const run = Date.now().toString(36);


const A = client();
const B = client();
const ids = {};
const tokens = {};

test('users sign up and open sessions', async () => {
  for (const [who, c] of [['alice', A], ['bob', B]]) {
    await within(c.createSession());
    const { user } = await within(c.users.signup({ login: `${who}_chat_${run}`, password: PASSWORD }));
    ids[who] = user.id;
    const session = await within(c.createSession({ login: `${who}_chat_${run}`, password: PASSWORD }));
    tokens[who] = session.token;
  }
});

test('chat.connect over WebSocket with the password', async () => {
  const ok = await within(A.chat.connect({ userId: ids.alice, password: PASSWORD }));
  assert.equal(ok, true);
  assert.equal(A.chat.isConnected, true);
});

test('chat.connect over WebSocket with the session token', async () => {
  const ok = await within(B.chat.connect({ userId: ids.bob, password: tokens.bob }));
  assert.equal(ok, true);
  assert.equal(B.chat.isConnected, true);
});

test('chat.connect with a wrong password is rejected with not-authorized', async () => {
  const C = client();
  try {
    await assert.rejects(within(C.chat.connect({ userId: ids.alice, password: 'wrong-password' })), (e) =>
      String(e && (e.condition || e.message || e)).includes('not-authorized'));
  } finally {
    try { C.chat.terminate(); } catch (_) { /* already closed */ }
  }
});

test('1:1 chat message with an extension reaches the other user, who confirms delivery', async () => {
  const received = next(B, 'onMessageListener');
  const delivered = next(A, 'onDeliveredStatusListener');
  const dialogId = '5f0c0c0c0c0c0c0c0c0c0c0c';
  const id = A.chat.send(ids.bob, {
    type: 'chat',
    body: 'hello bob',
    extension: { dialog_id: dialogId, custom_key: 'custom', nested: { a: 1 } },
    markable: 1,
  });
  const [from, msg] = await within(received);
  assert.equal(from, ids.alice);
  assert.equal(msg.id, id);
  assert.equal(msg.type, 'chat');
  assert.equal(msg.body, 'hello bob');
  assert.equal(msg.extension.custom_key, 'custom');
  assert.equal(msg.extension.nested.a, '1');
  assert.equal(msg.dialog_id, dialogId);
  const [messageId, dId, userId] = await within(delivered);
  assert.equal(messageId, id);
  assert.equal(dId, dialogId);
  assert.equal(userId, ids.bob);
});

test('typing notifications reach the other user', async () => {
  const typing = next(B, 'onMessageTypingListener');
  A.chat.sendIsTypingStatus(ids.bob);
  const [isTyping, userId] = await within(typing);
  assert.equal(isTyping, true);
  assert.equal(userId, ids.alice);
});

test('chat.ping is answered', async () => {
  await within(A.chat.ping());
});

test('getLastUserActivity says 0 seconds for an online user', async () => {
  const last = await within(A.chat.getLastUserActivity(ids.bob));
  assert.equal(last.userId, ids.bob);
  assert.equal(last.seconds, 0);
});

test('chat.disconnect closes both connections', async () => {
  await within(A.chat.disconnect());
  await within(B.chat.disconnect());
  assert.equal(A.chat.isConnected, false);
  assert.equal(B.chat.isConnected, false);
});
