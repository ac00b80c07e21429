// Type declarations of notify.js, the caddy-notify browser client.

/** One notification, as the server sent it. */
export interface NotifyMessage {
  /**
   * The SSE event name: the name the handler gave the message (its
   * `event_field`, e.g. "order_paid": 1 to 64 bytes, no control
   * characters), or "message" for an unnamed one. A message the
   * application named "reset" or "revoked" is one too: only the handler's
   * own control events reach onReset and onRevoked.
   */
  type: string;
  /** The message exactly as published (usually JSON: `JSON.parse(m.data)`). */
  data: string;
  /** Stream mode: the Redis Stream entry ID; null in pub/sub mode. */
  id: string | null;
}

/** The state of the shared stream, as this tab sees it. */
export interface NotifyState {
  /**
   * "connecting": opening, or waiting to reopen (see retryIn);
   * "open": the stream is up; "closed": stopped for good (close(), a
   * refusal, or `revoked`).
   */
  status: 'connecting' | 'open' | 'closed';
  /** Whether this tab holds the stream; the others receive it relayed. */
  leader: boolean;
  /** The status of the last refused attempt (401, 429, 503…), if any. */
  httpStatus?: number;
  /** Milliseconds until the next attempt, while waiting. */
  retryIn?: number;
  /** Why the client stopped (the server's `error` message), when it did. */
  error?: string;
  /** The reason of the `revoked` event that stopped the client, if any. */
  revoked?: RevokedReason;
  /** True once the client stopped at a sign-out: signOut() in this tab or in another. */
  signedOut?: true;
}

/** Reasons of the server's `reset` event, and the client's own. */
export type ResetReason =
  | 'history_truncated'
  | 'unknown_last_event_id'
  | 'replay_limit'
  /** A tab joined or followed a takeover and the leader no longer held every event it missed. */
  | 'relay_truncated'
  | (string & {});

/** Reasons of the server's `revoked` event. */
export type RevokedReason = 'unauthorized' | 'forbidden' | 'user_changed' | 'disconnected' | (string & {});

export interface NotifyOptions {
  /**
   * Who is signed in: the user id, a non-empty string without control
   * characters or a finite number. Required (connect throws a TypeError
   * without it): it is part of the key of the shared stream, of its lock
   * and channel, and of the stored position, so tabs of different users
   * never share one, and signOut() ends and forgets this user's.
   */
  user: string | number;
  /**
   * Called before every connection; a non-empty result is sent as
   * `Authorization: Bearer <token>`. Without it, the cookie (`token_cookie`)
   * or a query parameter in the URL (`token_query`) carries the token.
   */
  token?: () => string | null | undefined | Promise<string | null | undefined>;
  /** fetch's credentials mode; "include" for a cross-origin stream with cookies. Default "same-origin". */
  credentials?: RequestCredentials;
  /** Further request headers. */
  headers?: HeadersInit;
  /** One stream per browser, shared by the tabs of the origin. Default true. */
  shared?: boolean;
  /**
   * Stream mode: store the last event ID (localStorage, per URL and user;
   * sessionStorage, per tab) and resume from it after a reload. Default true.
   */
  persist?: boolean;
  /** Stream mode: resume after this ID instead of the stored one. */
  lastEventId?: string | null;
  /** First backoff delay after a refusal (ms). Default 1000. */
  minDelay?: number;
  /** Longest backoff delay (ms); a longer Retry-After still wins. Default 30000. */
  maxDelay?: number;
  /** Each wait is lengthened by up to this fraction of it, at random. Default 0.5. */
  jitter?: number;
  /**
   * Reconnect when nothing (not even a heartbeat) arrived for this long
   * (ms); 0 turns it off. Keep it above twice the handler's `heartbeat`,
   * and set 0 when heartbeats are off. Default 45000.
   */
  idleTimeout?: number;

  /** Every notification, named or not (see NotifyClient.on for one name). */
  onMessage?: (this: NotifyClient, message: NotifyMessage) => void;
  /** The server (or the relay) could not deliver everything missed: refetch your state. */
  onReset?: (this: NotifyClient, reason: ResetReason) => void;
  /** The server ended the stream for good; the client has stopped. */
  onRevoked?: (this: NotifyClient, reason: RevokedReason) => void;
  /**
   * The stream was refused with 401. Resolve true after refreshing the
   * credentials (the session cookie, or what `token` returns) to reconnect;
   * false (or no handler) stops the client with onError. Only the leader tab
   * calls it.
   */
  onUnauthorized?: (this: NotifyClient, refusal: { status: 401; message: string }) => boolean | Promise<boolean>;
  /** A refusal that stopped the client (400, 401, 403, 404, 405…), in every tab. */
  onError?: (this: NotifyClient, error: NotifyError) => void;
  /** Every change of state (see NotifyState). */
  onStateChange?: (this: NotifyClient, state: NotifyState) => void;
}

export declare class NotifyError extends Error {
  readonly name: 'NotifyError';
  /** The HTTP status of the refusal (200 when the response was not an event stream). */
  readonly status: number;
  constructor(message: string, status: number);
}

/** A listener of on(): called with each event of its name. */
export type NotifyListener = (this: NotifyClient, message: NotifyMessage) => void;

export declare class NotifyClient {
  /**
   * Opens the stream, or joins the one another tab holds.
   * @throws TypeError when options.user is missing or invalid.
   */
  constructor(url: string | URL, options: NotifyOptions);
  /** The current state (a copy). */
  readonly state: NotifyState;
  /** Whether this tab holds the stream. */
  readonly leader: boolean;
  /** Stream mode: the last event ID delivered, or null. */
  readonly lastEventId: string | null;
  /**
   * Stops for good; another tab, if any, takes the stream over. The stored
   * position stays (stream mode), for the next client of the same user.
   */
  close(): void;
  /**
   * The user signed out: ends every client of this user (any stream URL)
   * in every tab of the origin, this one included (their state becomes
   * closed with signedOut), and removes every key the client stored for
   * the user in localStorage and in each open tab's sessionStorage. The
   * client never starts again: create a new one for the next sign-in.
   */
  signOut(): void;
  /**
   * Calls listener, after onMessage, with every event named `type` by the
   * handler (`event_field`), in every tab; "message" for unnamed events.
   * Adding the same listener twice for a name adds it once. Returns a
   * function that removes it.
   * @throws TypeError for an empty name or one with control characters,
   * for "reset" and "revoked" (the handler's control events: use onReset
   * and onRevoked), and for a listener that is not a function.
   */
  on(type: string, listener: NotifyListener): () => void;
  /** Removes a listener added with on(); nothing when it is not there. */
  off(type: string, listener: NotifyListener): void;
}

/**
 * new NotifyClient(url, options).
 * @throws TypeError when options.user is missing or invalid.
 */
export declare function connect(url: string | URL, options: NotifyOptions): NotifyClient;
