// herald chat room (chat.html): one channel per room. Two transports, the
// same room: EventSource to listen and POST /publish/<room> to talk, or one
// WebSocket on /events/<room> for both (a publish message per line said).
// All message text is put on the page with textContent, so a message can
// never inject HTML.
'use strict';

(function () {
  const CHANNEL_RE = /^[A-Za-z0-9_\-.:~@]{1,128}$/;
  const EVENT_TYPES = ['chat', 'chat.join', 'chat.leave', 'message', 'herald.gap'];
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

  function post(room, type, payload) {
    return fetch(publishUrl(room, type), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(payload),
    }).then(async (res) => {
      if (res.ok) return res.json();
      let msg = `${res.status} ${res.statusText}`;
      try {
        const err = await res.json();
        if (err && err.message) msg += `: ${err.message}`;
      } catch (_) { /* no JSON body */ }
      throw new Error(msg);
    });
  }

  // ---------- joining and leaving ----------

  function join(room, nick, transport) {
    if (session) closeStream();
    const lastId = store.get(lastIdKey(room, nick));
    session = {
      room, nick, transport, seen: new Set(), everOpened: false, announced: false, left: false,
      close() {}, publish: (type, payload) => post(room, type, payload),
    };
    const s = session;
    if (transport === 'ws') openSocket(s, lastId);
    else openEventSource(s, lastId);

    store.set('herald.chat.nick', nick);
    store.set('herald.chat.room', room);
    store.set('herald.chat.transport', transport);
    const q = { room, nick };
    if (transport === 'ws') q.transport = 'ws';
    history.replaceState(null, '', `${location.pathname}?${new URLSearchParams(q)}`);

    $('messages').replaceChildren();
    if (lastId) noticeLine('catch-up', `Back in #${room}: what was said since you were last here follows.`);
    $('room-name').textContent = room;
    $('me').textContent = nick;
    $('via').textContent = transport === 'ws' ? 'WebSocket' : 'EventSource';
    $('join-card').hidden = true;
    $('chat').hidden = false;
    setState('connecting');
    $('message').focus();
  }

  /** Once the subscription is open: announce ourselves, so our own join comes back to us. */
  function opened(s) {
    s.everOpened = true;
    setState('open');
    if (!s.announced) {
      s.announced = true;
      s.publish('chat.join', { nick: s.nick, client: CLIENT })
        .catch((e) => showSendError(`Could not announce the join: ${e.message}`));
    }
  }

  function openEventSource(s, lastId) {
    const url = `/events/${encodeURIComponent(s.room)}` + (lastId ? `?lastEventId=${encodeURIComponent(lastId)}` : '');
    const es = new EventSource(url);
    s.close = () => es.close();
    for (const type of EVENT_TYPES) es.addEventListener(type, (ev) => onEvent(s, ev.type, ev.data, ev.lastEventId));
    es.onopen = () => { if (session === s) opened(s); };
    es.onerror = () => {
      if (session !== s) return;
      if (es.readyState === EventSource.CLOSED) setState('closed');
      else setState(s.everOpened ? 'reconnecting' : 'connecting');
    };
  }

  /**
   * One WebSocket for both directions. Each event is a JSON message {id, channel,
   * event, data}; our publishes are answered in order by {type: "published"} or
   * {type: "error"}. A WebSocket does not reconnect by itself: on close the page
   * comes back after 1–3 s, resuming from the last id it saw (lastEventId).
   */
  function openSocket(s, lastId) {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const resume = lastId ? `?lastEventId=${encodeURIComponent(lastId)}` : '';
    const ws = new WebSocket(`${scheme}//${location.host}/events/${encodeURIComponent(s.room)}${resume}`);
    const pending = [];
    let closed = false;
    s.close = () => { closed = true; ws.close(1000); };
    s.publish = (type, payload) => new Promise((resolve, reject) => {
      if (ws.readyState !== WebSocket.OPEN) {
        reject(new Error('not connected'));
        return;
      }
      pending.push({ resolve, reject });
      ws.send(JSON.stringify({ type: 'publish', channel: s.room, event: type, data: payload }));
    });
    ws.onopen = () => { if (session === s) opened(s); };
    ws.onmessage = (m) => {
      const msg = parse(m.data);
      if (!msg || session !== s) return;
      if (msg.type === 'published' || msg.type === 'error') {
        const waiter = pending.shift();
        if (!waiter) return;
        if (msg.type === 'published') waiter.resolve(msg);
        else waiter.reject(new Error(msg.message || msg.error));
        return;
      }
      onEvent(s, msg.event || 'message', msg.data, msg.id || '');
    };
    ws.onclose = () => {
      for (const waiter of pending.splice(0)) waiter.reject(new Error('connection closed'));
      if (closed || session !== s) return;
      setState(s.everOpened ? 'reconnecting' : 'connecting');
      setTimeout(() => {
        if (session === s) openSocket(s, store.get(lastIdKey(s.room, s.nick)));
      }, 1000 + Math.random() * 2000);
    };
  }

  function closeStream() {
    if (session) session.close();
  }

  /** Publishes the leave notice once. With beacon, it survives the page being closed. */
  function announceLeave(beacon) {
    const s = session;
    if (!s || s.left || !s.announced) return Promise.resolve();
    s.left = true;
    // Leaving with the button, a socket says goodbye itself; a closing page
    // uses a beacon, which outlives it.
    if (!beacon && s.transport === 'ws') {
      return s.publish('chat.leave', { nick: s.nick, client: CLIENT }).catch(() => { /* leaving anyway */ });
    }
    const body = JSON.stringify({ nick: s.nick, client: CLIENT });
    const url = publishUrl(s.room, 'chat.leave');
    if (beacon && navigator.sendBeacon && navigator.sendBeacon(url, body)) return Promise.resolve();
    return fetch(url, { method: 'POST', body, keepalive: true, headers: { 'Content-Type': 'application/json' } })
      .catch(() => { /* leaving anyway */ });
  }

  async function leaveRoom() {
    await announceLeave(false);
    closeStream();
    session = null;
    setState('idle');
    $('chat').hidden = true;
    $('join-card').hidden = false;
    history.replaceState(null, '', location.pathname);
    $('nick').focus();
  }

  // ---------- receiving ----------

  function onEvent(s, type, data, lastEventId) {
    if (session !== s) return;
    // herald.gap has no id of its own; an EventSource's lastEventId would be the previous event's.
    const id = type === 'herald.gap' ? '' : lastEventId;
    if (id) {
      if (s.seen.has(id)) return; // replayed after a reconnect or gap: already shown
      s.seen.add(id);
      store.set(lastIdKey(s.room, s.nick), id);
    }
    render(type, data, id);
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
    if (type === 'herald.gap') {
      noticeLine('gap', 'Some messages may be missing here: the room’s history no longer reaches back that far, or the server restarted.');
      return;
    }
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
      await session.publish('chat', { nick: session.nick, text, client: CLIENT, sent: new Date().toISOString() });
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
    if (!nick) return { error: 'Pick a nickname.' };
    if (!CHANNEL_RE.test(room)) return { error: 'A room name is 1–128 of A–Z a–z 0–9 _ - . : ~ @' };
    return { nick, room, transport: $('transport').value === 'ws' ? 'ws' : 'sse' };
  }

  function init() {
    const q = new URLSearchParams(location.search);
    $('nick').value = q.get('nick') || store.get('herald.chat.nick');
    $('room').value = q.get('room') || store.get('herald.chat.room') || 'lobby';
    $('transport').value = (q.get('transport') || store.get('herald.chat.transport')) === 'ws' ? 'ws' : 'sse';

    $('join-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const f = readJoinForm();
      $('join-error').textContent = f.error || '';
      if (!f.error) join(f.room, f.nick, f.transport);
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
      if (e.persisted && session) join(session.room, session.nick, session.transport);
    });

    if (q.get('room') && q.get('nick')) {
      const f = readJoinForm();
      if (f.error) $('join-error').textContent = f.error;
      else join(f.room, f.nick, f.transport);
    } else {
      $('nick').focus();
    }
  }

  init();
})();
