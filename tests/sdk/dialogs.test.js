// Dialogs and messages over REST through the official `connectycube` SDK (6.1.2): the shapes it
// sends (", "-joined ids, DELETE form bodies, .json paths) and the answers it parses.
// Needs a running Parley: PARLEY_API_URL, PARLEY_APP_ID, PARLEY_AUTH_KEY (run.sh sets them).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { APP_ID, PASSWORD, client, within } = require('./support');

const run = `d${Date.now().toString(36)}`;

async function userClient(login) {
  const c = client();
  await within(c.createSession());
  const { user } = await within(c.users.signup({ login, password: PASSWORD }));
  await within(c.login({ login, password: PASSWORD }));
  return { c, id: user.id };
}

let A, B, C;
const s = {};

test('setup: three users', async () => {
  A = await userClient(`${run}_alice`);
  B = await userClient(`${run}_bob`);
  C = await userClient(`${run}_carol`);
});

test('dialog.create makes private and group dialogs with the room jid', async () => {
  s.priv = await within(A.c.chat.dialog.create({ type: 3, occupants_ids: [B.id] }));
  assert.equal(s.priv.type, 3);
  assert.equal(s.priv.xmpp_room_jid, null);
  s.grp = await within(A.c.chat.dialog.create({ type: 2, name: 'G', occupants_ids: [B.id, C.id] }));
  assert.equal(s.grp.xmpp_room_jid, `${APP_ID}_${s.grp._id}@muc.localhost`);
  assert.deepEqual([...s.grp.occupants_ids].sort(), [A.id, B.id, C.id].sort());
  const again = await within(B.c.chat.dialog.create({ type: 3, occupants_ids: [A.id] }));
  assert.equal(again._id, s.priv._id, 'a private dialog is unique per pair');
});

test('dialog.list with filters, sort and count', async () => {
  const list = await within(B.c.chat.dialog.list({ sort_desc: 'last_message_date_sent', limit: 10, skip: 0 }));
  assert.equal(list.total_entries, 2);
  const groups = await within(B.c.chat.dialog.list({ type: { in: [2] } }));
  assert.deepEqual(groups.items.map((d) => d._id), [s.grp._id]);
  const count = await within(B.c.chat.dialog.list({ count: 1 }));
  assert.equal(count.items_count, 2);
});

test('dialog.update renames and adds occupants; admins', async () => {
  const d = await within(B.c.chat.dialog.update(s.grp._id, { name: 'Renamed' }));
  assert.equal(d.name, 'Renamed');
  const withAdmin = await within(A.c.chat.dialog.addAdmins(s.grp._id, [B.id]));
  assert.deepEqual(withAdmin.admins_ids, [B.id]);
  const without = await within(A.c.chat.dialog.removeAdmins(s.grp._id, [B.id]));
  assert.deepEqual(without.admins_ids, []);
  await assert.rejects(within(C.c.chat.dialog.addAdmins(s.grp._id, [C.id])), (e) => e.code === 403);
});

test('message.create, list, unreadCount and read', async () => {
  s.m1 = await within(A.c.chat.message.create({ chat_dialog_id: s.grp._id, message: 'via rest', custom: 'kept' }));
  assert.equal(s.m1.message, 'via rest');
  assert.equal(s.m1.custom, 'kept');
  await within(A.c.chat.message.create({ chat_dialog_id: s.grp._id, message: 'second' }));
  const unread = await within(B.c.chat.message.unreadCount({ chat_dialog_ids: [s.priv._id, s.grp._id] }));
  assert.equal(unread.total, 2);
  assert.equal(unread[s.grp._id], 2);
  const page = await within(B.c.chat.message.list({ chat_dialog_id: s.grp._id, sort_desc: 'date_sent', limit: 1, mark_as_read: 0 }));
  assert.equal(page.items.length, 1);
  await within(B.c.chat.message.update(s.m1._id, { read: 1, chat_dialog_id: s.grp._id }));
  const after = await within(B.c.chat.message.unreadCount({ chat_dialog_ids: [s.grp._id] }));
  assert.equal(after[s.grp._id], 1);
  const list = await within(B.c.chat.dialog.list({}));
  const grp = list.items.find((d) => d._id === s.grp._id);
  assert.equal(grp.last_message, 'second');
  assert.equal(grp.unread_messages_count, 1);
});

test('reactions add, replace, list and remove', async () => {
  await within(B.c.chat.message.addReaction(s.m1._id, '👍'));
  await within(B.c.chat.message.updateReaction(s.m1._id, '🔥', '👍'));
  const r = await within(A.c.chat.message.listReactions(s.m1._id));
  assert.deepEqual(r, { '🔥': [B.id] });
  await within(B.c.chat.message.removeReaction(s.m1._id, '🔥'));
  assert.deepEqual(await within(A.c.chat.message.listReactions(s.m1._id)), {});
});

test('system message via REST answers its shape', async () => {
  const r = await within(A.c.chat.message.createSystem({ recipientId: B.id, k: 'v' }));
  assert.equal(r.recipientId, B.id);
  assert.deepEqual(r.extensionParams, { k: 'v' });
});

test('search finds the caller\'s messages', async () => {
  const r = await within(B.c.chat.search({ search_text: 'via rest', limit: 5 }));
  assert.equal(r.results.messages.length, 1);
  assert.equal(r.results.messages[0]._id, s.m1._id);
});

test('message.delete with force, notifications, public dialogs, clearHistory', async () => {
  const report = await within(A.c.chat.message.delete([s.m1._id], { force: 1 }));
  const parsed = typeof report === 'string' ? JSON.parse(report) : report;
  assert.deepEqual(parsed.SuccessfullyDeleted.ids, [s.m1._id]);
  const off = await within(B.c.chat.dialog.updateNotificationsSettings(s.grp._id, false));
  assert.equal(off.notifications.enabled, 0);
  assert.equal((await within(B.c.chat.dialog.getNotificationsSettings(s.grp._id))).notifications.enabled, 0);
  const pub = await within(A.c.chat.dialog.create({ type: 4, name: 'Open' }));
  const sub = await within(C.c.chat.dialog.subscribe(pub._id));
  assert.equal(sub.occupants_count, 2);
  const occ = await within(A.c.chat.dialog.getPublicOccupants(pub._id, { limit: 5, skip: 0 }));
  assert.equal(occ.items.length, 2);
  await within(C.c.chat.dialog.unsubscribe(pub._id));
  await within(B.c.chat.dialog.clearHistory(s.grp._id));
  assert.equal((await within(B.c.chat.message.list({ chat_dialog_id: s.grp._id }))).items.length, 0);
});

test('dialog.delete: one id, then several with the JSON report', async () => {
  await within(B.c.chat.dialog.delete(s.priv._id));
  const extra = await within(A.c.chat.dialog.create({ type: 2, name: 'X', occupants_ids: [B.id] }));
  const report = await within(A.c.chat.dialog.delete([s.grp._id, extra._id], { force: 1 }));
  const parsed = typeof report === 'string' ? JSON.parse(report) : report;
  assert.deepEqual([...parsed.SuccessfullyDeleted.ids].sort(), [s.grp._id, extra._id].sort());
});
