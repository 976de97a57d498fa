// Push notifications through the official SDK's `pushnotifications` module, unchanged: a user
// subscribes two devices (FCM and Web Push), lists and deletes them, and sends an event to
// another user by id and by tag. Delivery itself is covered by tests/push_alerts.rs (fake
// providers); here the API shapes the SDK reads are checked.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { PASSWORD, client, within } = require('./support');

const run = Date.now().toString(36);
const alice = { login: `push_alice_${run}`, password: PASSWORD, full_name: 'Alice', tag_list: `push_vip_${run}` };
const bob = { login: `push_bob_${run}`, password: PASSWORD, full_name: 'Bob' };
const A = client();
const B = client();
const ids = {};
let fcmId;

test('two users with sessions', async () => {
  for (const [c, u] of [[A, alice], [B, bob]]) {
    await within(c.createSession());
    const user = await within(c.users.signup(u));
    ids[u.login] = user.user.id;
    await within(c.login({ login: u.login, password: u.password }));
  }
});

test('subscriptions.create answers an array with the subscription', async () => {
  const r = await within(B.pushnotifications.subscriptions.create({
    notification_channel: 'gcm',
    push_token: { environment: 'development', client_identification_sequence: `fcm-${run}` },
    device: { platform: 'android', udid: `android-${run}` },
  }));
  assert.ok(Array.isArray(r));
  assert.equal(r[0].subscription.notification_channel.name, 'gcm');
  assert.equal(r[0].subscription.device.udid, `android-${run}`);
  assert.equal(r[0].subscription.device.platform.name, 'android');
  fcmId = r[0].subscription.id;
  const web = await within(B.pushnotifications.subscriptions.create({
    notification_channel: 'web',
    push_token: {
      environment: 'production',
      web_endpoint: 'https://push.example.com/send/abc',
      web_auth: 'AAAAAAAAAAAAAAAAAAAAAA',
      web_p256dh: 'BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    },
    device: { platform: 'web', udid: `browser-${run}` },
  }));
  assert.equal(web[0].subscription.notification_channel.name, 'web');
});

test('subscriptions.list shows every device of the user', async () => {
  const list = await within(B.pushnotifications.subscriptions.list());
  assert.deepEqual(list.map((s) => s.subscription.device.platform.name).sort(), ['android', 'web']);
});

test('events.create reaches users by id and by tag', async () => {
  const payload = A.pushnotifications.base64Encode(JSON.stringify({ message: 'Hello Bob', ios_badge: 1 }));
  const byId = await within(A.pushnotifications.events.create({
    notification_type: 'push',
    environment: 'development',
    user: { ids: String(ids[bob.login]) },
    message: payload,
  }));
  assert.ok(Array.isArray(byId));
  assert.equal(byId[0].event.kind, 'API');
  assert.equal(byId[0].event.environment, 'development');
  assert.equal(byId[0].event.message, payload);
  const byTag = await within(B.pushnotifications.events.create({
    notification_type: 'push',
    push_type: 'gcm',
    environment: 'production',
    user: { tags: { any: `push_vip_${run}` } },
    message: B.pushnotifications.base64Encode('plain text'),
  }));
  assert.equal(byTag[0].event.notification_channel.name, 'gcm');
});

test('subscriptions.delete removes one device', async () => {
  await within(B.pushnotifications.subscriptions.delete(fcmId));
  const list = await within(B.pushnotifications.subscriptions.list());
  assert.deepEqual(list.map((s) => s.subscription.device.platform.name), ['web']);
});
