// TypeScript declarations for herald.js, herald's browser client (SPEC §16).
// Served by herald at /herald.d.ts, beside /herald.js. docs/herald-js.md has the guide.

/** `"sse"`: an event stream read with fetch (the default). `"ws"`: one WebSocket for events and publishes. */
export type Transport = 'sse' | 'ws';

/**
 * Where a subscription stands:
 * - `connecting`: the first connection is being made;
 * - `open`: events flow;
 * - `renewing`: getting a new token from `getToken()` (the old connection serves meanwhile, when it still can);
 * - `reconnecting`: the connection was lost; the next try comes after a backoff with jitter;
 * - `closed`: ended for good (see `CloseReason`); nothing more is asked of the server.
 */
export type State = 'connecting' | 'open' | 'renewing' | 'reconnecting' | 'closed';

/**
 * Why a subscription closed: `client` (`close()` was called), `revoked` (the server's
 * `herald.disconnected` with reason `revoked`), `unauthorized` (401), `forbidden` (403),
 * `get_token_failed` (`getToken()` threw), or another code of herald's error answer
 * (`auth_not_configured`, `bad_channel`, ...) or `http_<status>` for a final 4xx.
 */
export type CloseReason =
  | 'client' | 'revoked' | 'unauthorized' | 'forbidden' | 'get_token_failed' | (string & {});

/** One event, handed over in id order. */
export interface HeraldEvent {
  /** The server's id: a decimal integer, as a string. */
  id: string;
  /** The event type; `"message"` when the publisher named none. */
  event: string;
  /** The data, as published (a JSON value published in a batch or over a socket arrives as its JSON text). */
  data: string;
  /**
   * The channel: always on a WebSocket and on a one-channel subscription; `null`
   * on a multi-channel event stream, whose wire does not carry it.
   */
  channel: string | null;
}

/** A `herald.gap` notice: the events of `channel` after the last id may be incomplete. */
export interface Gap {
  channel: string;
  last_event_id?: string;
  reason?: string;
  [field: string]: unknown;
}

/** A member of a presence channel: its token's `sub` and `info`. */
export interface Member {
  sub: string;
  info: unknown;
}

/** A change of a presence channel's roster, with the roster after it. */
export interface PresenceChange {
  channel: string;
  /**
   * `snapshot`: the roster as the server sent it on (re)connecting (it replaces what was
   * known); `join`: a member came; `update`: a member's info changed; `leave`: a member left.
   */
  type: 'snapshot' | 'join' | 'update' | 'leave';
  /** The member who came, changed or left (absent for a snapshot). */
  member?: Member;
  /** Everyone known now, this subscription's own member included. */
  members: Member[];
  /** How many members the channel has (more than `members` when the snapshot was truncated). */
  count: number;
  /** The snapshot listed only the first members (the server's `--presence-max-members`). */
  truncated: boolean;
}

export interface SubscribeOptions {
  /** herald's base URL, e.g. `"https://push.example.com"`; default: the page's origin. */
  url?: string;
  /** One channel or up to 32. */
  channels: string | readonly string[];
  /** Default `"sse"`. */
  transport?: Transport;
  /**
   * Returns a token (a JWT, or herald's publish token), or a promise of one; called
   * before the first connection, shortly before the token's `exp`, on `herald.expired`,
   * on `herald.disconnected` (new grants), and once after a 401 with an older token.
   * A falsy answer means no token. Throwing closes the subscription (`get_token_failed`).
   */
  getToken?: () => string | null | undefined | PromiseLike<string | null | undefined>;
  /** Resume after this id: every retained event after it is replayed first (or a gap is told). */
  lastEventId?: string | null;
  /** Send cookies to another origin (cookie auth, `--auth-cookie`); default false. */
  withCredentials?: boolean;
  onEvent?: (event: HeraldEvent) => void;
  onGap?: (gap: Gap) => void;
  onPresence?: (change: PresenceChange) => void;
  /** `reason` says why for `renewing`, `reconnecting` and `closed`; `error` is what `getToken()` threw. */
  onState?: (state: State, reason?: CloseReason, error?: unknown) => void;
}

export interface PublishOptions {
  /** The event type (1–64 of `A–Z a–z 0–9 _ - . :`, not `herald.*`). */
  event?: string;
  /**
   * Sent as the `Idempotency-Key` header (`"sse"`) or the `idempotency_key` field (`"ws"`):
   * a retry with the same key publishes nothing and answers the first publish again.
   */
  idempotencyKey?: string;
}

/** The server's answer to a publish. */
export interface Published {
  id: string;
  channel: string;
  /** Live subscribers reached. */
  subscribers: number;
  /** This answer repeats an earlier publish with the same idempotency key. */
  replayed?: boolean;
}

/** How a publish fails: the promise rejects with this. */
export interface PublishError extends Error {
  /** The HTTP status; 0 for an error answered over the WebSocket. */
  status: number;
  /** herald's error code (`forbidden`, `bad_channel`, ...), or `""`. */
  code: string;
  /** herald's error answer, as JSON. */
  body: unknown;
}

export interface Subscription {
  /**
   * Publishes one event: over the socket with `"ws"` (waiting for it to be open), with
   * `fetch` and the current token as `Authorization: Bearer` with `"sse"`. A string is
   * sent as it is; any other value as its JSON text.
   */
  publish(channel: string, data: unknown, options?: PublishOptions): Promise<Published>;
  /** The roster of a presence channel of this subscription; empty before its snapshot. */
  members(channel: string): Member[];
  /** The id of the last event handed to `onEvent` (or the `lastEventId` given), `""` if none. */
  readonly lastEventId: string;
  /** Ends the subscription and its connection; publishes still waiting are rejected. */
  close(): void;
}

/** Subscribes to one or more channels; the connection starts at once. */
export declare function subscribe(options: SubscribeOptions): Subscription;
