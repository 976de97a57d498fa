// Sessions and users through the official `connectycube` SDK (6.1.2), configured only with
// Parley's endpoints. Needs a running Parley: PARLEY_API_URL, PARLEY_APP_ID, PARLEY_AUTH_KEY
// (run.sh starts one and sets them).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const CB = require('connectycube');
const Cube = CB.default || CB;

const API = process.env.PARLEY_API_URL;
const APP_ID = Number(process.env.PARLEY_APP_ID);
const AUTH_KEY = process.env.PARLEY_AUTH_KEY;
const PASSWORD = 'sdk-password-1';
const run = Date.now().toString(36);

const config = {
  endpoints: { api_url: API, chat: 'localhost', chat_url: process.env.PARLEY_WS_URL || 'ws://127.0.0.1:5291' },
  chat: { reconnect: { enable: false, timeInterval: 5 } },
  debug: { mode: 0 },
};

// Users spread over the nodes of a cluster as support.js spreads them (run.sh --nodes N).
const { nextNode } = require('./support');

function client() {
  const c = new Cube.ConnectyCube();
  c.init({ appId: APP_ID, authKey: AUTH_KEY }, { ...config, endpoints: { ...config.endpoints, ...nextNode() } });
  return c;
}

function within(promise, ms = 5000) {
  return Promise.race([promise, new Promise((_, no) => setTimeout(() => no(new Error(`timed out after ${ms} ms`)), ms))]);
}

const alice = { login: `alice_${run}`, password: PASSWORD, full_name: 'Alice' };
const bob = { login: `bob_${run}`, password: PASSWORD, full_name: 'Bob' };
const A = client();
const B = client();
const ids = {};

test('app session and sign-up with its token', async () => {
  const session = await within(A.createSession());
  assert.equal(typeof session.token, 'string');
  assert.ok(!session.user_id, 'an application session has no user');
  const { user } = await within(A.users.signup(alice));
  assert.equal(user.login, alice.login);
  ids.alice = user.id;
});

test('sign-up without a session uses CB-AuthKey', async () => {
  const { user } = await within(B.users.signup(bob));
  assert.equal(user.login, bob.login);
  ids.bob = user.id;
});

test('duplicate sign-up is refused with 422 naming login', async () => {
  await assert.rejects(within(A.users.signup(alice)), (e) => e.code === 422 && Array.isArray(e.info.errors.login));
});

test('login upgrades the application session to a user session', async () => {
  const user = await within(A.login({ login: alice.login, password: PASSWORD }));
  assert.equal(user.id, ids.alice);
  const session = await within(A.getSession());
  assert.equal(session.user_id, ids.alice);
});

test('user session created directly with login and password', async () => {
  const session = await within(B.createSession({ login: bob.login, password: PASSWORD }));
  assert.equal(session.user_id, ids.bob);
});

test('wrong password is refused with 401', async () => {
  const C = client();
  await assert.rejects(within(C.createSession({ login: bob.login, password: 'wrong-password' })), (e) => e.code === 401);
});

test('users.getV2 finds users by id list', async () => {
  const page = await within(A.users.getV2({ id: { in: [ids.alice, ids.bob] }, limit: 10 }));
  assert.equal(page.total_entries, 2);
  assert.deepEqual(page.items.map((u) => u.id).sort(), [ids.alice, ids.bob].sort());
});

test('users.update changes your own user', async () => {
  const { user } = await within(A.users.update({ full_name: 'Alice B' }));
  assert.equal(user.full_name, 'Alice B');
});

test('logout and destroySession end the session', async () => {
  await within(A.logout());
  const session = await within(A.getSession());
  assert.ok(!session.user_id);
  await within(A.destroySession());
  await within(B.destroySession());
});
