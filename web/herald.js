/* @ts-self-types="./herald.d.ts" */
// herald.js: herald's browser client (SPEC §16). One ES module, no
// dependencies, no build step. Served by herald at /herald.js, with its
// TypeScript declarations at /herald.d.ts. docs/herald-js.md has the guide.
//
//   import { subscribe } from '/herald.js';
//   const sub = subscribe({ channels: ['news'], onEvent: (e) => console.log(e.data) });
//
// What it does for a page:
// - hands over events in id order as {id, event, data, channel}, on an event
//   stream ("sse", read with fetch) or a WebSocket ("ws");
// - renews the token (getToken) shortly before its `exp` and on
//   `herald.expired`, and resumes from the last id: nothing is lost (a replay,
//   or onGap when the server cannot prove it);
// - ends for good, with onState("closed", reason), on `herald.disconnected`
//   with reason "revoked", on a 401 or a 403: no retry loop;
// - otherwise reconnects with backoff and jitter, resuming from the last id;
// - keeps each presence channel's roster from the snapshot, joins and leaves;
// - publishes over the socket ("ws") or with fetch ("sse").
//
// Why fetch and not EventSource for "sse": an EventSource hands a page only
// the event types it names in advance, cannot send the token in a header, and
// tells nothing of a refusal's status. fetch reads the same stream and does
// all three; the server cannot tell them apart.

const MAX_DELAY_MS = 30000; // the longest wait between two reconnects
const WS_BASE_DELAY_MS = 1000; // the first wait of a WebSocket (no retry: field there)
const SSE_BASE_DELAY_MS = 3000; // until the stream's own retry: field says otherwise
const RENEW_MARGIN_MIN_MS = 1000; // renew at least this long before exp...
const RENEW_MARGIN_MAX_MS = 60000; // ...and at most this long
const DRAIN_MS = 10000; // how long a replaced socket may wait for its publish answers

/**
 * Subscribes to one or more channels. See herald.d.ts for every option.
 * @param {import('./herald.d.ts').SubscribeOptions} options
 * @returns {import('./herald.d.ts').Subscription}
 */
