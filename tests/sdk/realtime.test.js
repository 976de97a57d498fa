// Real-time 1:1 features through the official `connectycube` SDK (6.1.2): history of an XMPP
// message, read status, edit, delete, reactions, REST send_to_chat, system messages over XMPP
// and REST, and call signalling — the §7 acceptance steps beyond connecting.
// Needs a running Parley: PARLEY_API_URL, PARLEY_APP_ID, PARLEY_AUTH_KEY, PARLEY_WS_URL.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { PASSWORD, client, within, next: nextCall } = require('./support');

const run = `rt${Date.now().toString(36)}`;

/** The next call of listener `name` on `c.chat`, within 5 s. */
function next(c, name) {
  return within(nextCall(c, name));
}

async function online(who) {
  const c = client();
  await within(c.createSession());
  const login = `${run}_${who}`;
  const { user } = await within(c.users.signup({ login, password: PASSWORD }));
  await within(c.login({ login, password: PASSWORD }));
  assert.equal(await within(c.chat.connect({ userId: user.id, password: PASSWORD })), true);
  return { c, id: user.id };
}

let A, B, priv;
const s = {};

after(async () => {
  for (const x of [A, B]) {
    try { await x.c.chat.disconnect(); } catch (_) { /* already closed */ }
  }
});

test('setup: two connected users and their private dialog', async () => {
  A = await online('alice');
  B = await online('bob');
  priv = await within(A.c.chat.dialog.create({ type: 3, occupants_ids: [B.id] }));
});

test('a save_to_history message is in the REST history with the stanza id', async () => {
  const got = next(B.c, 'onMessageListener');
  s.id = A.c.chat.send(B.id, { type: 'chat', body: 'hi', markable: 1, extension: { save_to_history: 1, dialog_id: priv._id } });
  const [from, msg] = await got;
  assert.equal(from, A.id);
  assert.equal(msg.dialog_id, priv._id);
  assert.equal(msg.body, 'hi');
  const list = await within(A.c.chat.message.list({ chat_dialog_id: priv._id, sort_desc: 'date_sent' }));
  assert.equal(list.items[0]._id, s.id);
  const dialogs = await within(A.c.chat.dialog.list({}));
  assert.equal(dialogs.items.find((d) => d._id === priv._id).last_message_id, s.id);
});

test('read status over XMPP reaches the sender and the unread count drops', async () => {
  const before = await within(B.c.chat.message.unreadCount({ chat_dialog_ids: [priv._id] }));
  assert.equal(before[priv._id], 1);
  const got = next(A.c, 'onReadStatusListener');
  B.c.chat.sendReadStatus({ messageId: s.id, userId: A.id, dialogId: priv._id });
  const [messageId, dialogId, userId] = await got;
  assert.deepEqual([messageId, dialogId, userId], [s.id, priv._id, B.id]);
  await new Promise((r) => setTimeout(r, 200));
  const after = await within(B.c.chat.message.unreadCount({ chat_dialog_ids: [priv._id] }));
  assert.equal(after[priv._id], 0);
});

test('an edit reaches the other user and changes the stored body', async () => {
  const got = next(B.c, 'onMessageUpdateListener');
  A.c.chat.editMessage({ to: B.id, dialogId: priv._id, body: 'hi2', originMessageId: s.id, last: true });
  const [messageId, isLast, body] = await got;
  assert.deepEqual([messageId, isLast, body], [s.id, true, 'hi2']);
  await new Promise((r) => setTimeout(r, 200));
  const list = await within(B.c.chat.message.list({ chat_dialog_id: priv._id }));
  assert.equal(list.items[0].message, 'hi2');
});

test('a REST reaction reaches the message sender', async () => {
  const got = next(A.c, 'onMessageReactionsListener');
  await within(B.c.chat.message.addReaction(s.id, '👍'));
  const [messageId, userId, dialogId, add] = await got;
  assert.deepEqual([messageId, userId, dialogId, add], [s.id, B.id, priv._id, '👍']);
});

test('a REST message with send_to_chat arrives in real time', async () => {
  const got = next(B.c, 'onMessageListener');
  const created = await within(A.c.chat.message.create({ chat_dialog_id: priv._id, message: 'via rest', send_to_chat: 1 }));
  const [from, msg] = await got;
  assert.equal(from, A.id);
  assert.equal(msg.id, created._id);
  assert.equal(msg.body, 'via rest');
  s.rest = created._id;
});

test('a delete over XMPP reaches the other user and removes the stored message', async () => {
  const got = next(B.c, 'onMessageDeleteListener');
  A.c.chat.deleteMessage({ to: B.id, dialogId: priv._id, messageId: s.id });
  const [messageId, dialogId, userId] = await got;
  assert.deepEqual([messageId, dialogId, userId], [s.id, priv._id, A.id]);
  await new Promise((r) => setTimeout(r, 200));
  const list = await within(B.c.chat.message.list({ chat_dialog_id: priv._id }));
  assert.ok(!list.items.some((m) => m._id === s.id));
});

test('a forced REST delete reaches the other user', async () => {
  const got = next(B.c, 'onMessageDeleteListener');
  await within(A.c.chat.message.delete([s.rest], { force: 1 }));
  const [messageId] = await got;
  assert.equal(messageId, s.rest);
});

test('system messages over XMPP and over REST', async () => {
  let got = next(B.c, 'onSystemMessageListener');
  A.c.chat.sendSystemMessage(B.id, { body: 's', extension: { k: 'v' } });
  let [msg] = await got;
  assert.equal(msg.userId, A.id);
  assert.equal(msg.extension.k, 'v');
  got = next(B.c, 'onSystemMessageListener');
  await within(A.c.chat.message.createSystem({ recipientId: B.id, k: 'w' }));
  [msg] = await got;
  assert.equal(msg.userId, A.id);
  assert.equal(msg.extension.k, 'w');
});

test('call signalling is relayed in real time', async () => {
  const got = within(new Promise((resolve) => {
    B.c.chat.webrtcSignalingProcessor = { onMessage: (...args) => resolve(args) };
  }));
  A.c.chat.sendWebRTCSignalingMessage(B.id, {
    extension: { moduleIdentifier: 'WebRTCVideoChat', signalType: 'call', sessionID: `s-${run}`, callType: 1, callerID: A.id, opponentsIDs: [B.id], sdp: 'v=0' },
  });
  const [from] = await got;
  assert.equal(from, A.id);
});
