// herald demo page (index.html): subscribe with EventSource, show every event,
// publish single events or batches, list channels, with an access token when
// one is given (and a new one fetched when it expires). Only the public HTTP
// API is used. Every piece of server or user text is put on the page with
// textContent, never parsed as HTML.
'use strict';

(function () {
  const CHANNEL_RE = /^[A-Za-z0-9_\-.:~@]{1,128}$/;
  const EVENT_TYPE_RE = /^[A-Za-z0-9_\-.:]{1,64}$/;
  const MAX_CHANNELS = 32;
  const MAX_LOG = 500;
  const CHANNELS_EVERY_MS = 3000;

  const $ = (id) => document.getElementById(id);

  /** Creates an element; string children become text nodes (never HTML). */
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

  /** "a, b c" and repeated params -> ["a", "b", "c"], order kept, no repeats. */
  function splitList(values) {
    const out = [];
    for (const v of values) {
      for (const part of String(v).split(/[\s,]+/)) {
        if (part && !out.includes(part)) out.push(part);
      }
    }
    return out;
  }

  function clock(d) {
    const p = (n, w) => String(n).padStart(w, '0');
    return `${p(d.getHours(), 2)}:${p(d.getMinutes(), 2)}:${p(d.getSeconds(), 2)}.${p(d.getMilliseconds(), 3)}`;
  }

  // ---------- state ----------

  const state = {
    es: null,          // the current EventSource, or null
    everOpened: false, // has the current EventSource been open once (connecting vs reconnecting)
    listening: new Set(), // event types with a listener on the current EventSource
    seen: new Set(),   // ids already in the log: replays after a gap or reconnect are not shown twice
    count: 0,          // events shown
    seq: 0,            // arrival order of log lines, for tests and readers
    lastId: '',        // id of the newest event received
    channels: [],      // what the current stream is on, to resume it with a new token
    types: [],
    renewUrl: '',      // ?renew=: where a new token comes from on herald.expired
  };

  // ---------- access token ----------

  /** The token in the form: a JWT or the publish token, or '' for none. */
  function token() {
    return $('sub-token').value.trim();
  }

  /** Headers carrying the token on fetch requests (publishes, /channels). */
  function authHeaders() {
    const t = token();
    return t ? { Authorization: `Bearer ${t}` } : {};
  }

  /**
   * A new token from the renew URL: GET with the page's cookies (the app's
   * session), answered as text or as JSON {"token": "..."}.
   */
  async function fetchToken(url) {
    const res = await fetch(url, { credentials: 'include', cache: 'no-store' });
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    const text = (await res.text()).trim();
    let t = text;
    if (text.startsWith('{')) t = JSON.parse(text).token;
    if (typeof t !== 'string' || !t) throw new Error('the answer holds no token');
    return t;
  }

  // ---------- connection ----------

  function setState(name) {
    const badge = $('state');
    badge.dataset.state = name;
    badge.textContent = name;
    $('sub-stop').disabled = name === 'idle' || name === 'closed' || name === 'expired';
  }

  /** The stream's URL; with `tok`, the token goes in ?token= (EventSource cannot set headers). */
  function streamUrl(channels, lastEventId, tok) {
    const params = new URLSearchParams();
    let path;
    if (channels.length === 1) {
      path = '/events/' + encodeURIComponent(channels[0]);
    } else {
      path = '/events';
      for (const c of channels) params.append('channel', c);
    }
    if (lastEventId) params.set('lastEventId', lastEventId);
    if (tok) params.set('token', tok);
    const qs = params.toString();
    return qs ? `${path}?${qs}` : path;
  }

  function listenFor(type) {
    if (!state.es || state.listening.has(type)) return;
    state.listening.add(type);
    const handler = { 'herald.gap': onGap, 'herald.expired': onExpired }[type] || onEvent;
    state.es.addEventListener(type, handler);
  }

  /** Opens the stream; `resume` keeps the ids already shown (a renewal). */
  function connect(channels, types, lastEventId, resume = false) {
    disconnect(false);
    const tok = token();
    const es = new EventSource(streamUrl(channels, lastEventId, tok));
    state.es = es;
    state.everOpened = false;
    state.listening = new Set();
    if (!resume) state.seen = new Set();
    state.channels = channels;
    state.types = types;
    for (const t of ['message', 'herald.gap', 'herald.expired', ...types]) listenFor(t);

    es.onopen = () => {
      if (state.es !== es) return;
      if (state.everOpened) sysLine('reconnected');
      state.everOpened = true;
      setState('open');
      refreshChannels();
    };
    es.onerror = () => {
      if (state.es !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        setState('closed');
        sysLine('the server refused the stream; EventSource will not retry' + (tok ? ' (is the token valid and does it grant these channels?)' : ''));
      } else if (state.everOpened) {
        if ($('state').dataset.state !== 'reconnecting') sysLine('connection lost, reconnecting…');
        setState('reconnecting');
      } else {
        setState('connecting');
      }
    };

    setState('connecting');
    // The token is not shown on the page.
    $('stream-url').textContent = streamUrl(channels, lastEventId, tok ? 'TOKEN' : '').replace('token=TOKEN', 'token=…');
    $('try-text').textContent = tryText(channels);
    sysLine(`subscribing to ${channels.join(', ')}` + (lastEventId ? ` after id ${lastEventId}` : ''));
  }

  function disconnect(log = true) {
    if (!state.es) return;
    state.es.close();
    state.es = null;
    setState('idle');
    if (log) sysLine('disconnected');
  }

  // ---------- the log ----------

  function addLine(li) {
    const log = $('log');
    state.seq += 1;
    li.dataset.seq = String(state.seq);
    log.prepend(li);
    while (log.children.length > MAX_LOG) log.lastElementChild.remove();
    $('log-empty').hidden = true;
  }

  function logLine({ cls, id, type, data }) {
    const li = el('li', { class: cls },
      el('time', { class: 'ev-time', text: clock(new Date()) }),
      el('span', { class: 'ev-id', text: id || '' }),
      el('span', { class: 'ev-type', text: type || '' }),
      el('pre', { class: 'ev-data', text: data }));
    if (id) li.dataset.id = id;
    if (type) {
      li.dataset.type = type;
      li.querySelector('.ev-type').dataset.type = type;
    }
    addLine(li);
    return li;
  }

  function sysLine(text) {
    logLine({ cls: 'sys', data: text });
  }

  function onEvent(ev) {
    const id = ev.lastEventId;
    if (id && state.seen.has(id)) return;
    if (id) {
      state.seen.add(id);
      state.lastId = id;
      const last = $('last-id');
      last.textContent = id;
      last.dataset.lastId = id;
    }
    state.count += 1;
    $('event-count').textContent = String(state.count);
    logLine({ cls: 'event', id, type: ev.type, data: ev.data });
  }

  /**
   * The token ran out: the server sent herald.expired and ends the stream.
   * With a renew URL, get a new token and resume after the last id seen, so
   * nothing published meanwhile is missed; without one, stop and say so.
   */
  async function onExpired() {
    const es = state.es;
    if (!es) return;
    es.close();
    if (!state.renewUrl) {
      state.es = null;
      setState('expired');
      sysLine('the token expired: enter a new one and subscribe again');
      return;
    }
    setState('renewing');
    sysLine('the token expired: renewing it');
    try {
      const fresh = await fetchToken(state.renewUrl);
      if (state.es !== es) return; // the user subscribed or disconnected meanwhile
      $('sub-token').value = fresh;
      connect(state.channels, state.types, state.lastId, true);
    } catch (e) {
      if (state.es !== es) return;
      state.es = null;
      setState('expired');
      sysLine(`the token expired and could not be renewed: ${e.message}`);
    }
  }

  function onGap(ev) {
    // A herald.gap event carries no id of its own (ev.lastEventId would be the
    // previous event's), and JSON data with at least "channel".
    let channel = '';
    try {
      const info = JSON.parse(ev.data);
      if (info && typeof info.channel === 'string') channel = info.channel;
    } catch (_) { /* shown raw below */ }
    const li = logLine({ cls: 'event gap', type: ev.type, data: ev.data });
    if (channel) li.dataset.channel = channel;

    const notice = $('gap-notice');
    const channels = new Set((notice.dataset.channels || '').split(' ').filter(Boolean));
    if (channel) channels.add(channel);
    notice.dataset.channels = [...channels].join(' ');
    notice.dataset.count = String(Number(notice.dataset.count || 0) + 1);
    $('gap-text').textContent =
      `The server could not prove that nothing was lost on ${channels.size ? [...channels].map((c) => `“${c}”`).join(', ') : 'this stream'}` +
      ' (its history no longer reaches back to the last id, or it restarted). Every event shown after the notice in the log is complete again.';
    notice.hidden = false;
  }

  // ---------- subscribe form ----------

  function readSubscribeForm() {
    const channels = splitList([$('sub-channels').value]);
    const types = splitList([$('sub-events').value]);
    const lastEventId = $('sub-last-id').value.trim();
    if (!channels.length) return { error: 'Name at least one channel.' };
    if (channels.length > MAX_CHANNELS) return { error: `At most ${MAX_CHANNELS} channels per stream.` };
    const bad = channels.find((c) => !CHANNEL_RE.test(c));
    if (bad !== undefined) return { error: `“${bad}” is not a channel name: 1–128 of A–Z a–z 0–9 _ - . : ~ @` };
    const badType = types.find((t) => !EVENT_TYPE_RE.test(t));
    if (badType !== undefined) return { error: `“${badType}” is not an event type: 1–64 of A–Z a–z 0–9 _ - . :` };
    return { channels, types, lastEventId };
  }

  function subscribeFromForm(updateUrl) {
    const form = readSubscribeForm();
    $('sub-error').textContent = form.error || '';
    if (form.error) return;
    if (updateUrl) {
      const params = new URLSearchParams();
      for (const c of form.channels) params.append('channel', c);
      for (const t of form.types) params.append('event', t);
      if (form.lastEventId) params.set('lastEventId', form.lastEventId);
      // The token is never written into the address; the renew URL is kept.
      if (state.renewUrl) params.set('renew', state.renewUrl);
      history.replaceState(null, '', `${location.pathname}?${params}`);
    }
    connect(form.channels, form.types, form.lastEventId);
    if (!$('pub-channel').value.trim()) $('pub-channel').value = form.channels[0];
  }

  // ---------- publish ----------

  function showResult(out, status, text) {
    out.dataset.status = status;
    out.textContent = text;
  }

  async function publish() {
    const out = $('pub-result');
    const batch = $('pub-batch').checked;
    const data = $('pub-data').value;
    let url;
    let init;
    if (batch) {
      let items;
      try {
        items = JSON.parse(data);
      } catch (e) {
        showResult(out, 'error', `Not JSON: ${e.message}`);
        return;
      }
      if (Array.isArray(items)) {
        for (const it of items) if (it && typeof it.event === 'string') listenFor(it.event);
      }
      url = '/publish';
      init = { method: 'POST', headers: { 'Content-Type': 'application/json', ...authHeaders() }, body: data };
    } else {
      const channel = $('pub-channel').value.trim();
      const type = $('pub-event').value.trim();
      if (type) listenFor(type);
      url = '/publish/' + encodeURIComponent(channel) + (type ? '?event=' + encodeURIComponent(type) : '');
      init = { method: 'POST', headers: { 'Content-Type': 'text/plain; charset=utf-8', ...authHeaders() }, body: data };
    }
    $('pub-submit').disabled = true;
    try {
      const res = await fetch(url, init);
      const text = await res.text();
      let shown = text;
      try {
        const v = JSON.parse(text);
        // a batch answer: one compact line per event
        shown = Array.isArray(v) ? `[\n${v.map((x) => ` ${JSON.stringify(x)}`).join(',\n')}\n]` : JSON.stringify(v, null, 1);
      } catch (_) { /* not JSON: show as is */ }
      showResult(out, res.ok ? 'ok' : 'error', `${res.status} ${res.statusText}\n${shown}`);
    } catch (e) {
      showResult(out, 'error', `Request failed: ${e.message}`);
    } finally {
      $('pub-submit').disabled = false;
      refreshChannels();
    }
  }

  function setBatchMode(on) {
    $('pub-single-fields').hidden = on;
    $('pub-data-label').textContent = on ? 'Events (JSON array)' : 'Data';
    const ta = $('pub-data');
    if (on && !ta.value.trim()) {
      const ch = $('pub-channel').value.trim() || 'news';
      ta.value = JSON.stringify([
        { channel: ch, data: 'first of a batch' },
        { channel: ch, event: 'alert', data: { level: 'high', text: 'second, as JSON' } },
      ], null, 1);
    }
  }

  // ---------- channels panel ----------

  let channelsTimer = null;
  let channelsBusy = false;

  async function refreshChannels() {
    if (channelsBusy) return;
    channelsBusy = true;
    try {
      const res = await fetch('/channels', { cache: 'no-store', headers: authHeaders() });
      if (res.status === 401 || res.status === 403) throw new Error(`${res.status}: the channel list needs the publish token`);
      if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
      const list = await res.json();
      renderChannels(Array.isArray(list) ? list : []);
      $('channels-status').textContent = list.length ? '' : 'No channels yet: publish or subscribe to create one.';
      $('channels-updated').textContent = `updated ${clock(new Date()).slice(0, 8)}`;
    } catch (e) {
      $('channels-status').textContent = `Could not load /channels: ${e.message}`;
    } finally {
      channelsBusy = false;
    }
  }

  function renderChannels(list) {
    list.sort((a, b) => String(a.channel).localeCompare(String(b.channel)));
    const rows = list.map((c) => {
      const name = String(c.channel);
      const add = el('button', { class: 'link', type: 'button', title: `Add “${name}” to the subscription`, text: name });
      add.addEventListener('click', () => {
        const channels = splitList([$('sub-channels').value]);
        if (!channels.includes(name)) channels.push(name);
        $('sub-channels').value = channels.join(' ');
        $('sub-submit').focus();
      });
      const tr = el('tr', {},
        el('td', {}, add),
        el('td', { class: 'num', text: String(c.subscribers ?? '') }),
        el('td', { class: 'num', text: String(c.retained ?? '') }),
        el('td', { class: 'num mono', text: c.last_event_id == null ? '—' : String(c.last_event_id) }));
      tr.dataset.channel = name;
      return tr;
    });
    $('channels-body').replaceChildren(...rows);
  }

  function scheduleChannels() {
    clearInterval(channelsTimer);
    channelsTimer = setInterval(() => { if (!document.hidden) refreshChannels(); }, CHANNELS_EVERY_MS);
  }

  // ---------- help text ----------

  function tryText(channels) {
    const base = location.origin;
    const ch = channels[0] || 'news';
    const quote = (s) => `'${s.replace(/'/g, `'\\''`)}'`;
    // With a token, the commands read it from $TOKEN rather than show it.
    const auth = token() ? '-H "Authorization: Bearer $TOKEN" ' : '';
    return [
      '# subscribe (Ctrl+C to stop)',
      `curl -N ${auth}${quote(base + streamUrl(channels, ''))}`,
      '',
      '# publish: the body is the data',
      `curl ${auth}-d 'hello from curl' ${quote(`${base}/publish/${encodeURIComponent(ch)}`)}`,
      `curl ${auth}-d 'disk almost full' ${quote(`${base}/publish/${encodeURIComponent(ch)}?event=alert`)}`,
      '',
      '# resume: every retained event after id 0, or a herald.gap notice',
      `curl -N ${auth}-H 'Last-Event-ID: 0' ${quote(base + streamUrl(channels, ''))}`,
    ].join('\n');
  }

  // ---------- wiring ----------

  function init() {
    const q = new URLSearchParams(location.search);
    const channels = splitList(q.getAll('channel'));
    const types = splitList(q.getAll('event'));
    if (channels.length) $('sub-channels').value = channels.join(' ');
    if (types.length) $('sub-events').value = types.join(', ');
    if (q.get('lastEventId')) $('sub-last-id').value = q.get('lastEventId').trim();
    if (q.get('token')) $('sub-token').value = q.get('token').trim();
    state.renewUrl = (q.get('renew') || '').trim();
    $('pub-channel').value = splitList([$('sub-channels').value])[0] || 'news';
    $('try-text').textContent = tryText(splitList([$('sub-channels').value]));

    $('sub-form').addEventListener('submit', (e) => {
      e.preventDefault();
      subscribeFromForm(true);
    });
    $('sub-stop').addEventListener('click', () => disconnect());
    $('pub-form').addEventListener('submit', (e) => {
      e.preventDefault();
      publish();
    });
    $('pub-data').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        $('pub-form').requestSubmit();
      }
    });
    $('pub-batch').addEventListener('change', (e) => setBatchMode(e.target.checked));
    $('channels-refresh').addEventListener('click', refreshChannels);
    $('gap-dismiss').addEventListener('click', () => { $('gap-notice').hidden = true; });
    $('log-clear').addEventListener('click', () => {
      $('log').replaceChildren();
      $('log-empty').hidden = false;
    });
    document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshChannels(); });

    refreshChannels();
    scheduleChannels();
    if (q.get('connect') !== '0') subscribeFromForm(false);
  }

  init();
})();
