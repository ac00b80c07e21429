// The test harness: opens the client as the query string says and records
// everything it reports in window.T, which the Go tests read.
//
//   url        the stream path (/events, /sevents, ...)
//   user       the user, also the token's suffix
//   auth       cookie (default) or bearer
//   token      the token to start with (default u:<user>)
//   refresh    what onUnauthorized does: cookie (POST /refresh, true),
//              token (switch the bearer token to u:<user>, true), or no (false)
//   shared     0 turns sharing off
//   nolocks    1: no Web Locks (see harness.html)
//   last       the lastEventId option
//   minDelay, maxDelay, jitter, idleTimeout: the client's options
import { connect } from '/notify.js';

const q = new URLSearchParams(location.search);
const user = q.get('user') ?? 'nobody';
let token = q.get('token') ?? 'u:' + user;
const num = (name) => (q.has(name) ? Number(q.get(name)) : undefined);

// Messages of earlier lives of this tab (reloads), kept in sessionStorage
// so that a test sees one sequence across a reload.
const ALL = 'harness-all';
const earlier = JSON.parse(sessionStorage.getItem(ALL) ?? '[]');
const life = Number(sessionStorage.getItem('harness-life') ?? '0') + 1;
sessionStorage.setItem('harness-life', String(life));

const T = (window.T = {
  life,
  msgs: [], // the n of each message of this life
  all: earlier.slice(), // the n of each message, all lives
  ids: [], // their ids
  resets: [],
  revoked: [],
  errors: [],
  states: [],
  unauthorized: 0,
  tokenCalls: 0,
  client: null,
  startId: null,
  get state() {
    return T.client?.state ?? null;
  },
  get leader() {
    return T.client?.leader ?? false;
  },
});

if ((q.get('auth') ?? 'cookie') === 'cookie') {
  document.cookie = 'tok=' + token + '; path=/; SameSite=Strict'; // user ids are [A-Za-z0-9-]
}

const options = {
  user,
  shared: q.get('shared') !== '0',
  lastEventId: q.get('last') ?? undefined,
  minDelay: num('minDelay'),
  maxDelay: num('maxDelay'),
  jitter: num('jitter'),
  idleTimeout: num('idleTimeout'),
  onMessage(m) {
    const n = JSON.parse(m.data).n;
    T.msgs.push(n);
    T.all.push(n);
    T.ids.push(m.id);
    sessionStorage.setItem(ALL, JSON.stringify(T.all));
  },
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
if (q.get('auth') === 'bearer') {
  options.token = async () => {
    T.tokenCalls++;
    return token;
  };
}

T.client = connect(q.get('url') ?? '/events', options);
T.startId = T.client.lastEventId;
