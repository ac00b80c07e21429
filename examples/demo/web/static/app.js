// The demo page: sign in as a demo user, stream /events with the browser
// client, show notifications. An ES module: strict, and run after parsing.
import { connect } from '/static/notify.js';

const COOKIE = 'notify_token';
const MAX_ITEMS = 100;
const $ = (id) => document.getElementById(id);

let notify = null;  // the NotifyClient of the signed-in user
let me = null;      // the signed-in user id
let generation = 0; // callbacks of a closed client are ignored

function setStatus(state, label, detail) {
  const s = $('status');
  s.dataset.state = state;
  s.textContent = label;
  $('status-detail').textContent = detail || '';
}

function readCookie() {
  const m = document.cookie.match(new RegExp('(?:^|;\\s*)' + COOKIE + '=([^;]*)'));
  return m ? decodeURIComponent(m[1]) : '';
}

function writeCookie(token) {
  document.cookie = COOKIE + '=' + encodeURIComponent(token) + '; path=/; SameSite=Strict';
}

function clearCookie() {
  document.cookie = COOKIE + '=; path=/; max-age=0; SameSite=Strict';
}

// stop ends this tab's client. With signOut, the user's stream ends in
// every tab of the browser and the client forgets what it stored for the
// user. Without, the user stays signed in: another tab, if any, takes the
// stream over.
function stop(signOut) {
  generation++;
  if (notify && signOut) notify.signOut();
  else if (notify) notify.close();
  notify = null;
}

// showState renders the client's state (see client/notify.d.ts, NotifyState).
function showState(s) {
  if (s.signedOut) {
    // signOut() in another tab: the cookie is gone or names someone else.
    showSignedOut('signed out in another tab');
    return;
  }
  const who = s.leader ? 'this tab holds the stream' : 'relayed by another tab';
  if (s.status === 'open') {
    setStatus('connected', 'connected', 'streaming notifications for ' + me + ' (' + who + ')');
  } else if (s.status === 'connecting') {
    const why = s.httpStatus ? 'HTTP ' + s.httpStatus : s.retryIn !== undefined ? 'connection lost' : '';
    const when = s.retryIn !== undefined ? 'retrying in ' + Math.ceil(s.retryIn / 1000) + ' s' : 'as ' + me;
    setStatus(why ? 'error' : 'connecting', why ? 'error' : 'connecting', (why ? why + ', ' : '') + when);
  } else if (s.revoked) {
    setStatus('error', 'error', 'the server ended the stream: ' + s.revoked);
  } else if (s.httpStatus === 401) {
    setStatus('error', 'error', 'refused with HTTP 401 (' + s.error + '): the auth API refuses this token, so the client stopped and does not retry');
  } else if (s.httpStatus) {
    setStatus('error', 'error', 'refused with HTTP ' + s.httpStatus + ': ' + s.error);
  }
}

// open starts a stream for the signed-in user; the cookie carries the
// token. The client reconnects by itself, retries 429/502/503/504 with
// backoff, and resumes where it left off in stream mode.
function open() {
  const gen = generation;
  setStatus('connecting', 'connecting', 'as ' + me);
  notify = connect('/events', {
    user: me,
    onStateChange: (s) => { if (gen === generation) showState(s); },
    onMessage: (m) => { if (gen === generation) addNotification(m.data); },
    onReset: () => { if (gen === generation) clearNotifications(); },
    // A real app would refresh its session here and resolve true; the
    // demo's tokens are fixed, so a refused one stays refused.
    onUnauthorized: async () => false,
  });
}

function addNotification(data) {
  let msg = null;
  try { msg = JSON.parse(data); } catch (_) { /* shown raw */ }
  const isObj = msg !== null && typeof msg === 'object' && !Array.isArray(msg);
  const text = isObj && typeof msg.text === 'string' ? msg.text : data;
  const broadcast = isObj && msg.recipient_id === '*';
  const type = broadcast ? 'broadcast' : (isObj && typeof msg.type === 'string' && msg.type) || 'message';

  const li = document.createElement('li');
  li.className = 'fresh';
  li.dataset.type = type;
  const head = document.createElement('div');
  head.className = 'head';
  const badge = document.createElement('span');
  badge.className = 'badge' + (broadcast ? ' broadcast' : '');
  badge.textContent = type;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  const time = document.createElement('time');
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString();
  head.append(badge, body, time);
  const raw = document.createElement('code');
  raw.className = 'raw';
  raw.textContent = data;
  li.append(head, raw);

  const list = $('notifications');
  list.prepend(li);
  while (list.children.length > MAX_ITEMS) list.lastElementChild.remove();
  $('empty').hidden = true;
}

function clearNotifications() {
  $('notifications').replaceChildren();
  $('empty').hidden = false;
}

function updateCLI() {
  const cli = $('cli');
  const who = me && me !== 'mallory' ? me : 'alice';
  const msg = JSON.stringify({ recipient_id: who, text: 'hello ' + who });
  cli.textContent = cli.dataset.cli + ' PUBLISH ' + cli.dataset.channel + " '" + msg + "'";
}

function signIn(button) {
  // Another user replaces the cookie, which every tab of the browser
  // shares: the previous user signs out, in every tab. The same user again
  // (a retry after a refusal) just reconnects.
  stop(me !== null && me !== button.dataset.user);
  me = button.dataset.user;
  writeCookie(button.dataset.token);
  for (const b of document.querySelectorAll('button.user')) {
    b.setAttribute('aria-pressed', String(b === button));
  }
  $('logout').disabled = false;
  $('send').disabled = false;
  $('send-text').disabled = false;
  $('send-result').textContent = '';
  clearNotifications();
  updateCLI();
  open();
}

function signOut() {
  stop(true);
  clearCookie();
  showSignedOut('pick a user above');
}

// showSignedOut puts the page in the signed-out state, without the
// signed-out user's notifications.
function showSignedOut(detail) {
  generation++;
  notify = null;
  me = null;
  for (const b of document.querySelectorAll('button.user')) b.setAttribute('aria-pressed', 'false');
  $('logout').disabled = true;
  $('send').disabled = true;
  $('send-text').disabled = true;
  clearNotifications();
  setStatus('idle', 'signed out', detail);
  updateCLI();
}

async function send(ev) {
  ev.preventDefault();
  const out = $('send-result');
  const button = $('send');
  button.disabled = true;
  try {
    const r = await fetch('/send', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text: $('send-text').value }),
    });
    const body = await r.json().catch(() => ({}));
    if (r.ok) {
      out.dataset.ok = 'true';
      out.textContent = 'Published on ' + body.channel + ': ' + JSON.stringify(body.message);
      $('send-text').value = '';
    } else {
      out.dataset.ok = 'false';
      out.textContent = 'Not sent: HTTP ' + r.status + (body.detail ? ' — ' + body.detail : '');
    }
  } catch (e) {
    out.dataset.ok = 'false';
    out.textContent = 'Not sent: ' + e;
  } finally {
    button.disabled = me === null;
  }
}

for (const b of document.querySelectorAll('button.user')) {
  b.addEventListener('click', () => signIn(b));
}
$('logout').addEventListener('click', signOut);
$('send-form').addEventListener('submit', send);

// After a reload, resume as the user of the cookie.
const token = readCookie();
const known = token && [...document.querySelectorAll('button.user')].find((b) => b.dataset.token === token);
if (known) signIn(known);
