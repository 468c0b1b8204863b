// herald demo page (index.html): subscribe with herald.js (herald's browser
// client), show every event, publish single events or batches, list channels,
// with an access token when one is given (and a new one fetched before it
// expires). Only the public HTTP API is used. Every piece of server or user
// text is put on the page with textContent, never parsed as HTML.
import { subscribe } from './herald.js';

(function () {
  const CHANNEL_RE = /^[A-Za-z0-9_\-.:~@]{1,128}$/;
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
    sub: null,         // the herald.js subscription, or null
    everOpened: false, // has the current subscription been open once (connecting vs reconnecting)
    count: 0,          // events shown
    seq: 0,            // arrival order of log lines, for tests and readers
    renewUrl: '',      // ?renew=: where a new token comes from when the current one expires
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

  // ---------- connection (herald.js) ----------

  function setState(name) {
    const badge = $('state');
    badge.dataset.state = name;
    badge.textContent = name;
    $('sub-stop').disabled = name === 'idle' || name === 'closed' || name === 'expired';
  }

  /** The stream's path, as curl would ask for it (herald.js sends the token as a header). */
  function streamUrl(channels, lastEventId) {
    const params = new URLSearchParams();
    let path;
    if (channels.length === 1) {
      path = '/events/' + encodeURIComponent(channels[0]);
    } else {
      path = '/events';
      for (const c of channels) params.append('channel', c);
    }
    if (lastEventId) params.set('lastEventId', lastEventId);
    const qs = params.toString();
    return qs ? `${path}?${qs}` : path;
  }

  /**
   * Subscribes with herald.js, which hands over every event once and in id
   * order, renews the token (from the renew URL) before it expires, reconnects
   * and resumes by itself, and says when the server refuses for good.
   */
  function connect(channels, lastEventId) {
    disconnect(false);
    const me = {};
    state.current = me;
    state.everOpened = false;
    const mine = (fn) => (...args) => { if (state.current === me) fn(...args); };
    const hasToken = !!token();
    let first = true;
    state.sub = subscribe({
      channels,
      lastEventId,
      // The token typed in the form, then new ones from the renew URL (without
      // one, the form's token again: the user may have pasted a new one).
      getToken: async () => {
        if (first || !state.renewUrl) {
          first = false;
          return token();
        }
        const fresh = await fetchToken(state.renewUrl);
        if (state.current === me) $('sub-token').value = fresh;
        return fresh;
      },
      onEvent: mine(onEvent),
      onGap: mine(onGap),
      onState: mine((name, reason, error) => onState(name, reason, error, hasToken)),
    });

    // The token is not shown on the page.
    $('stream-url').textContent = streamUrl(channels, lastEventId);
    $('try-text').textContent = tryText(channels);
    sysLine(`subscribing to ${channels.join(', ')}` + (lastEventId ? ` after id ${lastEventId}` : ''));
  }

  function onState(name, reason, error, hasToken) {
    if (name === 'open') {
      if (state.everOpened) sysLine('reconnected');
      state.everOpened = true;
      setState('open');
      refreshChannels();
    } else if (name === 'reconnecting') {
      if ($('state').dataset.state !== 'reconnecting') sysLine('connection lost, reconnecting…');
      setState('reconnecting');
    } else if (name === 'renewing') {
      setState('renewing');
      sysLine(reason === 'expired' ? 'the token expired: renewing it' : 'renewing the token before it expires');
    } else if (name === 'closed') {
      state.sub = null;
      if (reason === 'get_token_failed') {
        setState('expired');
        sysLine(`the token expired and could not be renewed: ${error && error.message}`);
      } else if (reason === 'unauthorized' && state.everOpened) {
        // Accepted before, refused now: it expired (or was revoked).
        setState('expired');
        sysLine('the token expired: enter a new one and subscribe again');
      } else if (reason === 'revoked') {
        setState('closed');
        sysLine('the server revoked this token: subscribe again with another one');
      } else {
        setState('closed');
        sysLine(`the server refused the stream (${reason}); it will not be asked again` + (hasToken ? ' (is the token valid and does it grant these channels?)' : ''));
      }
    } else {
      setState(name);
    }
  }

  function disconnect(log = true) {
    state.current = null;
    if (!state.sub) return;
    state.sub.close();
    state.sub = null;
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

  /** An event from herald.js: each comes once, in id order, of whatever type. */
  function onEvent(ev) {
    const last = $('last-id');
    last.textContent = ev.id;
    last.dataset.lastId = ev.id;
    state.count += 1;
    $('event-count').textContent = String(state.count);
    logLine({ cls: 'event', id: ev.id, type: ev.event, data: ev.data });
  }

  /** herald.gap: the server could not prove that nothing was lost on gap.channel. */
  function onGap(gap) {
    const channel = typeof gap.channel === 'string' ? gap.channel : '';
    const li = logLine({ cls: 'event gap', type: 'herald.gap', data: JSON.stringify(gap) });
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
    const lastEventId = $('sub-last-id').value.trim();
    if (!channels.length) return { error: 'Name at least one channel.' };
    if (channels.length > MAX_CHANNELS) return { error: `At most ${MAX_CHANNELS} channels per stream.` };
    const bad = channels.find((c) => !CHANNEL_RE.test(c));
    if (bad !== undefined) return { error: `“${bad}” is not a channel name: 1–128 of A–Z a–z 0–9 _ - . : ~ @` };
    return { channels, lastEventId };
  }

  function subscribeFromForm(updateUrl) {
    const form = readSubscribeForm();
    $('sub-error').textContent = form.error || '';
    if (form.error) return;
    if (updateUrl) {
      const params = new URLSearchParams();
      for (const c of form.channels) params.append('channel', c);
      if (form.lastEventId) params.set('lastEventId', form.lastEventId);
      // The token is never written into the address; the renew URL is kept.
      if (state.renewUrl) params.set('renew', state.renewUrl);
      history.replaceState(null, '', `${location.pathname}?${params}`);
    }
    connect(form.channels, form.lastEventId);
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
      url = '/publish';
      init = { method: 'POST', headers: { 'Content-Type': 'application/json', ...authHeaders() }, body: data };
    } else {
      const channel = $('pub-channel').value.trim();
      const type = $('pub-event').value.trim();
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
    if (channels.length) $('sub-channels').value = channels.join(' ');
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
