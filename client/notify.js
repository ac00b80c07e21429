// caddy-notify browser client: one dependency-free ES module, no build step.
//
//   import { connect } from './notify.js';
//   const notify = connect('/events', { user: me, onMessage: (e) => show(JSON.parse(e.data)) });
//   notify.on('order_paid', (e) => paid(JSON.parse(e.data)));
//   // at sign-out: notify.signOut();
//
// It does what EventSource cannot:
//
//   - It reads the stream with fetch(), so it sees the HTTP status of a
//     refused stream and acts on it: 401 asks the application
//     (onUnauthorized), 429/502/503/504 retry with exponential backoff and
//     jitter, never sooner than Retry-After, anything else stops with
//     onError. fetch also lets it send `Authorization: Bearer` with a token
//     fetched anew for every connection.
//   - `reset` and `revoked` events reach onReset / onRevoked; after `revoked`
//     it never reconnects. Events the handler names (`event_field`) reach
//     the listeners of their name, on(name, fn), as well as onMessage.
//   - In stream mode it remembers the last event ID (localStorage, per
//     stream URL and user) and resumes from it with `last_event_id` on a
//     fresh page load: a reload loses nothing.
//   - One stream per browser: the tabs of an origin elect a leader (Web
//     Locks, or a localStorage lease where those are missing) which holds
//     the only stream and relays its events to the other tabs over a
//     BroadcastChannel. When the leader goes, another tab takes over at once
//     and, in stream mode, resumes from the last ID it saw: no gap, no
//     duplicate.
//   - signOut() ends the user's stream in every tab and forgets everything
//     the client stored for the user.
//
// docs/browser-client.md documents it; notify.d.ts declares it.

const PREFIX = 'caddy-notify:';

// The sign-out signal: a BroadcastChannel of this name, and where that is
// missing, a storage event on this key (written and removed at once).
const CONTROL_CHANNEL = PREFIX + 'control';
const SIGNOUT_KEY = PREFIX + 'signout';

// The handler's control events. Its frames carry exactly {"reason": ...};
// an event the application named so is an ordinary event (see controlReason).
const CONTROL_EVENTS = new Set(['reset', 'revoked']);

/** Statuses after which the client waits and tries again. */
const RETRY_STATUSES = new Set([429, 502, 503, 504]);

const DEFAULTS = {
  token: null,
  credentials: 'same-origin',
  headers: null,
  shared: true,
  persist: true,
  lastEventId: null,
  minDelay: 1000,
  maxDelay: 30000,
  jitter: 0.5,
  idleTimeout: 45000,
  onMessage: null,
  onReset: null,
  onRevoked: null,
  onUnauthorized: null,
  onError: null,
  onStateChange: null,
};

// The tabs' ring of recent events, from which a tab that joins or falls
// behind during a takeover is served (stream mode).
const RING_EVENTS = 500;
const RING_BYTES = 2 << 20;

// How long a follower waits for the leader's answer to a sync request
// before it reports a gap with a reset.
const SYNC_TIMEOUT = 3000;

// The localStorage lease, where Web Locks are missing: a leader renews it
// every LEASE_TICK; a lease not renewed for LEASE_TTL is free. A leader that
// closes frees it at once, so a takeover does not wait for the TTL.
const LEASE_TTL = 3000;
const LEASE_TICK = 500;
const LEASE_SETTLE = 100;

// A leader that stops after a refusal or a `revoked` event keeps its place
// this long, so that the other tabs hear why and stop too before one of
// them could take the lead and try again.
const STOP_GRACE = 500;

/**
 * Opens a notification stream; see NotifyClient.
 * @param {string | URL} url
 * @param {object} [options]
 */
export function connect(url, options) {
  return new NotifyClient(url, options);
}

/** An HTTP refusal, or a stream that is not one, that stopped the client. */
export class NotifyError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'NotifyError';
    this.status = status;
  }
}

export class NotifyClient {
  #o;
  #url;
  #user;
  #key;
  #tab = randomId();
  #closed = false;
  #signedOut = false;
  #running = null; // this client's entry in `running` while it runs
  #listeners = new Map(); // event name → Set of on() listeners
  #role = 'none'; // 'leader' | 'follower' | 'none'
  #state = { status: 'connecting', leader: false };

  // Stream mode: the last event ID this tab delivered, and the recent
  // events it delivered (every tab keeps them: any tab may become leader).
  #lastId = null;
  #ring = [];
  #ringBytes = 0;
  #known = null; // the ring holds every event after this ID

  // Sharing.
  #channel = null;
  #election = null;
  #leaderTab = null;
  #sync = null; // { pending, timer } while a follower waits for a sync reply

  // The leader's connection.
  #gen = 0; // bumped to abandon a connection loop
  #abort = null;
  #wake = null; // ends the current reconnect wait early
  #failures = 0;
  #retry = 3000;

