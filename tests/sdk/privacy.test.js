// Privacy lists through the official `connectycube` SDK (6.1.2) over Parley's WebSocket
// listener (acceptance plan step 16): create a deny list for Bob, make it the default, read the
// names and the list back, see Bob's messages to Alice blocked while Alice still reaches Bob,
// then decline the default (the SDK's way to edit or remove the active list) and delete it.
// Needs a running Parley: PARLEY_API_URL, PARLEY_APP_ID, PARLEY_AUTH_KEY, PARLEY_WS_URL
// (run.sh starts one and sets them).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Cube, APP_ID, PASSWORD, client, within, next } = require('./support');
const run = Date.now().toString(36);

/** Resolves with the arguments of the next call of listener `name` on `c.chat`, or `null` after `ms`. */
function nextOrNothing(c, name, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { c.chat[name] = undefined; resolve(null); }, ms);
    c.chat[name] = (...args) => { clearTimeout(timer); c.chat[name] = undefined; resolve(args); };
  });
}

const A = client();
const B = client();
const ids = {};

test('two users sign up and connect to chat', async () => {
  for (const [who, c] of [['alice', A], ['bob', B]]) {
    await within(c.createSession());
    const { user } = await within(c.users.signup({ login: `${who}_priv_${run}`, password: PASSWORD }));
    ids[who] = user.id;
    await within(c.createSession({ login: `${who}_priv_${run}`, password: PASSWORD }));
    assert.equal(await within(c.chat.connect({ userId: user.id, password: PASSWORD })), true);
  }
});

test('privacylist.create and setAsDefault succeed', async () => {
  await within(A.chat.privacylist.create({ name: 'bl', items: [{ user_id: ids.bob, action: 'deny' }] }));
  await within(A.chat.privacylist.setAsDefault('bl'));
});

test('privacylist.getNames reports the list as the default', async () => {
  const names = await within(A.chat.privacylist.getNames());
  assert.equal(names.default, 'bl');
  assert.ok(names.names.includes('bl'), JSON.stringify(names));
});

test('privacylist.getList returns the denied user', async () => {
  const list = await within(A.chat.privacylist.getList('bl'));
  assert.equal(list.name, 'bl');
  assert.deepEqual(list.items, [{ user_id: ids.bob, action: 'deny' }]);
});

test('while the list is the default, the denied user\'s messages do not arrive and bounce', async () => {
  const arrived = nextOrNothing(A, 'onMessageListener', 1000);
  const bounced = nextOrNothing(B, 'onMessageErrorListener', 1000);
  const id = B.chat.send(ids.alice, { type: 'chat', body: 'you blocked me', extension: { save_to_history: 0 } });
  assert.equal(await arrived, null, 'Alice must not get the message');
  const err = await bounced;
  assert.ok(err, 'Bob gets an error for the blocked message');
  assert.equal(err[0], id);
});

test('deny is inbound only: Alice still reaches Bob', async () => {
  const received = nextOrNothing(B, 'onMessageListener', 3000);
  A.chat.send(ids.bob, { type: 'chat', body: 'I can still write' });
  const got = await received;
  assert.ok(got, 'Bob gets the message');
  assert.equal(got[0], ids.alice);
  assert.equal(got[1].body, 'I can still write');
});

test('setAsDefault(null) declines the list, delete removes it, and messages flow again', async () => {
  await within(A.chat.privacylist.setAsDefault(null));
  await within(A.chat.privacylist.delete('bl'));
  const names = await within(A.chat.privacylist.getNames());
  assert.equal(names.default, null);
  assert.ok(!names.names.includes('bl'), JSON.stringify(names));
  const received = nextOrNothing(A, 'onMessageListener', 3000);
  B.chat.send(ids.alice, { type: 'chat', body: 'unblocked' });
  const got = await received;
  assert.ok(got, 'Alice gets the message again');
  assert.equal(got[1].body, 'unblocked');
});

test('chat.disconnect closes both connections', async () => {
  await within(A.chat.disconnect());
  await within(B.chat.disconnect());
});
