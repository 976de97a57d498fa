// Files through the official `connectycube` SDK (6.1.2), storage module unchanged:
// `storage.createAndUpload` (create, the upload form posted as the SDK posts it, complete),
// `getInfo`, `getFileObject(uid, {download_url: 1})` (the hosted `dowload_url`), `privateUrl` and
// `publicUrl` as an <img src> would use them, a file shared as a message attachment, `list` and
// `delete`. Against Parley's default disk store. Needs a running Parley: PARLEY_API_URL,
// PARLEY_APP_ID, PARLEY_AUTH_KEY (run.sh starts one and sets them).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { PASSWORD, client, within } = require('./support');
const run = Date.now().toString(36);

const A = client();
const B = client();
const ids = {};
const bytes = Buffer.from('\x89PNG\r\n\x1a\n an SDK upload \r\n--boundary-looking bytes--');

test('two users sign up and log in', async () => {
  for (const [who, c] of [['alice', A], ['bob', B]]) {
    await within(c.createSession());
    const { user } = await within(c.users.signup({ login: `${who}_files_${run}`, password: PASSWORD }));
    ids[who] = user.id;
    await within(c.createSession({ login: `${who}_files_${run}`, password: PASSWORD }));
  }
});

test('storage.createAndUpload uploads a private file and completes it', async () => {
  const blob = await within(A.storage.createAndUpload({
    name: 'photo.png', file: bytes, type: 'image/png', size: bytes.length, public: false,
  }));
  assert.equal(blob.size, bytes.length);
  assert.match(blob.uid, /^[0-9a-f]{32}$/);
  ids.blob = blob;
  const { blob: info } = await within(A.storage.getInfo(blob.id));
  assert.equal(info.blob_status, 'complete');
  assert.equal(info.size, bytes.length, 'the stored size');
});

test('storage.getFileObject gives a download URL with the hosted spelling', async () => {
  const { blob } = await within(A.storage.getFileObject(ids.blob.uid, { download_url: 1 }));
  const url = blob.blob_object_access.dowload_url;
  const r = await fetch(url);
  assert.equal(r.status, 200);
  assert.deepEqual(Buffer.from(await r.arrayBuffer()), bytes);
});

test('storage.privateUrl serves the owner and nobody else', async () => {
  const mine = await fetch(A.storage.privateUrl(ids.blob.uid));
  assert.equal(mine.status, 200);
  assert.deepEqual(Buffer.from(await mine.arrayBuffer()), bytes);
  const theirs = await fetch(B.storage.privateUrl(ids.blob.uid));
  assert.equal(theirs.status, 404);
  const anonymous = await fetch(A.storage.publicUrl(ids.blob.uid));
  assert.equal(anonymous.status, 403);
});

test('a file sent as a message attachment is readable by the dialog\'s occupants', async () => {
  const dialog = await within(A.chat.dialog.create({ type: 3, occupants_ids: [ids.bob] }));
  await within(A.chat.message.create({
    chat_dialog_id: dialog._id, message: 'a photo',
    attachments: [{ type: 'image', uid: ids.blob.uid, content_type: 'image/png' }],
  }));
  const r = await fetch(B.storage.privateUrl(ids.blob.uid));
  assert.equal(r.status, 200);
  assert.deepEqual(Buffer.from(await r.arrayBuffer()), bytes);
});

test('storage.publicUrl serves a public file without a token', async () => {
  const blob = await within(A.storage.createAndUpload({
    name: 'open.txt', file: Buffer.from('for everyone'), type: 'text/plain', size: 12,
  }));
  const r = await fetch(A.storage.publicUrl(blob.uid));
  assert.equal(r.status, 200);
  assert.equal(await r.text(), 'for everyone');
});

test('storage.list pages the caller\'s files and storage.delete removes one', async () => {
  const page = await within(A.storage.list({ page: 1, per_page: 10 }));
  assert.equal(page.total_entries, 2);
  assert.equal(page.items.length, 2);
  assert.equal(page.items[1].blob.id, ids.blob.id);
  await within(A.storage.delete(ids.blob.id));
  const gone = await fetch(A.storage.privateUrl(ids.blob.uid));
  assert.equal(gone.status, 404);
  const after = await within(A.storage.list());
  assert.equal(after.total_entries, 1);
});