export function subscribe(options) {
  const o = options || {};
  const channels = [...new Set([].concat(o.channels || []).map(String))];
  if (!channels.length) throw new TypeError('herald: subscribe needs at least one channel');
  const transport = o.transport || 'sse';
  if (transport !== 'sse' && transport !== 'ws') throw new TypeError(`herald: unknown transport ${transport}`);
  const base = new URL(o.url || '/', globalThis.location && location.href).href.replace(/\/+$/, '');
  const credentials = o.withCredentials ? 'include' : 'same-origin';

  let lastId = o.lastEventId ? String(o.lastEventId) : '';
  let token = null; // the token from getToken(), or null
  let tokenFresh = false; // from getToken() since the last connection that opened
  let conn = null; // the connection events are taken from
  let step = 0; // bumped by every open() and by close(): a newer one wins
  let opening = false; // an open() waits for getToken()
  let closed = false;
  let state = '';
  let attempt = 0; // reconnects since the last connection that opened
  let retryMs = 0; // the event stream's retry: field
  let retryTimer = 0;
  let renewTimer = 0;
  let firstToken = null; // settles once the first getToken() has
  const outbox = []; // WebSocket publishes waiting for an open socket
  const rosters = new Map(); // presence channel -> {count, truncated, members: Map(sub -> info)}

  // A callback that throws must not stop the subscription; the error still
  // reaches the console (and window.onerror).
  function call(fn, ...args) {
    if (typeof fn !== 'function') return;
    try {
      fn(...args);
    } catch (e) {
      setTimeout(() => { throw e; });
    }
  }

  function setState(next, reason) {
    if (state === next || closed) return;
    state = next;
    call(o.onState, next, reason);
  }

  // ---------- tokens ----------

  /** Asks getToken(); true when the token changed. */
  async function obtainToken() {
    const t = await o.getToken();
    const next = t ? String(t) : null;
    tokenFresh = true;
    if (next === token) return false;
    token = next;
    scheduleRenewal();
    return true;
  }

  /** Milliseconds left before the token's exp by this clock, or Infinity (no exp, no JWT). */
  function tokenLeft() {
    const exp = token && Number((claimsOf(token) || {}).exp);
    return exp ? exp * 1000 - Date.now() : Infinity;
  }

  /**
   * Renews a quarter of the token's life before its exp (at least 1 s, at
   * most 60 s before). A token already past its exp by this clock gets no
   * timer: the clock is wrong, and the server's herald.expired decides.
   */
  function scheduleRenewal() {
    clearTimeout(renewTimer);
    const left = tokenLeft();
    if (!(left > 0 && left < Infinity)) return;
    const margin = Math.min(RENEW_MARGIN_MAX_MS, Math.max(RENEW_MARGIN_MIN_MS, left / 4));
    renewTimer = setTimeout(() => {
      // Not connected: the reconnect fetches a token itself.
      if (!closed && conn && !opening) renew('expiring');
    }, Math.min(Math.max(left - margin, 1000), 2 ** 31 - 1)); // setTimeout holds 24.8 days at most
  }

  /**
   * A new token, then a new connection from the last id; the old one serves
   * until then. Before exp, the same token again keeps the connection as it
   * is (the server's herald.expired will come at exp).
   */
  function renew(why) {
    setState('renewing', why);
    open(true, why === 'expiring');
  }

  // ---------- connecting ----------

  /**
   * Opens a new connection (first getting a token when `withToken`), then
   * retires the one it replaces: from then on, only the new one's events
   * count, and it resumes after the last id handed over.
   */
  async function open(withToken, keepIfSame) {
    clearTimeout(retryTimer);
    const mine = ++step;
    if (withToken && o.getToken) {
      opening = true;
      let changed;
      try {
        changed = await obtainToken();
      } catch (e) {
        if (mine === step) {
          opening = false;
          finish('get_token_failed', e);
        }
        return;
      }
      if (mine !== step) return;
      opening = false;
      if (keepIfSame && !changed && conn) {
        tokenFresh = false;
        setState('open');
        return;
      }
    }
    const old = conn;
    conn = transport === 'ws' ? openSocket() : openStream();
    if (old) old.retire(false);
  }

  /** A connection was answered with its stream or socket. */
  function opened() {
    attempt = 0;
    tokenFresh = false;
    setState('open');
    flushOutbox();
  }

  /** The connection ended or failed; come back later unless something else already took over. */
  function ended(c, reason) {
    if (c !== conn) return;
    conn = null;
    c.retire(true);
    if (opening) return; // a renewal is under way: it opens the next one
    retry(reason);
  }

  function retry(reason) {
    if (closed) return;
    setState('reconnecting', reason);
    const base = retryMs || (transport === 'ws' ? WS_BASE_DELAY_MS : SSE_BASE_DELAY_MS);
    const delay = Math.min(MAX_DELAY_MS, base * 2 ** Math.min(attempt++, 10));
    // Jitter: between one and one and a half times the delay, so that many
    // pages cut at once (a restart) do not come back at once.
    const wait = delay * (1 + Math.random() / 2);
    // A token within a second of its exp would be refused at connect.
    retryTimer = setTimeout(() => open(tokenLeft() < RENEW_MARGIN_MIN_MS), wait);
  }

  /** The server refused the connection with this HTTP status. */
  function refused(c, status, code) {
    if (c !== conn) return;
    if (status === 401 && !tokenFresh && o.getToken) {
      // A token from before the last connection (a long outage, a sleeping
      // laptop) may have expired meanwhile: one fresh token, one more try.
      conn = null;
      c.retire(true);
      renew('unauthorized');
    } else if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
      // 401, 403, a bad channel name: asking again cannot help.
      finish(code || (status === 401 ? 'unauthorized' : status === 403 ? 'forbidden' : `http_${status}`));
    } else {
      ended(c, `http_${status}`);
    }
  }

  /** Ends the subscription for good. */
  function finish(reason, error) {
    if (closed) return;
    closed = true;
    step += 1;
    opening = false;
    clearTimeout(retryTimer);
    clearTimeout(renewTimer);
    if (conn) conn.retire(true);
    conn = null;
    for (const p of outbox.splice(0)) p.reject(new Error(`herald: the subscription is closed (${reason})`));
    state = 'closed';
    call(o.onState, 'closed', reason, error);
  }

  /** The stream's address; the token goes in the query only on a WebSocket (it cannot carry a header). */
  function streamUrl(scheme, withToken) {
    const q = new URLSearchParams();
    let path = '/events';
    if (channels.length === 1) path += `/${encodeURIComponent(channels[0])}`;
    else for (const ch of channels) q.append('channel', ch);
    if (lastId) q.set('lastEventId', lastId);
    if (withToken && token) q.set('token', token);
    const query = q.toString();
    return base.replace(/^http/, scheme) + path + (query ? `?${query}` : '');
  }

  // ---------- the event stream (transport "sse") ----------

  function openStream() {
    const abort = new AbortController();
    const c = { retire: () => abort.abort() };
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    fetch(streamUrl('http', false), { headers, credentials, cache: 'no-store', signal: abort.signal })
      .then(async (res) => {
        const type = res.headers.get('Content-Type') || '';
        if (!res.ok || !type.startsWith('text/event-stream')) {
          refused(c, res.status, await errorCode(res));
          return;
        }
        if (c !== conn) return;
        opened();
        const parse = sseParser((ev) => {
          if (c === conn) handle(c, ev);
        });
        const reader = res.body.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done || c !== conn) break;
          parse(value);
        }
        ended(c, 'stream_ended');
      })
      .catch(() => ended(c, 'network_error'));
    return c;
  }

  /**
   * An event stream parser: bytes in, {id, event, data} out (the WHATWG
   * rules: fields, comments, CR / LF / CRLF line ends, one event per blank line).
   */
  function sseParser(emit) {
    const decoder = new TextDecoder();
    let text = '';
    let id = '';
    let event = '';
    let data = [];
    let afterCR = false; // the last chunk ended with CR: a LF opening the next one is its pair
    return (bytes) => {
      text += decoder.decode(bytes, { stream: true });
      if (afterCR && text[0] === '\n') text = text.slice(1);
      const lines = text.split(/\r\n|\r|\n/);
      text = lines.pop(); // not ended yet
      afterCR = lines.length > 0 && text === '' && /\r$/.test(bytesTail(bytes));
      for (const line of lines) {
        if (line === '') {
          if (data.length) emit({ id, event: event || 'message', data: data.join('\n') });
          id = '';
          event = '';
          data = [];
          continue;
        }
        if (line[0] === ':') continue; // a comment: herald's heartbeat
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value[0] === ' ') value = value.slice(1);
        if (field === 'data') data.push(value);
        else if (field === 'event') event = value;
        else if (field === 'id') id = value;
        else if (field === 'retry' && /^\d+$/.test(value)) retryMs = Number(value);
      }
    };
  }

  // ---------- the WebSocket (transport "ws") ----------

  function openSocket() {
    const ws = new WebSocket(streamUrl('ws', true));
    let wasOpen = false;
    const c = {
      ws,
      pending: [], // publishes sent, waiting for their answer in order
      retired: false,
      retire(now) {
        c.retired = true;
        // A replaced socket keeps its unanswered publishes until they are answered.
        if (now || !c.pending.length) ws.close(1000);
        else setTimeout(() => ws.close(1000), DRAIN_MS);
      },
    };
    ws.onopen = () => {
      wasOpen = true;
      if (c === conn) opened();
    };
    ws.onmessage = (m) => {
      const msg = parseJson(m.data);
      if (!msg) return;
      if (msg.type === 'published' || msg.type === 'error') {
        const p = c.pending.shift();
        if (p) {
          const { type, ...answer } = msg;
          if (type === 'published') p.resolve(answer);
          else p.reject(publishError(0, answer));
        }
        if (c.retired && !c.pending.length) ws.close(1000);
        return;
      }
      // A retired socket's events come again, replayed, on its successor.
      if (c !== conn) return;
      handle(c, {
        id: msg.id || '',
        event: msg.event || 'message',
        data: String(msg.data),
        channel: typeof msg.channel === 'string' ? msg.channel : null,
      });
    };
    ws.onclose = (e) => {
      for (const p of c.pending.splice(0)) {
        p.reject(new Error('herald: the connection closed before the publish was answered'));
      }
      if (c !== conn) return;
      if (wasOpen) {
        ended(c, `closed_${e.code}`);
        return;
      }
      // A refused upgrade shows no status to a page: ask with HEAD, which
      // answers what GET would (SPEC §6).
      fetch(streamUrl('http', true), { method: 'HEAD', credentials, cache: 'no-store' })
        .then((res) => (res.ok ? ended(c, 'ws_refused') : refused(c, res.status, '')))
        .catch(() => ended(c, 'network_error'));
    };
    return c;
  }

  function flushOutbox() {
    const c = conn;
    if (!c || !c.ws || c.ws.readyState !== WebSocket.OPEN) return;
    while (outbox.length) {
      const p = outbox.shift();
      c.pending.push(p);
      c.ws.send(p.text);
    }
  }

  // ---------- what arrives ----------

  function handle(c, ev) {
    if (ev.channel === undefined) ev.channel = channels.length === 1 ? channels[0] : null;
    switch (ev.event) {
      case 'herald.gap':
        call(o.onGap, parseJson(ev.data) || { channel: ev.channel });
        return;
      case 'herald.presence':
      case 'herald.join':
      case 'herald.leave':
        presence(ev.event, parseJson(ev.data));
        return;
      case 'herald.expired':
        // The stream ends after this; a renewal already under way opens the next one.
        if (!opening) {
          conn = null;
          c.retire(false);
          renew('expired');
        }
        return;
      case 'herald.disconnected': {
        const why = (parseJson(ev.data) || {}).reason;
        conn = null;
        c.retire(false);
        if (why === 'revoked') {
          finish('revoked');
        } else if (!opening) {
          // Come back at once (within a second, so that a whole channel cut at
          // once does not come back in one instant), with a new token: new grants.
          setState('reconnecting', 'disconnected');
          clearTimeout(retryTimer);
          retryTimer = setTimeout(() => open(true), Math.random() * 1000);
        }
        return;
      }
      default:
        if (ev.event.startsWith('herald.')) return; // a heartbeat, or a notice this version does not know
    }
    if (ev.id) lastId = ev.id;
    call(o.onEvent, { id: ev.id, event: ev.event, data: ev.data, channel: ev.channel });
  }

  /** The roster of a presence channel: the snapshot replaces it, joins and leaves change it. */
  function presence(type, msg) {
    if (!msg || typeof msg.channel !== 'string') return;
    const channel = msg.channel;
    let roster = rosters.get(channel);
    let change;
    let member;
    if (type === 'herald.presence') {
      roster = { count: 0, truncated: !!msg.truncated, members: new Map() };
      for (const m of Array.isArray(msg.members) ? msg.members : []) roster.members.set(String(m.sub), m.info);
      roster.count = Math.max(Number(msg.count) || 0, roster.members.size);
      rosters.set(channel, roster);
      change = 'snapshot';
    } else {
      if (!roster) return; // the snapshot always comes first
      member = { sub: String(msg.sub), info: msg.info };
      const known = roster.members.has(member.sub);
      if (type === 'herald.join') {
        roster.members.set(member.sub, member.info);
        if (!known) roster.count += 1;
        change = known ? 'update' : 'join';
      } else {
        if (!known) return;
        roster.members.delete(member.sub);
        roster.count = Math.max(0, roster.count - 1);
        change = 'leave';
      }
    }
    call(o.onPresence, {
      channel, type: change, member, members: members(channel), count: roster.count, truncated: roster.truncated,
    });
  }

  function members(channel) {
    const roster = rosters.get(channel);
    return roster ? [...roster.members].map(([sub, info]) => ({ sub, info })) : [];
  }

  // ---------- publishing ----------

  async function publish(channel, data, opts) {
    const { event, idempotencyKey } = opts || {};
    if (closed) throw new Error('herald: the subscription is closed');
    if (transport === 'ws') {
      const msg = { type: 'publish', channel: String(channel), data };
      if (event) msg.event = event;
      if (idempotencyKey) msg.idempotency_key = idempotencyKey;
      return new Promise((resolve, reject) => {
        outbox.push({ text: JSON.stringify(msg), resolve, reject });
        flushOutbox();
      });
    }
    await firstToken;
    const headers = { 'Content-Type': typeof data === 'string' ? 'text/plain;charset=UTF-8' : 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
    const url = `${base}/publish/${encodeURIComponent(channel)}${event ? `?event=${encodeURIComponent(event)}` : ''}`;
    const body = typeof data === 'string' ? data : JSON.stringify(data);
    const res = await fetch(url, { method: 'POST', headers, body, cache: 'no-store' });
    const answer = await res.json().catch(() => null);
    if (!res.ok) throw publishError(res.status, answer);
    if (answer && res.headers.get('Idempotent-Replayed') === 'true') answer.replayed = true;
    return answer;
  }

  // ---------- start ----------

  setState('connecting');
  firstToken = open(!!o.getToken).catch(() => {});

  return {
    publish,
    members,
    get lastEventId() {
      return lastId;
    },
    close() {
      finish('client');
    },
  };
}

// ---------- helpers ----------

/** A JWT's claims, read without checking anything (the server checks); null when unreadable. */
function claimsOf(token) {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch (_) {
    return null;
  }
}

function parseJson(text) {
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' ? v : null;
  } catch (_) {
    return null;
  }
}

/** The last byte of a chunk as text ('' when empty): did it end with CR? */
function bytesTail(bytes) {
  return bytes.length ? String.fromCharCode(bytes[bytes.length - 1]) : '';
}

/** The `error` code of a herald error answer, or ''. */
async function errorCode(res) {
  const body = await res.json().catch(() => null);
  return body && typeof body.error === 'string' ? body.error : '';
}

/** An Error for a refused publish, with its HTTP status (0 over a WebSocket) and herald's error code. */
function publishError(status, answer) {
  const err = new Error((answer && answer.message) || `herald: publish failed (${status})`);
  err.status = status;
  err.code = (answer && answer.error) || '';
  err.body = answer;
  return err;
}
