// The test harness: opens the client as the query string says and records
// everything it reports in window.T, which the Go tests read.
//
//   url        the stream path (/events, /sevents, ...)
//   user       the user, also the token's suffix; "@cookie": the user the
//              token cookie names, as an application that renders the page
//              for whoever is signed in (no client when nobody is)
//   nouser     1: connect without the user option (an error)
//   auth       cookie (default) or bearer
//   token      the token to start with (default u:<user>)
//   refresh    what onUnauthorized does: cookie (POST /refresh, true),
//              token (switch the bearer token to u:<user>, true), or no (false)
//   shared     0 turns sharing off
//   nolocks    1: no Web Locks (see harness.html)
//   nobc       1: no BroadcastChannel (see harness.html)
//   on         names to listen to with on(), comma-separated
//   last       the lastEventId option
//   minDelay, maxDelay, jitter, idleTimeout: the client's options
import { connect } from '/notify.js';

const q = new URLSearchParams(location.search);
const num = (name) => (q.has(name) ? Number(q.get(name)) : undefined);
const cookieUser = () => /(?:^|;\s*)tok=u:([^;]+)/.exec(document.cookie)?.[1] ?? null;
const fromCookie = q.get('user') === '@cookie';
let user = fromCookie ? cookieUser() : q.get('user') ?? 'nobody';
let token = q.get('token') ?? 'u:' + user;

// Messages of earlier lives of this tab (reloads), kept in sessionStorage
// so that a test sees one sequence across a reload.
const ALL = 'harness-all';
const earlier = JSON.parse(sessionStorage.getItem(ALL) ?? '[]');
const RECV = 'harness-recv';
const earlierRecv = JSON.parse(sessionStorage.getItem(RECV) ?? '[]');
const life = Number(sessionStorage.getItem('harness-life') ?? '0') + 1;
sessionStorage.setItem('harness-life', String(life));

const T = (window.T = {
  life,
  msgs: [], // the n of each message of this life
  all: earlier.slice(), // the n of each message, all lives
  recv: earlierRecv.slice(), // "<recipient_id>:<n>" of each message, all lives
  ids: [], // their ids
  types: [], // their types
  named: {}, // per name given in `on`: the n of each message its listener got
  unsub: {}, // per name given in `on`: what on() returned
  fns: {}, // per name given in `on`: the listener
  resets: [],
  revoked: [],
  errors: [],
  states: [],
  unauthorized: 0,
  tokenCalls: 0,
  client: null,
  connect,
  startError: null, // what connect threw, as {name, message}
  startId: null,
  get state() {
    return T.client?.state ?? null;
  },
  get leader() {
    return T.client?.leader ?? false;
  },
  // What an application does when its user signs out: the client forgets
  // the user in every tab, and the session cookie goes.
  signOut() {
    T.client.signOut();
    document.cookie = 'tok=; path=/; max-age=0; SameSite=Strict';
  },
  // What it does when another user signs in in this tab.
  signIn(next) {
    user = next;
    token = 'u:' + next;
    document.cookie = 'tok=' + token + '; path=/; SameSite=Strict';
    start();
  },
  // Every key of this origin's storage, as the tab sees it.
  storage() {
    const keys = (s) => Array.from({ length: s.length }, (_, i) => s.key(i));
    return { local: keys(localStorage), session: keys(sessionStorage) };
  },
});

function record(m) {
  const v = JSON.parse(m.data);
  T.msgs.push(v.n);
  T.all.push(v.n);
  T.recv.push((v.recipient_id ?? '') + ':' + v.n);
  T.ids.push(m.id);
  T.types.push(m.type);
  sessionStorage.setItem(ALL, JSON.stringify(T.all));
  sessionStorage.setItem(RECV, JSON.stringify(T.recv));
}

function options() {
  const o = {
    user,
    shared: q.get('shared') !== '0',
    lastEventId: q.get('last') ?? undefined,
    minDelay: num('minDelay'),
    maxDelay: num('maxDelay'),
    jitter: num('jitter'),
    idleTimeout: num('idleTimeout'),
    onMessage: record,
    onReset(reason) {
      T.resets.push(reason);
    },
    onRevoked(reason) {
      T.revoked.push(reason);
    },
    onError(err) {
      T.errors.push({ status: err.status, message: err.message, name: err.name });
    },
    onStateChange(s) {
      T.states.push({ ...s, at: Date.now() });
    },
    async onUnauthorized(refusal) {
      T.unauthorized++;
      T.lastRefusal = refusal;
      switch (q.get('refresh') ?? 'no') {
        case 'cookie': {
          const r = await fetch('/refresh?user=' + encodeURIComponent(user), { method: 'POST' });
          return r.ok;
        }
        case 'token':
          token = 'u:' + user;
          return true;
        default:
          return false;
      }
    },
  };
  if (q.get('nouser') === '1') delete o.user;
  if (q.get('auth') === 'bearer') {
    o.token = async () => {
      T.tokenCalls++;
      return token;
    };
  }
  return o;
}

function start() {
  try {
    T.client = connect(q.get('url') ?? '/events', options());
  } catch (err) {
    T.startError = { name: err.name, message: err.message };
    return;
  }
  for (const name of (q.get('on') ?? '').split(',').filter(Boolean)) {
    T.named[name] = [];
    T.fns[name] = (m) => T.named[name].push(JSON.parse(m.data).n);
    T.unsub[name] = T.client.on(name, T.fns[name]);
  }
  T.startId = T.client.lastEventId;
}

if (!fromCookie && (q.get('auth') ?? 'cookie') === 'cookie') {
  document.cookie = 'tok=' + token + '; path=/; SameSite=Strict'; // user ids are [A-Za-z0-9-]
}
if (user !== null) start();
T.started = true;
