// What the SDK acceptance files share: the official SDK configured with nothing but Parley's
// endpoints (from run.sh's environment), and small promise helpers. node --test runs each file
// in its own process, so the SDK's global config is per file.
//
// Over a cluster (run.sh --nodes N sets PARLEY_API_URL_2, PARLEY_WS_URL_2, …) each new client of
// a file goes to the next node in turn — the first user on node 1, the second on node 2 — so the
// stories between two users cross the bus. Without those variables every client uses node 1.
'use strict';

const CB = require('connectycube');

const Cube = CB.default || CB;
const API = process.env.PARLEY_API_URL;
const APP_ID = Number(process.env.PARLEY_APP_ID);
const AUTH_KEY = process.env.PARLEY_AUTH_KEY;
const WS_URL = process.env.PARLEY_WS_URL || 'ws://127.0.0.1:5291';
const PASSWORD = 'sdk-password-1';

/** Every node's endpoints, node 1 first. */
const NODES = [{ api_url: API, chat_url: WS_URL }];
for (let i = 2; process.env[`PARLEY_API_URL_${i}`]; i++) {
  NODES.push({ api_url: process.env[`PARLEY_API_URL_${i}`], chat_url: process.env[`PARLEY_WS_URL_${i}`] || WS_URL });
}
let clients = 0;

/** The endpoints of the node the next client goes to (round robin over NODES). */
function nextNode() {
  const node = NODES[clients % NODES.length];
  clients += 1;
  return node;
}

/** SDK config for Parley; `chat` overrides the chat options (e.g. reconnect). */
function sdkConfig(chat = {}) {
  return {
    endpoints: { api_url: API, chat: 'localhost', chat_url: WS_URL },
    chat: { reconnect: { enable: false, timeInterval: 5 }, ping: { enable: false }, ...chat },
    debug: { mode: 0 },
  };
}

/** A new SDK instance (own session) with `config`, on the next node (see NODES). */
function client(config = sdkConfig()) {
  const c = new Cube.ConnectyCube();
  c.init({ appId: APP_ID, authKey: AUTH_KEY }, { ...config, endpoints: { ...config.endpoints, ...nextNode() } });
  return c;
}

/** `promise`, or a rejection after `ms`. */
function within(promise, ms = 5000) {
  return Promise.race([promise, new Promise((_, no) => setTimeout(() => no(new Error(`timed out after ${ms} ms`)), ms))]);
}

/** The next call of listener `name` on `c.chat` whose arguments satisfy `pred`. */
function next(c, name, pred = () => true) {
  return new Promise((resolve) => {
    c.chat[name] = (...args) => {
      if (pred(...args)) resolve(args);
    };
  });
}

module.exports = { Cube, API, APP_ID, AUTH_KEY, WS_URL, PASSWORD, NODES, nextNode, sdkConfig, client, within, next };
