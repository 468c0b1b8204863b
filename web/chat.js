// herald chat room (chat.html): one channel per room, on herald.js (herald's
// browser client). Two transports, the same room: an event stream to listen
// and POST /publish/<room> to talk, or one WebSocket on /events/<room> for
// both (a publish message per line said). All message text is put on the page
// with textContent, so a message can never inject HTML. In a presence-* room
// (with a token) the "Online" list is herald.js's roster, from herald's own
// presence events, on either transport.
import { subscribe } from './herald.js';

(function () {
  const CHANNEL_RE = /^[A-Za-z0-9_\-.:~@]{1,128}$/;
  const PRESENCE_PREFIX = 'presence-';
  const MAX_NICK = 40;
  const MAX_TEXT = 2000;
  const MAX_LINES = 1000;

  const $ = (id) => document.getElementById(id);

  /** This tab's random id, so the page can tell its own messages from others' with the same nick. */
  const CLIENT = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('');

  // localStorage can be unavailable (privacy modes); the room still works, only without memory.
  const store = {
    get(key) { try { return localStorage.getItem(key) || ''; } catch (_) { return ''; } },
    set(key, value) { try { localStorage.setItem(key, value); } catch (_) { /* no memory, no harm */ } },
  };
  // The token is kept for this tab only, never in the address bar or localStorage.
  const tabStore = {
    get(key) { try { return sessionStorage.getItem(key) || ''; } catch (_) { return ''; } },
    set(key, value) { try { sessionStorage.setItem(key, value); } catch (_) { /* not kept */ } },
  };

  /** A JWT's claims, read without checking the signature (the server checks it); null if unreadable. */
  function claimsOf(token) {
    try {
      const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims && typeof claims === 'object' ? claims : null;
    } catch (_) {
      return null;
    }
  }

  // The last id is remembered per room and nickname: two tabs of one browser, in the
  // same room under different names, each catch up on what they themselves missed.
  const lastIdKey = (room, nick) => `herald.chat.lastId:${room}:${nick}`;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('data-')) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c);
    return node;
  }

  const hhmm = (d) => `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;

  /** The room the page is in, or null. */
  let session = null;

  function setState(name) {
    const badge = $('state');
    badge.dataset.state = name;
    badge.textContent = name === 'open' ? 'connected' : name;
  }

  function publishUrl(room, type) {
    return `/publish/${encodeURIComponent(room)}?event=${encodeURIComponent(type)}`;
  }

  function authHeaders(token) {
    const headers = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  // ---------- joining and leaving ----------

  /**
   * Subscribes to the room with herald.js: it hands over each event once, in
   * id order, resumes from the remembered id, reconnects by itself (the event
   * stream, or the WebSocket with backoff), keeps the presence roster and
   * publishes over the WebSocket or with fetch.
   */
  function join(room, nick, transport, token) {
    if (session) closeStream();
    const lastId = store.get(lastIdKey(room, nick));
    const presence = room.startsWith(PRESENCE_PREFIX);
    const s = {
      room, nick, transport, token, everOpened: false, announced: false, left: false, sub: null,
      // In a presence room herald announces who comes and goes; the page does not.
      presence,
      me: (claimsOf(token) || {}).sub || null,
    };
    session = s;
    const mine = (fn) => (...args) => { if (session === s) fn(...args); };
    s.sub = subscribe({
      channels: [room],
      transport,
      lastEventId: lastId,
      getToken: token ? () => token : undefined,
      onEvent: mine((ev) => {
        store.set(lastIdKey(room, nick), ev.id);
        render(ev.event, ev.data, ev.id);
      }),
      onGap: mine(() => noticeLine('gap', 'Some messages may be missing here: the room’s history no longer reaches back that far, or the server restarted.')),
      onPresence: mine((change) => onPresence(s, change)),
      onState: mine((state, reason) => onState(s, state, reason)),
    });

    store.set('herald.chat.nick', nick);
    tabStore.set('herald.chat.token', token || '');
    store.set('herald.chat.room', room);
    store.set('herald.chat.transport', transport);
    const q = { room, nick };
    if (transport === 'ws') q.transport = 'ws';
    history.replaceState(null, '', `${location.pathname}?${new URLSearchParams(q)}`);

    $('messages').replaceChildren();
    $('members').replaceChildren();
    $('online').hidden = !presence;
    if (lastId) noticeLine('catch-up', `Back in #${room}: what was said since you were last here follows.`);
    $('room-name').textContent = room;
    $('me').textContent = nick;
    $('via').textContent = transport === 'ws' ? 'WebSocket' : 'event stream';
    $('join-card').hidden = true;
    $('chat').hidden = false;
    $('message').focus();
  }

  function publish(s, type, payload) {
    return s.sub.publish(s.room, payload, { event: type });
  }

  function onState(s, state, reason) {
    if (state === 'open') {
      s.everOpened = true;
      // Announce ourselves once, so our own join comes back to us.
      if (!s.announced && !s.presence) {
        s.announced = true;
        publish(s, 'chat.join', { nick: s.nick, client: CLIENT })
          .catch((e) => showSendError(`Could not announce the join: ${e.message}`));
      }
    }
    if (state === 'closed') {
      if (reason === 'unauthorized' && s.everOpened) noticeLine('gap', 'Your token expired: open the room again with a fresh one.');
      else if (reason === 'unauthorized') showSendError('The server refused the stream (401): the token is missing, invalid or expired.');
      else if (reason === 'forbidden') showSendError('The server refused the stream (403): the token does not grant this room, or has no sub.');
      else if (reason === 'revoked') noticeLine('gap', 'You were disconnected from the room for good.');
      else showSendError(`The server refused the stream (${reason}).`);
    }
    setState(state === 'renewing' ? 'open' : state);
  }

  function closeStream() {
    if (session && session.sub) session.sub.close();
  }

  /**
   * Publishes the leave notice once (not in a presence room: herald announces it).
   * A beacon survives the page being closed but carries no token; with a token,
   * a keepalive fetch does the same.
   */
  function announceLeave(beacon) {
    const s = session;
    if (!s || s.left || !s.announced) return Promise.resolve();
    s.left = true;
    // Leaving with the button, a socket says goodbye itself; a closing page
    // uses a beacon, which outlives it.
    if (!beacon && s.transport === 'ws') {
      return publish(s, 'chat.leave', { nick: s.nick, client: CLIENT }).catch(() => { /* leaving anyway */ });
    }
    const body = JSON.stringify({ nick: s.nick, client: CLIENT });
    const url = publishUrl(s.room, 'chat.leave');
    if (beacon && !s.token && navigator.sendBeacon && navigator.sendBeacon(url, body)) return Promise.resolve();
    return fetch(url, { method: 'POST', body, keepalive: true, headers: authHeaders(s.token) })
      .catch(() => { /* leaving anyway */ });
  }

  async function leaveRoom() {
    await announceLeave(false);
    const s = session;
    session = null;
    if (s) s.sub.close();
    setState('idle');
    $('chat').hidden = true;
    $('join-card').hidden = false;
    history.replaceState(null, '', location.pathname);
    $('nick').focus();
  }

  // ---------- who is online (presence-* rooms) ----------

  /** The name a member goes by: its token's info.name, else its sub. */
  function memberName(sub, info) {
    return clip(info && typeof info === 'object' && info.name, MAX_NICK) || clip(String(sub), 128);
  }

  /** herald.js keeps the roster; the page draws it and says who came and went. */
  function onPresence(s, change) {
    if (change.channel !== s.room) return;
    const m = change.member;
    if (change.type === 'join' || change.type === 'leave') {
      const name = memberName(m.sub, m.info);
      noticeLine(change.type, `${name} ${change.type === 'join' ? 'joined' : 'left'}`).dataset.nick = name;
    }
    drawMembers(s, change);
  }

  function drawMembers(s, change) {
    const rows = change.members.map(({ sub, info }) => ({ sub, name: memberName(sub, info) }))
      .sort((a, b) => a.name.localeCompare(b.name));
    $('members').replaceChildren(...rows.map(({ sub, name }) => {
      const li = el('li', { class: sub === s.me ? 'me' : '', text: sub === s.me ? `${name} (you)` : name });
      li.dataset.sub = sub;
      return li;
    }));
    const unlisted = Math.max(0, change.count - change.members.length);
    $('online-count').textContent = String(change.count);
    $('online-more').hidden = unlisted === 0;
    $('online-more').textContent = `and ${unlisted} more`;
  }

  function parse(data) {
    try {
      const v = JSON.parse(data);
      return v && typeof v === 'object' ? v : null;
    } catch (_) {
      return null;
    }
  }

  const clip = (v, n) => (typeof v === 'string' ? v.slice(0, n) : '');

  function render(type, data, id) {
    const msg = parse(data);
    const nick = clip(msg && msg.nick, MAX_NICK) || 'someone';
    const mine = !!msg && msg.client === CLIENT;
    if (type === 'chat.join' || type === 'chat.leave') {
      const kind = type === 'chat.join' ? 'join' : 'leave';
      const li = noticeLine(kind, `${nick} ${kind === 'join' ? 'joined' : 'left'}`, id);
      li.dataset.nick = nick;
      return;
    }
    let text;
    let who;
    let when = new Date();
    if (type === 'chat' && msg && typeof msg.text === 'string') {
      text = clip(msg.text, MAX_TEXT);
      who = nick;
      const sent = new Date(msg.sent);
      if (!Number.isNaN(sent.getTime())) when = sent;
    } else {
      // Anything else published to the room (curl -d 'hi' …/publish/lobby) is shown as is.
      text = data;
      who = '(http)';
    }
    const li = el('li', { class: mine ? 'msg mine' : 'msg' },
      el('time', { class: 'when', text: hhmm(when) }),
      el('span', { class: 'nick', text: who }),
      el('span', { class: 'text', text }));
    li.dataset.kind = type === 'chat' ? 'message' : 'raw';
    li.dataset.nick = who;
    if (id) li.dataset.id = id;
    addLine(li);
  }

  function noticeLine(kind, text, id) {
    const li = el('li', { class: kind === 'gap' ? 'gap-line' : 'notice-line' },
      el('time', { class: 'when', text: hhmm(new Date()) }),
      el('span', { class: 'text', text }));
    li.dataset.kind = kind;
    if (id) li.dataset.id = id;
    addLine(li);
    return li;
  }

  function addLine(li) {
    const box = $('messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.append(li);
    while (box.children.length > MAX_LINES) box.firstElementChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  // ---------- sending ----------

  function showSendError(text) {
    $('send-error').textContent = text;
  }

  async function send() {
    const input = $('message');
    const text = input.value;
    if (!session || !text.trim()) return;
    showSendError('');
    $('send').disabled = true;
    try {
      // Not drawn here: the message is shown when it comes back on the stream, with its id.
      await publish(session, 'chat', { nick: session.nick, text, client: CLIENT, sent: new Date().toISOString() });
      input.value = '';
    } catch (e) {
      showSendError(`Not sent: ${e.message}`);
    } finally {
      $('send').disabled = false;
      input.focus();
    }
  }

  // ---------- wiring ----------

  function readJoinForm() {
    const nick = $('nick').value.trim().slice(0, MAX_NICK);
    const room = $('room').value.trim();
    const token = $('token').value.trim();
    if (!nick) return { error: 'Pick a nickname.' };
    if (!CHANNEL_RE.test(room)) return { error: 'A room name is 1–128 of A–Z a–z 0–9 _ - . : ~ @' };
    if (room.startsWith(PRESENCE_PREFIX) && !token) return { error: 'A presence-* room needs a token: see `herald token` in the README.' };
    return { nick, room, token, transport: $('transport').value === 'ws' ? 'ws' : 'sse' };
  }

  function init() {
    const q = new URLSearchParams(location.search);
    $('token').value = q.get('token') || tabStore.get('herald.chat.token');
    const named = (claimsOf($('token').value) || {}).herald;
    const tokenName = named && named.info && typeof named.info.name === 'string' ? named.info.name : '';
    $('nick').value = q.get('nick') || tokenName || store.get('herald.chat.nick');
    if (q.has('token')) {
      // Out of the address bar (history, screenshots, shared links) at once.
      const rest = new URLSearchParams(q);
      rest.delete('token');
      history.replaceState(null, '', `${location.pathname}${rest.toString() ? `?${rest}` : ''}`);
    }
    $('room').value = q.get('room') || store.get('herald.chat.room') || 'lobby';
    $('transport').value = (q.get('transport') || store.get('herald.chat.transport')) === 'ws' ? 'ws' : 'sse';

    $('join-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const f = readJoinForm();
      $('join-error').textContent = f.error || '';
      if (!f.error) join(f.room, f.nick, f.transport, f.token);
    });
    $('compose').addEventListener('submit', (e) => {
      e.preventDefault();
      send();
    });
    $('leave').addEventListener('click', leaveRoom);

    // Closing or navigating away: say goodbye with a beacon, which outlives the page.
    window.addEventListener('pagehide', () => {
      if (!session) return;
      announceLeave(true);
      closeStream();
    });
    // Back from the back/forward cache: come back in, catching up from the remembered id.
    window.addEventListener('pageshow', (e) => {
      if (e.persisted && session) join(session.room, session.nick, session.transport, session.token);
    });

    if (q.get('room') && q.get('nick')) {
      const f = readJoinForm();
      if (f.error) $('join-error').textContent = f.error;
      else join(f.room, f.nick, f.transport, f.token);
    } else {
      $('nick').focus();
    }
  }

  init();
})();
