// Group dialogs as rooms through the official `connectycube` SDK (6.1.2): a group dialog made
// over REST, muc.join on both sides (it resolves only with the status-110 shim), a stored
// groupchat message to the other occupant and back to the sender, group typing,
// listOnlineUsers, history over REST, muc.leave. Plan step 10 of connectycube-js-sdk.md §7.
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
let grp;
let gid;

test('two users connect and A makes a group dialog with B over REST', async () => {
  for (const [who, c] of [['alice', A], ['bob', B]]) {
    await within(c.createSession());
    const { user } = await within(c.users.signup({ login: `${who}_muc_${run}`, password: PASSWORD }));
    ids[who] = user.id;
    await within(c.createSession({ login: `${who}_muc_${run}`, password: PASSWORD }));
    assert.equal(await within(c.chat.connect({ userId: user.id, password: PASSWORD })), true);
  }
  grp = await within(A.chat.dialog.create({ type: 2, name: 'Room', occupants_ids: [ids.bob] }));
  assert.equal(grp.xmpp_room_jid, `${APP_ID}_${grp._id}@muc.localhost`);
});

test('muc.join resolves for both occupants', async () => {
  await within(A.chat.muc.join(grp._id));
  await within(B.chat.muc.join(grp._id));
});

test('a stored groupchat message reaches the other occupant with dialog_id and comes back to the sender', async () => {
  const atB = next(B, 'onMessageListener', (from) => from === ids.alice);
  const atA = next(A, 'onMessageListener', (from) => from === ids.alice);
  gid = A.chat.send(grp._id, {
    type: 'groupchat',
    body: 'hello group',
    extension: { save_to_history: 1, dialog_id: grp._id },
  });
  const [from, msg] = await within(atB);
  assert.equal(from, ids.alice);
  assert.equal(msg.id, gid);
  assert.equal(msg.type, 'groupchat');
  assert.equal(msg.body, 'hello group');
  assert.equal(msg.dialog_id, grp._id);
  const [self, mine] = await within(atA);
  assert.equal(self, ids.alice);
  assert.equal(mine.id, gid);
});

test('typing in the group reaches the other occupant with the dialog id', async () => {
  const typing = next(B, 'onMessageTypingListener');
  A.chat.sendIsTypingStatus(grp._id);
  const [isTyping, userId, dialogId] = await within(typing);
  assert.equal(isTyping, true);
  assert.equal(userId, ids.alice);
  assert.equal(dialogId, grp._id);
});

test('muc.listOnlineUsers lists both joined occupants', async () => {
  const online = await within(A.chat.muc.listOnlineUsers(grp._id));
  assert.deepEqual([...online].sort((x, y) => x - y), [ids.alice, ids.bob].sort((x, y) => x - y));
});

test('the group message is in history over REST', async () => {
  const { items } = await within(B.chat.message.list({ chat_dialog_id: grp._id, sort_desc: 'date_sent' }));
  assert.ok(items.some((m) => m._id === gid && m.message === 'hello group'), JSON.stringify(items));
});

test('muc.leave resolves and the other occupant sees the leave', async () => {
  const left = next(A, 'onLeaveOccupant');
  await within(B.chat.muc.leave(grp._id));
  const [dialogId, userId] = await within(left);
  assert.equal(dialogId, grp._id);
  assert.equal(userId, ids.bob);
  await within(A.chat.muc.leave(grp._id));
});

test('both disconnect', async () => {
  await within(A.chat.disconnect());
  await within(B.chat.disconnect());
});