  #suspended = false;
  #onOnline = () => this.#wake?.();
  #onPageHide = () => this.#suspend();
  #onPageShow = (e) => {
    if (e.persisted) this.#resume();
  };

  /**
   * @param {string | URL} url the notify handler, e.g. '/events'
   * @param {object} [options] see notify.d.ts
   */
  constructor(url, options) {
    // An option given as undefined keeps its default (a spread would not).
    this.#o = { ...DEFAULTS };
    for (const [k, v] of Object.entries(options ?? {})) if (v !== undefined) this.#o[k] = v;
    // Without a user every user of the browser would share one key: the
    // tab of a user who left could relay that user's stream to the next.
    this.#user = userOf(this.#o.user);
    const u = new URL(url, globalThis.location?.href);
    u.searchParams.delete('last_event_id');
    this.#url = u;
    // One key names the shared stream, its lock, its channel and its stored
    // position: the stream URL and the user, so that tabs signed in as
    // different users never share a stream. A URL's href holds no line
    // break, nor does a user: keyUser can split the key.
    this.#key = PREFIX + u.href + '\n' + this.#user;
    listenForSignOut();
    sweepTab(this.#user);
    this.#running = { user: this.#user, end: () => this.#endSignedOut() };
    running.add(this.#running);

    // Where to resume in stream mode: this tab's own position when it was
    // reloaded (sessionStorage survives a reload), else the browser's last
    // one (localStorage), else none.
    this.#lastId =
      this.#o.lastEventId ??
      (this.#o.persist ? storageGet(sessionStorageOrNull(), this.#tabKey()) ?? storageGet(localStorageOrNull(), this.#key) : null);
    if (this.#lastId !== null) this.#known = this.#lastId;

    globalThis.addEventListener?.('online', this.#onOnline);
    globalThis.addEventListener?.('pagehide', this.#onPageHide);
    globalThis.addEventListener?.('pageshow', this.#onPageShow);
    const shared = this.#o.shared && typeof BroadcastChannel === 'function' && (hasLocks() || localStorageOrNull());
    if (shared) {
      this.#channel = new BroadcastChannel(this.#key);
      this.#channel.onmessage = (e) => this.#onRelay(e.data);
    }
    this.#join();
  }

  // Takes this tab's place: the leader when not shared, else a follower
  // that asks who leads and queues for the lead.
  #join() {
    if (!this.#channel) {
      this.#becomeLeader();
      return;
    }
    this.#role = 'follower';
    this.#leaderTab = null;
    if (this.#lastId !== null) this.#beginSync();
    this.#post({ t: 'hello', tab: this.#tab });
    this.#election = hasLocks()
      ? new LockElection(this.#key, () => this.#becomeLeader())
      : new LeaseElection(this.#key, this.#tab, () => this.#becomeLeader(), () => this.#stepDown(), () => this.#post({ t: 'bye', tab: this.#tab }));
  }

  // The page is hidden for good, or put into the back/forward cache: a
  // frozen page must hold neither a stream nor the lead, so both go now
  // (another tab takes over at once). If the page comes back from the
  // cache, it joins again and catches up from its last ID.
  #suspend() {
    if (this.#closed || this.#suspended) return;
    this.#suspended = true;
    this.#gen++;
    this.#abort?.abort();
    this.#wake?.();
    if (this.#sync) clearTimeout(this.#sync.timer);
    this.#sync = null;
    this.#election?.close();
    this.#election = null;
    this.#role = 'none';
  }

  #resume() {
    if (this.#closed || !this.#suspended) return;
    this.#suspended = false;
    this.#join();
  }

  /** The connection state, as last reported to onStateChange. */
  get state() {
    return { ...this.#state };
  }

  /** Whether this tab holds the stream (always true when not shared). */
  get leader() {
    return this.#role === 'leader';
  }

  /** The last event ID delivered (stream mode), or null. */
  get lastEventId() {
    return this.#lastId;
  }

  /**
   * Stops the stream for good. Another tab, if any, takes it over. The
   * stored position stays, so that a client of the same user resumes from
   * it (stream mode); signOut() forgets it.
   */
  close() {
    if (this.#closed) return;
    this.#shutdown();
    this.#setState({ status: 'closed' });
  }

  /**
   * The user signed out: ends every client of this user (any stream URL)
   * in every tab of the origin, this one included, and removes every key
   * the client stored for the user in localStorage and in each tab's
   * sessionStorage. The client never starts again; for the next sign-in,
   * create a new client with that user.
   */
  signOut() {
    if (this.#signedOut) return;
    const user = this.#user;
    // The other tabs hear it before this one gives up the lead (the lead
    // is kept a moment longer, see #endSignedOut), so that none of them
    // takes over the user's stream in between.
    announceSignOut(user);
    for (const c of [...running]) if (c.user === user && c !== this.#running) c.end();
    this.#endSignedOut();
    forget(user);
  }

  /**
   * Calls listener with every event named `type` (the handler's
   * event_field), after onMessage. An unnamed event is "message". Returns
   * a function that removes the listener.
   * @param {string} type
   * @param {(message: {type: string, data: string, id: string | null}) => void} listener
   */
  on(type, listener) {
    if (typeof type !== 'string' || type === '' || CONTROL_CHARS.test(type)) {
      throw new TypeError('caddy-notify: on() takes an event name: a non-empty string without control characters');
    }
    if (CONTROL_EVENTS.has(type)) {
      throw new TypeError(`caddy-notify: "${type}" is the handler's control event: use the on${type[0].toUpperCase() + type.slice(1)} option`);
    }
    if (typeof listener !== 'function') throw new TypeError('caddy-notify: on() takes a function as its listener');
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  /** Removes a listener added with on(). */
  off(type, listener) {
    const set = this.#listeners.get(type);
    if (set?.delete(listener) && set.size === 0) this.#listeners.delete(type);
  }

  // Ends this client at a sign-out, its own or one another tab or client
  // announced, and forgets the user's events it holds in memory.
  #endSignedOut() {
    if (this.#signedOut) return;
    this.#signedOut = true;
    const user = this.#user;
    // A leader keeps the lead a moment (STOP_GRACE), so that its
    // followers hear the sign-out before one could take the stream over;
    // what it stored meanwhile (the lease) goes once it gives it up.
    if (!this.#closed) this.#shutdown(true, () => forget(user));
    this.#ring = [];
    this.#ringBytes = 0;
    this.#known = null;
    this.#lastId = null;
    this.#setState({ status: 'closed', signedOut: true });
  }

  // ---- roles ---------------------------------------------------------------

  #becomeLeader() {
    if (this.#closed || this.#role === 'leader') return;
    this.#role = 'leader';
    this.#leaderTab = this.#tab;
    if (this.#sync) {
      // Relays queued while waiting for a sync reply are dropped: the
      // stream resumes from this tab's own last ID, so the server replays
      // them, in order, with nothing before them missing.
      clearTimeout(this.#sync.timer);
      this.#sync = null;
    }
    // Announced before the first byte is relayed, so that followers ask
    // what they are missing (see #onRelay, 'leader').
    this.#post({ t: 'leader', tab: this.#tab });
    this.#run(++this.#gen);
  }

  // The lease fallback found another leader: stop the stream and follow.
  #stepDown() {
    if (this.#role !== 'leader' || this.#closed) return;
    this.#gen++;
    this.#abort?.abort();
    this.#wake?.();
    this.#role = 'follower';
    this.#leaderTab = null;
  }

  // Ends the client; `after` runs once its place in the election is given
  // up. graceful: a leader keeps its place STOP_GRACE longer (see there),
  // or until the page goes, so that a lease it renews meanwhile does not
  // outlive the page.
  #shutdown(graceful = false, after = null) {
    const wasLeader = this.#role === 'leader';
    this.#closed = true;
    this.#role = 'none';
    running.delete(this.#running);
    this.#gen++;
    this.#abort?.abort();
    this.#wake?.();
    if (this.#sync) clearTimeout(this.#sync.timer);
    this.#sync = null;
    const election = this.#election;
    this.#election = null;
    if (graceful && election && wasLeader) {
      const leave = () => {
        clearTimeout(timer);
        globalThis.removeEventListener?.('pagehide', leave);
        election.close();
        after?.();
      };
      const timer = setTimeout(leave, STOP_GRACE);
      globalThis.addEventListener?.('pagehide', leave);
    } else {
      election?.close();
      after?.();
    }
    if (this.#channel) {
      this.#channel.close();
      this.#channel = null;
    }
    globalThis.removeEventListener?.('online', this.#onOnline);
    globalThis.removeEventListener?.('pagehide', this.#onPageHide);
    globalThis.removeEventListener?.('pageshow', this.#onPageShow);
  }

  // ---- the leader's connection ---------------------------------------------

  async #run(gen) {
    while (gen === this.#gen) {
      const delay = await this.#connectOnce(gen);
      if (delay === null || gen !== this.#gen) return;
      if (delay > 0) await this.#sleep(delay);
    }
  }

  // One connection, from request to end. Returns how long to wait before
  // the next one, or null to stop.
  async #connectOnce(gen) {
    this.#setState({ status: 'connecting' });
    const headers = new Headers(this.#o.headers ?? undefined);
    headers.set('Accept', 'text/event-stream');
    if (this.#o.token) {
      // Asked on every connection, so that a retry never reuses a token
      // that expired meanwhile.
      let token;
      try {
        token = await this.#o.token();
      } catch (err) {
        if (gen !== this.#gen) return null;
        return this.#retryLater(0, 0, err);
      }
      if (gen !== this.#gen) return null;
      if (token) headers.set('Authorization', 'Bearer ' + token);
    }
    const url = new URL(this.#url);
    if (this.#lastId !== null) url.searchParams.set('last_event_id', this.#lastId);

    const abort = new AbortController();
    this.#abort = abort;
    let res;
    try {
      res = await fetch(url, { headers, credentials: this.#o.credentials, cache: 'no-store', signal: abort.signal });
    } catch (err) {
      if (gen !== this.#gen) return null;
      return this.#retryLater(0, 0, err); // offline, DNS, connection refused, CORS
    }
    if (gen !== this.#gen) {
      abort.abort();
      return null;
    }

    const status = res.status;
    if (status === 200 && /^text\/event-stream\b/i.test(res.headers.get('Content-Type') ?? '') && res.body) {
      return this.#read(gen, res, abort);
    }
    let message = await errorMessage(res);
    if (gen !== this.#gen) return null;
    if (status === 401) {
      this.#failures++;
      let again = false;
      if (this.#o.onUnauthorized) {
        this.#setState({ status: 'connecting', httpStatus: 401 });
        try {
          again = (await this.#o.onUnauthorized({ status, message })) === true;
        } catch (err) {
          reportError(err);
        }
        if (gen !== this.#gen) return null;
      }
      if (!again) return this.#stop(new NotifyError(message, status));
      // The first retry is immediate; if the refreshed credentials are
      // refused again, the backoff applies, so that a handler that always
      // answers true cannot make the client hammer the server.
      return this.#failures <= 1 ? 0 : this.#retryLater(status, 0, null, true);
    }
    if (RETRY_STATUSES.has(status)) {
      return this.#retryLater(status, retryAfter(res.headers.get('Retry-After')));
    }
    if (status === 200) message = 'the response is not an event stream';
    return this.#stop(new NotifyError(message, status));
  }

  // Backoff: minDelay doubled for each failure in a row, at most maxDelay,
  // never less than Retry-After, plus up to `jitter` of it at random.
  #retryLater(httpStatus, retryAfterMs, err, counted = false) {
    if (err) this.#report(err);
    const step = Math.min(this.#o.maxDelay, this.#o.minDelay * 2 ** (counted ? this.#failures - 1 : this.#failures));
    if (!counted) this.#failures++;
    const delay = Math.round(Math.max(step, retryAfterMs) * (1 + Math.random() * this.#o.jitter));
    this.#setState({ status: 'connecting', httpStatus: httpStatus || undefined, retryIn: delay });
    return delay;
  }

  async #read(gen, res, abort) {
    this.#failures = 0;
    this.#setState({ status: 'open' });
    let revoked = false;
    let idle = null;
    const armIdle = () => {
      if (!this.#o.idleTimeout) return;
      clearTimeout(idle);
      // No byte (not even a heartbeat) for this long: the connection is
      // dead without having said so. Reconnect.
      idle = setTimeout(() => abort.abort(), this.#o.idleTimeout);
    };
    const parser = new SSEParser({
      retry: (ms) => {
        this.#retry = ms;
      },
      position: (id) => {
        if (gen === this.#gen) this.#fromServer({ k: 'pos', id });
      },
      event: (type, data, id) => {
        if (gen !== this.#gen || revoked) return;
        const reason = CONTROL_EVENTS.has(type) ? controlReason(data) : null;
        if (reason !== null && type === 'revoked') {
          revoked = true;
          this.#fromServer({ k: 'revoked', reason });
        } else if (reason !== null) {
          this.#fromServer({ k: 'reset', reason, id });
        } else {
          this.#fromServer({ k: 'ev', type, data, id });
        }
      },
    });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    armIdle();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || gen !== this.#gen) break;
        armIdle();
        parser.feed(decoder.decode(value, { stream: true }));
        if (revoked) break;
      }
    } catch (_) {
      // The connection broke, or was aborted (idle, close, step-down).
    } finally {
      clearTimeout(idle);
      abort.abort();
    }
    if (gen !== this.#gen) return null;
    if (revoked) return null; // #fromServer stopped the client
    // The stream ended: reconnect after the server's retry field, spread
    // by jitter, so that the clients of a reloaded server do not all come
    // back in the same millisecond.
    const delay = Math.round(this.#retry * (1 + Math.random() * this.#o.jitter));
    this.#setState({ status: 'connecting', retryIn: delay });
    return delay;
  }

  // A frame from the leader's own stream: deliver it here and relay it.
  #fromServer(rec) {
    if (rec.k === 'revoked') {
      this.#post({ t: 'revoked', reason: rec.reason });
      this.#call('onRevoked', rec.reason);
      this.#finish({ status: 'closed', revoked: rec.reason });
      return;
    }
    if (this.#accept(rec)) this.#post({ t: 'rec', rec });
  }

  // Ends the client after a refusal; followers end with it.
  #stop(error) {
    this.#post({ t: 'stop', status: error.status, message: error.message });
    this.#call('onError', error);
    this.#finish({ status: 'closed', httpStatus: error.status, error: error.message });
    return null;
  }

  #finish(state) {
    if (this.#closed) return;
    this.#shutdown(true);
    this.#setState(state);
  }

  #sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = null;
        done();
      };
    });
  }

  // ---- delivery (every tab) ------------------------------------------------

  // Delivers one record unless it is a duplicate; true when delivered.
  // Stream mode drops any event whose ID is not after the last one: the
  // relay of the old leader and the replay of the new one may overlap.
  #accept(rec) {
    if (rec.k === 'reset') {
      // A reset may move the position backwards (unknown_last_event_id
      // carries the stream's current end): take it as it is.
      if (rec.id) {
        this.#ring = [];
        this.#ringBytes = 0;
        this.#known = rec.id;
        this.#position(rec.id);
      }
      this.#remember(rec);
      this.#call('onReset', rec.reason);
      return true;
    }
    if (rec.id) {
      const c = this.#lastId === null ? null : compareIds(rec.id, this.#lastId);
      if (c !== null && c <= 0) return false;
      this.#position(rec.id);
      if (this.#known === null) this.#known = rec.id;
      this.#remember(rec);
    }
    if (rec.k === 'ev') this.#deliver(rec);
    return true;
  }

  // onMessage, then the listeners of the event's name, in the order they
  // were added; one removed meanwhile is not called. Each gets its own
  // copy of the message.
  #deliver(rec) {
    const message = () => ({ type: rec.type, data: rec.data, id: rec.id ?? null });
    this.#call('onMessage', message());
    const set = this.#listeners.get(rec.type);
    if (!set) return;
    for (const fn of [...set]) {
      if (this.#signedOut) return;
      if (set.has(fn)) this.#invoke(fn, message());
    }
  }

  #position(id) {
    this.#lastId = id;
    if (!this.#o.persist) return;
    storageSet(sessionStorageOrNull(), this.#tabKey(), id);
    if (this.#role === 'leader') storageSet(localStorageOrNull(), this.#key, id);
  }

  #remember(rec) {
    if (!rec.id && rec.k !== 'reset') return; // pub/sub: nothing to sync from
    this.#ring.push(rec);
    this.#ringBytes += recSize(rec);
    while (this.#ring.length > RING_EVENTS || this.#ringBytes > RING_BYTES) {
      const old = this.#ring.shift();
      this.#ringBytes -= recSize(old);
      if (old.id) this.#known = old.id;
    }
  }

  // What a follower that last saw `since` is missing, from the ring.
  #ringAfter(since) {
    const c = this.#known === null ? null : compareIds(since, this.#known);
    if (c === null || c < 0) return { truncated: true, recs: this.#ring.slice() };
    let j = this.#ring.length - 1;
    for (; j >= 0; j--) {
      const id = this.#ring[j].id;
      const d = id ? compareIds(id, since) : null;
      if (d !== null && d <= 0) break;
    }
    return { truncated: false, recs: this.#ring.slice(j + 1) };
  }

  // ---- the relay -------------------------------------------------------------

  #post(msg) {
    try {
      this.#channel?.postMessage(msg);
    } catch (err) {
      this.#report(err);
    }
  }

  #onRelay(m) {
    if (this.#closed || this.#suspended || !m || typeof m !== 'object') return;
    const leader = this.#role === 'leader';
    switch (m.t) {
      case 'hello': // a tab opened: it learns the leader, then asks what it missed
        if (!leader) return;
        this.#post({ t: 'leader', tab: this.#tab });
        this.#post({ t: 'state', state: this.#state });
        return;
      case 'sync':
        if (leader) this.#answerSync(m.tab, m.since);
        return;
      case 'leader':
        if (leader) {
          // Only the lease fallback can get here: two tabs believed they
          // led. The lease decides; the loser steps down on its next tick.
          this.#election?.check?.();
          return;
        }
        if (m.tab !== this.#leaderTab) {
          this.#leaderTab = m.tab;
          // A new leader resumes from its own last ID, which may be ahead
          // of this tab's: ask it for what lies between.
          if (this.#lastId !== null) {
            this.#beginSync(true);
            this.#post({ t: 'sync', tab: this.#tab, since: this.#lastId });
          }
        }
        return;
      case 'sync-reply':
        if (m.to === this.#tab && this.#sync && !leader) this.#endSync(m.recs, m.truncated);
        return;
      case 'rec':
        if (leader) return;
        if (this.#sync) this.#sync.pending.push(m.rec);
        else this.#accept(m.rec);
        return;
      case 'state':
        if (!leader) this.#setState({ ...m.state, leader: false });
        return;
      case 'revoked':
        if (leader) return;
        this.#call('onRevoked', m.reason);
        this.#finish({ status: 'closed', revoked: m.reason });
        return;
      case 'stop':
        if (leader) return;
        this.#call('onError', new NotifyError(m.message, m.status));
        this.#finish({ status: 'closed', httpStatus: m.status, error: m.message });
        return;
      case 'bye':
        this.#election?.freed?.();
        return;
    }
  }

  #answerSync(tab, since) {
    const { truncated, recs } = this.#ringAfter(since);
    this.#post({ t: 'sync-reply', to: tab, truncated, recs });
  }

  // Until the leader answers, relayed events wait: delivering a newer one
  // first would make the older ones look like duplicates. The answer is
  // awaited for SYNC_TIMEOUT once a leader was asked; before a leader is
  // known, events wait for one (or for this tab to lead).
  #beginSync(asked = false) {
    if (this.#sync) clearTimeout(this.#sync.timer);
    const pending = this.#sync?.pending ?? [];
    const timer = asked ? setTimeout(() => this.#endSync([], true), SYNC_TIMEOUT) : undefined;
    this.#sync = { pending, timer };
  }

  #endSync(recs, truncated) {
    const sync = this.#sync;
    if (!sync) return;
    clearTimeout(sync.timer);
    this.#sync = null;
    if (truncated) {
      // The leader does not hold everything after our last ID: tell the
      // application, which refetches its state, as after a server reset.
      this.#accept({ k: 'reset', reason: 'relay_truncated' });
    }
    for (const rec of recs) this.#accept(rec);
    for (const rec of sync.pending) this.#accept(rec);
  }

  // ---- helpers ---------------------------------------------------------------

  #setState(s) {
    const next = { status: s.status, leader: this.#role === 'leader' };
    for (const k of ['httpStatus', 'retryIn', 'error', 'revoked', 'signedOut']) if (s[k] !== undefined) next[k] = s[k];
    this.#state = next;
    if (this.#role === 'leader') this.#post({ t: 'state', state: next });
    this.#call('onStateChange', { ...next });
  }

  // Application callbacks never break the client: an exception is
  // reported (window 'error' event, console) and delivery goes on.
  #call(name, arg) {
    const fn = this.#o[name];
    if (typeof fn === 'function') this.#invoke(fn, arg);
  }

  #invoke(fn, arg) {
    try {
      fn.call(this, arg);
    } catch (err) {
      reportError(err);
    }
  }

  #report(err) {
    if (err?.name !== 'AbortError') console.debug?.('caddy-notify:', err);
  }

  #tabKey() {
    return this.#key + '\ntab';
  }
}

// ---- sign-out ---------------------------------------------------------------------

// The clients of this page that run: { user, end }. A sign-out ends those
// of its user here at once, and in the other pages through the control
// channel (or, without BroadcastChannel, a storage event).
const running = new Set();
let listening = null; // { channel, heard: the IDs of the sign-outs handled }

function listenForSignOut() {
  if (listening) return;
  listening = { channel: null, heard: [] };
  if (typeof BroadcastChannel === 'function') {
    try {
      listening.channel = new BroadcastChannel(CONTROL_CHANNEL);
      listening.channel.onmessage = (e) => heard(e.data);
    } catch (_) {
      // no channel: the storage event still carries it
    }
  }
  globalThis.addEventListener?.('storage', (e) => {
    if (e.key !== SIGNOUT_KEY || !e.newValue) return;
    try {
      heard(JSON.parse(e.newValue));
    } catch (_) {
      // not ours
    }
  });
}

function announceSignOut(user) {
  const m = { t: 'signout', user, id: randomId() };
  handled(m.id);
  try {
    listening?.channel?.postMessage(m);
  } catch (_) {
    // the storage event below still carries it
  }
  const ls = localStorageOrNull();
  storageSet(ls, SIGNOUT_KEY, JSON.stringify(m));
  storageRemove(ls, SIGNOUT_KEY);
}

// A sign-out from another page: it arrives twice where both the channel
// and storage events work.
function heard(m) {
  if (!m || m.t !== 'signout' || typeof m.user !== 'string' || typeof m.id !== 'string') return;
  if (listening.heard.includes(m.id)) return;
  handled(m.id);
  for (const c of [...running]) if (c.user === m.user) c.end();
  // Also what closed clients of this page stored in its sessionStorage,
  // and whatever this page's clients wrote before they heard.
  forget(m.user);
}

function handled(id) {
  listening.heard.push(id);
  if (listening.heard.length > 32) listening.heard.shift();
}

// Removes every key the client stored for user: in localStorage the
// position (PREFIX + url + '\n' + user) and the lease (+ '\nlease'), in
// this tab's sessionStorage its own position (+ '\ntab').
function forget(user) {
  for (const s of [localStorageOrNull(), sessionStorageOrNull()]) {
    for (const k of storageKeys(s)) if (keyUser(k) === user) storageRemove(s, k);
  }
}

// A tab that was between two pages (a reload) when its user signed out
// elsewhere never heard it: its sessionStorage may still hold that user's
// position. A client that starts drops this tab's positions of users that
// no client of this page runs.
function sweepTab(user) {
  const s = sessionStorageOrNull();
  const keep = new Set([user]);
  for (const c of running) keep.add(c.user);
  for (const k of storageKeys(s)) {
    const u = keyUser(k);
    if (u !== null && !keep.has(u)) storageRemove(s, k);
  }
}

// The user of one of the client's storage keys, or null.
function keyUser(k) {
  if (typeof k !== 'string' || !k.startsWith(PREFIX)) return null;
  const parts = k.slice(PREFIX.length).split('\n');
  return parts.length >= 2 ? parts[1] : null;
}

// ---- leader election ----------------------------------------------------------

// Web Locks: the leader holds the lock for as long as it leads; the others
// queue for it. The browser releases it when the tab closes or crashes, and
// grants it to the next tab at once.
class LockElection {
  #release = null;
  #abort = new AbortController();

  constructor(name, onLeader) {
    navigator.locks
      .request(name, { signal: this.#abort.signal }, () => {
        if (this.#abort.signal.aborted) return;
        onLeader();
        return new Promise((resolve) => {
          this.#release = resolve;
        });
      })
      .catch((err) => {
        if (err?.name !== 'AbortError') console.debug?.('caddy-notify: lock:', err);
      });
  }

  close() {
    this.#abort.abort();
    this.#release?.();
  }
}

// The fallback where Web Locks are missing (old browsers, and pages served
// over plain HTTP on an address other than localhost, where browsers offer
// no Web Locks): a lease in localStorage that the leader renews. A leader
// that closes frees it and says so, so the next tab takes over at once; one
// that crashes is replaced after LEASE_TTL. Background tabs run timers
// rarely, so a leader may miss a renewal and lose the lease: it then steps
// down, and stream mode's deduplication keeps the handover exact.
class LeaseElection {
  #name;
  #tab;
  #onLeader;
  #onStepDown;
  #onFree;
  #leader = false;
  #closed = false;
  #timer;
  #settle = null;
  #onStorage = (e) => {
    if (e.key === this.#name && !e.newValue) this.freed();
  };

  constructor(name, tab, onLeader, onStepDown, onFree) {
    this.#name = name + '\nlease';
    this.#tab = tab;
    this.#onLeader = onLeader;
    this.#onStepDown = onStepDown;
    this.#onFree = onFree;
    globalThis.addEventListener?.('storage', this.#onStorage);
    this.#timer = setInterval(() => this.check(), LEASE_TICK);
    this.check();
  }

  #read() {
    try {
      const v = JSON.parse(localStorage.getItem(this.#name) ?? 'null');
      return v && typeof v.tab === 'string' && typeof v.exp === 'number' ? v : null;
    } catch (_) {
      return null;
    }
  }

  #write() {
    storageSet(localStorageOrNull(), this.#name, JSON.stringify({ tab: this.#tab, exp: Date.now() + LEASE_TTL }));
  }

  check() {
    if (this.#closed) return;
    const cur = this.#read();
    if (this.#leader) {
      if (cur && cur.tab !== this.#tab && cur.exp > Date.now()) {
        this.#leader = false;
        this.#onStepDown();
        return;
      }
      this.#write();
      return;
    }
    if (this.#settle === null && (!cur || cur.exp <= Date.now() || cur.tab === this.#tab)) this.#claim();
  }

  // Two tabs may claim at once: each writes, waits for the writes to
  // settle, and only the one whose claim is still there leads.
  #claim() {
    this.#write();
    this.#settle = setTimeout(() => {
      this.#settle = null;
      if (this.#closed || this.#leader) return;
      if (this.#read()?.tab === this.#tab) {
        this.#leader = true;
        this.#onLeader();
      }
    }, LEASE_SETTLE);
  }

  // The leader left: claim after a short random pause, so that several
  // followers rarely claim in the same instant.
  freed() {
    if (this.#closed || this.#leader) return;
    setTimeout(() => this.check(), Math.random() * 50);
  }

  #giveUp() {
    if (!this.#leader) return;
    this.#leader = false;
    if (this.#read()?.tab === this.#tab) storageRemove(localStorageOrNull(), this.#name);
    this.#onFree();
  }

  close() {
    this.#giveUp();
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#settle);
    globalThis.removeEventListener?.('storage', this.#onStorage);
  }
}

// ---- the SSE wire format --------------------------------------------------------

// SSEParser implements the event stream interpretation of the HTML
// standard (server-sent events, 9.2.6) for text already decoded: lines end
// with CRLF, LF or CR; "data" lines join with LF; an "id" alone moves the
// position without dispatching (the handler's position frame); "retry"
// sets the reconnection delay.
class SSEParser {
  #h;
  #buf = '';
  #skipLF = false;
  #data = [];
  #hasData = false;
  #type = '';
  #id = undefined;

  constructor(handlers) {
    this.#h = handlers;
  }

  feed(text) {
    let s = this.#buf + text;
    let start = 0;
    let i = this.#buf.length; // the buffered part holds no line end
    if (this.#skipLF && s.length > 0) {
      this.#skipLF = false;
      if (s.charCodeAt(0) === 10) start = i = 1;
    }
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.#line(s.slice(start, i));
      if (c === 13) {
        if (i + 1 === s.length) this.#skipLF = true;
        else if (s.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.#buf = s.slice(start);
  }

  #line(line) {
    if (line === '') return this.#dispatch();
    if (line.charCodeAt(0) === 58) return; // ':' comment, e.g. the heartbeat
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'data':
        this.#data.push(value);
        this.#hasData = true;
        break;
      case 'event':
        this.#type = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.#id = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.#h.retry(Number(value));
        break;
    }
  }

  #dispatch() {
    const { type, id, data, hasData } = { type: this.#type, id: this.#id, data: this.#data, hasData: this.#hasData };
    this.#type = '';
    this.#id = undefined;
    this.#data = [];
    this.#hasData = false;
    if (!hasData) {
      if (id) this.#h.position(id);
      return;
    }
    this.#h.event(type || 'message', data.join('\n'), id || undefined);
  }
}

// ---- small helpers --------------------------------------------------------------

const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

// userOf checks the user option: a non-empty string without control
// characters, or a finite number (its decimal text).
function userOf(v) {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'string' && v !== '' && !CONTROL_CHARS.test(v)) return v;
  throw new TypeError(
    'caddy-notify: the user option is required: the id of the signed-in user, a non-empty string without control characters or a finite number',
  );
}

function hasLocks() {
  return typeof navigator !== 'undefined' && typeof navigator.locks?.request === 'function';
}

function randomId() {
  return globalThis.crypto?.randomUUID?.() ?? Math.random().toString(36).slice(2) + Date.now().toString(36);
}

// compareIds orders Redis Stream entry IDs (<ms>-<seq>, numbers of any
// size): -1, 0 or 1, or null when either is not such an ID.
function compareIds(a, b) {
  const x = /^(\d+)-(\d+)$/.exec(a);
  const y = /^(\d+)-(\d+)$/.exec(b);
  if (!x || !y) return null;
  return compareDigits(x[1], y[1]) || compareDigits(x[2], y[2]);
}

function compareDigits(a, b) {
  a = a.replace(/^0+(?=\d)/, '');
  b = b.replace(/^0+(?=\d)/, '');
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

// retryAfter reads Retry-After (seconds or an HTTP date) in milliseconds.
function retryAfter(v) {
  if (!v) return 0;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? 0 : Math.max(0, t - Date.now());
}

// errorMessage returns the `error` of the handler's JSON refusal, or the
// status line.
async function errorMessage(res) {
  let text = '';
  try {
    text = await res.text();
    const v = JSON.parse(text);
    if (v && typeof v.error === 'string') return v.error;
  } catch (_) {
    // not JSON: the status text will do
  }
  return ('HTTP ' + res.status + ' ' + (res.statusText || '')).trim();
}

// controlReason returns the reason of the handler's own `reset` or
// `revoked` frame, whose data is exactly {"reason": "..."} (sse.go), or
// null for anything else. With `event_field`, a message named "reset" or
// "revoked" is written under that name too, but its data always holds the
// field that named it (and the recipient field), so it is an ordinary
// event: a publisher cannot stop or reset the clients of its recipients.
function controlReason(data) {
  try {
    const v = JSON.parse(data);
    if (v && typeof v === 'object' && !Array.isArray(v) && typeof v.reason === 'string' && Object.keys(v).length === 1) {
      return v.reason;
    }
  } catch (_) {
    // not JSON: not the handler's
  }
  return null;
}

function recSize(rec) {
  return 64 + (rec.data?.length ?? 0) * 2;
}

function reportError(err) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
  else console.error(err);
}

// Storage may be missing or refuse (privacy settings, quota): the client
// then works without it.
function localStorageOrNull() {
  try {
    return globalThis.localStorage ?? null;
  } catch (_) {
    return null;
  }
}

function sessionStorageOrNull() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch (_) {
    return null;
  }
}

function storageGet(s, key) {
  try {
    return s?.getItem(key) ?? null;
  } catch (_) {
    return null;
  }
}

function storageSet(s, key, value) {
  try {
    s?.setItem(key, value);
  } catch (_) {
    // quota or privacy mode: not fatal
  }
}

function storageKeys(s) {
  const keys = [];
  try {
    for (let i = 0; i < s.length; i++) keys.push(s.key(i));
  } catch (_) {
    // storage refused: nothing to list
  }
  return keys;
}

function storageRemove(s, key) {
  try {
    s?.removeItem(key);
  } catch (_) {
    // ignore
  }
}
