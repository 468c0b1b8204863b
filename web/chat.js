// herald chat room (chat.html): one channel per room, EventSource to listen,
// POST /publish/<room> to talk. All message text is put on the page with
// textContent, so a message can never inject HTML.
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

  function join(room, nick) {
    if (session) closeStream();
    const lastId = store.get(lastIdKey(room, nick));
    const url = `/events/${encodeURIComponent(room)}` + (lastId ? `?lastEventId=${encodeURIComponent(lastId)}` : '');
    const es = new EventSource(url);
    session = { room, nick, es, seen: new Set(), everOpened: false, announced: false, left: false };
    const s = session;

    for (const type of EVENT_TYPES) es.addEventListener(type, (ev) => onEvent(s, ev));
    es.onopen = () => {
      if (session !== s) return;
      s.everOpened = true;
      setState('open');
      if (!s.announced) {
        // Announce only once the stream is open, so our own join comes back to us.
        s.announced = true;
        post(room, 'chat.join', { nick, client: CLIENT }).catch((e) => showSendError(`Could not announce the join: ${e.message}`));
      }
    };
    es.onerror = () => {
      if (session !== s) return;
      if (es.readyState === EventSource.CLOSED) setState('closed');
      else setState(s.everOpened ? 'reconnecting' : 'connecting');
    };

    store.set('herald.chat.nick', nick);
    store.set('herald.chat.room', room);
    history.replaceState(null, '', `${location.pathname}?${new URLSearchParams({ room, nick })}`);

    $('messages').replaceChildren();
    if (lastId) noticeLine('catch-up', `Back in #${room}: what was said since you were last here follows.`);
    $('room-name').textContent = room;
    $('me').textContent = nick;
    $('join-card').hidden = true;
    $('chat').hidden = false;
    setState('connecting');
    $('message').focus();
  }

  function closeStream() {
    if (session && session.es) session.es.close();
  }

  /** Publishes the leave notice once. With beacon, it survives the page being closed. */
  function announceLeave(beacon) {
    const s = session;
    if (!s || s.left || !s.announced) return Promise.resolve();
    s.left = true;
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

  function onEvent(s, ev) {
    if (session !== s) return;
    // herald.gap has no id of its own; ev.lastEventId would be the previous event's.
    const id = ev.type === 'herald.gap' ? '' : ev.lastEventId;
    if (id) {
      if (s.seen.has(id)) return; // replayed after a reconnect or gap: already shown
      s.seen.add(id);
      store.set(lastIdKey(s.room, s.nick), id);
    }
    render(ev.type, ev.data, id);
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
      await post(session.room, 'chat', { nick: session.nick, text, client: CLIENT, sent: new Date().toISOString() });
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
    return { nick, room };
  }

  function init() {
    const q = new URLSearchParams(location.search);
    $('nick').value = q.get('nick') || store.get('herald.chat.nick');
    $('room').value = q.get('room') || store.get('herald.chat.room') || 'lobby';

    $('join-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const f = readJoinForm();
      $('join-error').textContent = f.error || '';
      if (!f.error) join(f.room, f.nick);
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
      if (e.persisted && session) join(session.room, session.nick);
    });

    if (q.get('room') && q.get('nick')) {
      const f = readJoinForm();
      if (f.error) $('join-error').textContent = f.error;
      else join(f.room, f.nick);
    } else {
      $('nick').focus();
    }
  }

  init();
})();
