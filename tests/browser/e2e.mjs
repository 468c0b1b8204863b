#!/usr/bin/env node
// End-to-end scenarios for herald's pages (web/index.html, web/chat.html) in real
// headless chromium, driven by playwright-core. Run by tests/api/browser.rs, which
// owns the server (start, stop, restart) and answers this script's steps.
//
// usage: node e2e.mjs <base-url> <scenario> [params-json]
//   scenarios: index-live, index-gap, index-resume, index-restart, chat, chat-presence,
//   many-streams, websocket, acme-h2; auth-* (auth.mjs); herald-* (herald.mjs, herald.js itself)
//   (an https base is served with a self-signed certificate: certificate errors are ignored,
//   unless params.trusted says the driver made chromium trust the issuer; params.chromiumArgs
//   adds command-line flags)
//   env CHROMIUM: browser binary (default /usr/bin/chromium)
//   env SCREENSHOT_DIR: where screenshots go (index.png, chat.png; fail-<scenario>.png on failure)
//
// Talking to the driver, one line each way:
//   stdout "@@step {json}"   the driver does it (publish from outside, restart the
//                            server) and writes one JSON line to stdin in answer
//   stdout "@@result {json}" the outcome; the exit code is 0 only when it passed
// Any other stdout line is a log line.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { authScenarios } from './auth.mjs';
import { heraldScenarios } from './herald.mjs';

const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const WAIT_MS = Number(process.env.E2E_WAIT_MS || 20000); // one condition
const WATCHDOG_MS = Number(process.env.E2E_WATCHDOG_MS || 150000); // the whole scenario

const [base, scenario, paramsJson] = process.argv.slice(2);
const params = paramsJson ? JSON.parse(paramsJson) : {};
const shotDir = process.env.SCREENSHOT_DIR || '';

function log(...args) {
  console.log(`[e2e ${scenario}]`, ...args);
}

class Failure extends Error {}
function check(cond, what) {
  if (!cond) throw new Failure(what);
}
function same(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Failure(`${what}: expected ${e}, got ${a}`);
}

// ---------- steps answered by the driver ----------

const stdinLines = [];
const stdinWaiters = [];
let stdinClosed = false;
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (l) => (stdinWaiters.length ? stdinWaiters.shift()(l) : stdinLines.push(l)));
rl.on('close', () => {
  stdinClosed = true;
  while (stdinWaiters.length) stdinWaiters.shift()(null);
});
function nextLine() {
  if (stdinLines.length) return Promise.resolve(stdinLines.shift());
  if (stdinClosed) return Promise.resolve(null);
  return new Promise((resolve) => stdinWaiters.push(resolve));
}

async function step(name, args = {}) {
  console.log(`@@step ${JSON.stringify({ name, ...args })}`);
  const line = await nextLine();
  if (line === null) throw new Error(`the driver closed stdin before answering step ${name}`);
  const answer = JSON.parse(line);
  if (answer && answer.error) throw new Error(`step ${name} failed in the driver: ${answer.error}`);
  return answer;
}

// ---------- plain HTTP from outside the page ----------

async function publish(channel, data, event) {
  const url = `${base}/publish/${encodeURIComponent(channel)}` + (event ? `?event=${encodeURIComponent(event)}` : '');
  const res = await fetch(url, { method: 'POST', body: data });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${url} -> ${res.status} ${text}`);
  return JSON.parse(text);
}

// ---------- page helpers ----------

const waitFor = (page, fn, arg, what) =>
  page.waitForFunction(fn, arg, { timeout: WAIT_MS, polling: 50 }).catch((e) => {
    throw new Failure(`timed out after ${WAIT_MS} ms waiting for ${what} (${e.message.split('\n')[0]})`);
  });

/** The log's events (herald.gap included) in arrival order. */
const logEvents = (page) =>
  page.$$eval('#log li.event', (lis) =>
    lis
      .map((li) => ({
        seq: Number(li.dataset.seq),
        id: li.dataset.id || null,
        type: li.dataset.type,
        channel: li.dataset.channel || null,
        data: li.querySelector('.ev-data').textContent,
      }))
      .sort((a, b) => a.seq - b.seq)
      .map(({ seq, ...rest }) => rest));

function waitEventId(page, id, what) {
  return waitFor(page, (i) => !!document.querySelector(`#log li.event[data-id="${i}"]`), id, what || `event ${id} in the log`);
}

async function eventById(page, id) {
  const all = await logEvents(page);
  return all.find((e) => e.id === id);
}

const waitState = (page, state) =>
  waitFor(page, (s) => document.querySelector('#state')?.dataset.state === s, state, `connection state "${state}"`);

/** Submits the page's publish form with `act` and returns the JSON answer it shows. */
async function publishResult(page, act, status) {
  await page.$eval('#pub-result', (o) => { o.textContent = ''; delete o.dataset.status; });
  await act();
  await waitFor(page, () => !!document.querySelector('#pub-result').dataset.status, null, 'the publish result');
  const got = await page.getAttribute('#pub-result', 'data-status');
  const text = await page.textContent('#pub-result');
  if (got !== status) throw new Failure(`publish from the page: expected ${status}, got ${text}`);
  return JSON.parse(text.split('\n').slice(1).join('\n'));
}

async function screenshot(page, name) {
  if (!shotDir) return null;
  fs.mkdirSync(shotDir, { recursive: true });
  const file = path.join(shotDir, name);
  await page.screenshot({ path: file, fullPage: true });
  log('screenshot', file);
  return file;
}

/** The chat page's lines: kind (message, raw, join, leave, gap, ...), id, nick, text. */
const chatLines = (page) =>
  page.$$eval('#messages li', (lis) => lis.map((li) => ({
    kind: li.dataset.kind,
    id: li.dataset.id || null,
    nick: li.dataset.nick || null,
    text: li.querySelector('.text').textContent,
  })));

const waitChatLine = (page, kind, text, what) =>
  waitFor(page, ([k, t]) => [...document.querySelectorAll(`#messages li[data-kind="${k}"] .text`)]
    .some((n) => n.textContent === t), [kind, text], what || `${kind} "${text}"`);

/** Sends a chat message from the page's compose form, keyboard only. */
async function say(page, text) {
  await page.fill('#message', text);
  await page.press('#message', 'Enter');
  await waitFor(page, () => document.querySelector('#message').value === '', null, 'the message field to clear after sending');
}

const unique = (prefix) => `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;

// ---------- scenarios ----------

const scenarios = {
  /** Events published with HTTP appear on /: plain, multi-line, typed, from the page's own form, batch. */
  async 'index-live'(ctx) {
    const ch = params.channel || unique('live');
    const ch2 = `${ch}-b`;
    const page = await ctx.newPage();
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${base}/?channel=${ch}&channel=${ch2}&event=alert`);
    await waitState(page, 'open');

    // published by the driver, plain HTTP from outside the browser
    const first = await step('publish', { channel: ch, data: 'hello from outside' });
    await waitEventId(page, first.id);
    same((await eventById(page, first.id)).data, 'hello from outside', 'data of the first event');
    same((await eventById(page, first.id)).type, 'message', 'type of an untyped event');

    // multi-line data, on the second channel of the same stream
    const multi = await publish(ch2, 'line one\nline two\r\nline three');
    await waitEventId(page, multi.id);
    same((await eventById(page, multi.id)).data, 'line one\nline two\nline three', 'multi-line data');
    const shown = await page.$eval(`#log li[data-id="${multi.id}"] .ev-data`, (pre) => pre.innerText);
    same(shown, 'line one\nline two\nline three', 'multi-line data as rendered (innerText)');

    // an event type
    const typed = await publish(ch, 'disk almost full', 'alert');
    await waitEventId(page, typed.id);
    same((await eventById(page, typed.id)).type, 'alert', 'event type');
    same(await page.$eval(`#log li[data-id="${typed.id}"] .ev-type`, (n) => n.textContent), 'alert', 'event type shown');

    // the page's own publish form, keyboard only: Ctrl+Enter in the data field
    await page.fill('#pub-channel', ch);
    await page.fill('#pub-event', 'note');
    await page.fill('#pub-data', 'from the form\nsecond line');
    await page.focus('#pub-data');
    const formId = (await publishResult(page, () => page.keyboard.press('Control+Enter'), 'ok')).id;
    await waitEventId(page, formId, 'the event published by the form');
    same(await eventById(page, formId), { id: formId, type: 'note', channel: null, data: 'from the form\nsecond line' }, 'form event');

    // an error answer is shown, not thrown
    await page.fill('#pub-channel', 'not a channel');
    await page.fill('#pub-data', 'x');
    const bad = await publishResult(page, () => page.click('#pub-submit'), 'error');
    check((await page.textContent('#pub-result')).startsWith('400'), 'a bad channel name answers 400 on the page');
    check(typeof bad.error === 'string' && typeof bad.message === 'string', `the error JSON is shown: ${JSON.stringify(bad)}`);

    // batch mode: one bad item rejects the batch, and the page shows which
    await page.check('#pub-batch');
    await page.fill('#pub-data', JSON.stringify([{ channel: ch, data: 'fine' }, { channel: 'bad name', data: 'x' }]));
    const badBatch = await publishResult(page, () => page.click('#pub-submit'), 'error');
    same(badBatch.index, 1, 'index of the bad batch item');
    await page.fill('#pub-data', JSON.stringify([
      { channel: ch, data: 'batch one' },
      { channel: ch2, event: 'alert', data: { n: 2 } },
    ]));
    const batch = await publishResult(page, () => page.click('#pub-submit'), 'ok');
    same(batch.length, 2, 'batch answer length');
    for (const b of batch) await waitEventId(page, b.id, `batch event ${b.id}`);
    same((await eventById(page, batch[0].id)).data, 'batch one', 'batch item 0');
    same(await eventById(page, batch[1].id), { id: batch[1].id, type: 'alert', channel: null, data: '{"n":2}' }, 'batch item 1');

    // status: last id, no duplicates, the channels panel
    const events = await logEvents(page);
    const ids = events.map((e) => e.id);
    same(new Set(ids).size, ids.length, 'distinct ids in the log');
    same(await page.textContent('#last-id'), batch[1].id, 'last event id shown');
    await waitFor(page, (c) => !!document.querySelector(`#channels-body tr[data-channel="${c}"]`), ch, 'the channel in the /channels panel');
    const gapShown = await page.isVisible('#gap-notice');
    same(gapShown, false, 'gap notice visible on a clean stream');

    await page.click('#try summary');
    const shot = await screenshot(page, 'index.png');

    // narrow screen: nothing wider than the viewport
    await page.setViewportSize({ width: 380, height: 800 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `page wider than a 380px screen by ${overflow}px`);
    await screenshot(page, 'index-narrow.png');
    return { events: events.length, screenshot: shot };
  },

  /** A page opened with an id the server no longer has history for shows the herald.gap notice. */
  async 'index-gap'(ctx) {
    const { channel, lastEventId, retained } = params;
    check(channel && lastEventId && Array.isArray(retained), 'index-gap needs channel, lastEventId, retained');
    const page = await ctx.newPage();
    await page.goto(`${base}/?channel=${channel}&lastEventId=${lastEventId}`);
    await waitFor(page, () => !document.querySelector('#gap-notice').hidden, null, 'the gap notice');
    const text = await page.textContent('#gap-notice');
    check(text.includes(channel), `gap notice names the channel: ${text}`);
    for (const id of retained) await waitEventId(page, id);
    const events = await logEvents(page);
    same(events[0].type, 'herald.gap', 'first thing in the log');
    same(events[0].channel, channel, 'channel of the gap event');
    same(events.slice(1).map((e) => e.id), retained, 'events after the gap notice');
    same(await page.getAttribute('#gap-notice', 'data-channels'), channel, 'channels named by the notice');
    const live = await publish(channel, 'after the gap');
    await waitEventId(page, live.id);
    await screenshot(page, 'index-gap.png');
    return { events: events.length + 1 };
  },

  /** Opened with ?lastEventId: exactly the missed events, then live ones. */
  async 'index-resume'(ctx) {
    const { channel, lastEventId, missed } = params;
    check(channel && lastEventId && Array.isArray(missed), 'index-resume needs channel, lastEventId, missed');
    const page = await ctx.newPage();
    await page.goto(`${base}/?channel=${channel}&lastEventId=${lastEventId}`);
    await waitState(page, 'open');
    for (const m of missed) await waitEventId(page, m.id);
    const live = await publish(channel, 'live after resume');
    await waitEventId(page, live.id);
    const events = await logEvents(page);
    same(events, [...missed.map((m) => ({ id: m.id, type: 'message', channel: null, data: m.data })),
      { id: live.id, type: 'message', channel: null, data: 'live after resume' }], 'the log after resuming');
    same(await page.isVisible('#gap-notice'), false, 'gap notice visible');
    return { events: events.length };
  },

  /** The server stops and starts again on the same port: reconnect, gap notice, new events. */
  async 'index-restart'(ctx) {
    const ch = params.channel || unique('restart');
    const page = await ctx.newPage();
    await page.goto(`${base}/?channel=${ch}`);
    await waitState(page, 'open');
    const before = await publish(ch, 'before the restart');
    await waitEventId(page, before.id);
    // Record every state the badge goes through from now on.
    await page.evaluate(() => {
      window.__states = [];
      const badge = document.querySelector('#state');
      new MutationObserver(() => window.__states.push(badge.dataset.state))
        .observe(badge, { attributes: true, attributeFilter: ['data-state'] });
    });

    await step('restart');
    await waitFor(page, () => !document.querySelector('#gap-notice').hidden, null, 'the gap notice after the restart');
    await waitState(page, 'open');
    const states = await page.evaluate(() => window.__states);
    check(states.includes('reconnecting'), `the page showed "reconnecting": ${JSON.stringify(states)}`);
    same(await page.getAttribute('#gap-notice', 'data-channels'), ch, 'channels named by the notice');

    const after = await publish(ch, 'after the restart');
    await waitEventId(page, after.id);
    check(BigInt(after.id) > BigInt(before.id), `ids grow across a restart: ${before.id} then ${after.id}`);
    const events = await logEvents(page);
    const types = events.map((e) => e.type);
    check(types.indexOf('herald.gap') > events.findIndex((e) => e.id === before.id), `gap after the old event: ${JSON.stringify(events)}`);
    check(types.indexOf('herald.gap') < events.findIndex((e) => e.id === after.id), `gap before the new event: ${JSON.stringify(events)}`);
    same(events.filter((e) => e.id === before.id).length, 1, 'the old event shown once');
    await screenshot(page, 'index-restart.png');
    return { states, events: events.length };
  },

  /**
   * Two chat pages talk both ways; join and leave notices; <script> stays text; a
   * reopened page catches up from its remembered id; after a server restart the
   * pages reconnect and show what they missed once.
   */
  async chat(ctx) {
    const room = params.room || unique('room');
    // transport "ws": the same conversation over one WebSocket per page
    const ws = params.transport === 'ws';
    const url = (nick) => `${base}/chat.html?room=${room}&nick=${nick}` + (ws ? '&transport=ws' : '');
    const shotName = (name) => (ws ? name.replace('.png', '-ws.png') : name);
    const lines = chatLines;
    const waitLine = waitChatLine;

    const alice = await ctx.newPage();
    await alice.setViewportSize({ width: 900, height: 760 });
    await alice.goto(url('alice'));
    await waitState(alice, 'open');
    await waitLine(alice, 'join', 'alice joined', 'alice sees her own join');

    const bob = await ctx.newPage();
    await bob.setViewportSize({ width: 900, height: 760 });
    await bob.goto(url('bob'));
    await waitState(bob, 'open');
    await waitLine(alice, 'join', 'bob joined', 'alice sees bob join');
    await waitLine(bob, 'join', 'bob joined', 'bob sees his own join');

    await say(alice, 'hi bob');
    await waitLine(bob, 'message', 'hi bob', 'bob receives alice');
    await say(bob, 'hi alice, how are you?');
    await waitLine(alice, 'message', 'hi alice, how are you?', 'alice receives bob');

    const evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold?</b>';
    await say(bob, evil);
    await waitLine(alice, 'message', evil, 'the <script> message shown as text');
    same(await alice.$$eval('#messages script, #messages img, #messages b', (n) => n.length), 0, 'elements injected by a message');
    same(await alice.evaluate(() => window.__pwned ?? null), null, 'script from a message ran');

    // from outside the pages: plain HTTP, not JSON
    const plain = await step('publish', { channel: room, data: 'hello from curl' });
    await waitLine(alice, 'raw', 'hello from curl');
    await waitLine(bob, 'raw', 'hello from curl');

    const aliceSaw = await lines(alice);
    const aliceIds = aliceSaw.map((l) => l.id).filter(Boolean);
    same(new Set(aliceIds).size, aliceIds.length, 'distinct ids on alice\'s page');
    check(aliceIds.includes(plain.id), 'the raw message has its id');
    same(await alice.$$eval('#messages li.mine', (n) => n.map((li) => li.querySelector('.text').textContent)), ['hi bob'], 'alice\'s own messages marked');
    const shot = await screenshot(bob, shotName('chat.png'));

    // alice closes her tab: the page says goodbye with a beacon
    await alice.close({ runBeforeUnload: true });
    await waitLine(bob, 'leave', 'alice left', 'bob sees alice leave');
    await say(bob, 'while you were away');

    // alice comes back: the remembered last id brings exactly what she missed
    const again = await ctx.newPage();
    await again.setViewportSize({ width: 900, height: 760 });
    await again.goto(url('alice'));
    await waitState(again, 'open');
    await waitLine(again, 'message', 'while you were away', 'alice catches up on what she missed');
    await waitLine(again, 'join', 'alice joined', 'alice announces herself again');
    await waitLine(bob, 'join', 'alice joined', 'bob sees alice join again');
    const caught = await lines(again);
    same(caught.filter((l) => l.kind === 'message').map((l) => l.text), ['while you were away'], 'messages after reopening');
    check(caught.some((l) => l.kind === 'leave' && l.text === 'alice left'), 'her own leave notice is in what she missed');
    const againIds = caught.map((l) => l.id).filter(Boolean);
    same(new Set(againIds).size, againIds.length, 'distinct ids after reopening');
    check(againIds.every((id) => !aliceIds.includes(id)), 'nothing alice had seen is shown again');
    await screenshot(again, shotName('chat-reopened.png'));

    // the server restarts: both pages reconnect by themselves (after the server's
    // retry), are told of the gap, and show what was said meanwhile exactly once
    await step('restart');
    const meanwhile = await step('publish', { channel: room, data: 'said during the restart' });
    for (const [who, page] of [['bob', bob], ['alice', again]]) {
      await waitLine(page, 'raw', 'said during the restart', `${who} catches up after the restart`);
      await waitFor(page, () => !!document.querySelector('#messages li[data-kind="gap"]'), null, `${who}'s gap notice`);
      await waitState(page, 'open');
      const after = await lines(page);
      same(after.filter((l) => l.id === meanwhile.id).length, 1, `${who} shows the message from during the restart once`);
      const ids = after.map((l) => l.id).filter(Boolean);
      same(new Set(ids).size, ids.length, `distinct ids on ${who}'s page after the restart`);
    }
    await say(bob, 'still here');
    await waitLine(again, 'message', 'still here', 'alice receives bob after the restart');
    if (ws) {
      same(await bob.textContent('#via'), 'WebSocket', 'the transport shown');
    }
    return { screenshot: shot, bobLines: (await lines(bob)).length };
  },

  /**
   * A page's own WebSocket on /events/<channel>: it receives an event published
   * from outside as one JSON message, publishes over the socket, gets the
   * "published" answer and the event itself, and a bad message gets an error
   * without closing the socket.
   */
  async websocket(ctx) {
    const channel = params.channel || unique('ws');
    const page = await ctx.newPage();
    await page.goto(`${base}/`);
    await page.evaluate((ch) => new Promise((resolve, reject) => {
      window.__got = [];
      const sock = new WebSocket(`ws://${location.host}/events/${ch}`);
      window.__sock = sock;
      sock.onmessage = (m) => window.__got.push(JSON.parse(m.data));
      sock.onclose = () => { window.__closed = true; };
      sock.onopen = () => resolve();
      sock.onerror = () => reject(new Error('WebSocket error'));
    }), channel);

    const outside = await step('publish', { channel, data: 'from outside' });
    await waitFor(page, (id) => window.__got.some((m) => m.id === id), outside.id, 'the event published from outside');

    await page.evaluate((ch) => {
      window.__sock.send('not json');
      window.__sock.send(JSON.stringify({ type: 'publish', channel: ch, event: 'note', data: { from: 'page' } }));
    }, channel);
    await waitFor(page, () => window.__got.some((m) => m.event === 'note'), null, 'the event the page published');
    const got = await page.evaluate(() => window.__got);
    same(got[0], { id: outside.id, channel, data: 'from outside' }, 'the outside event as a message');
    same(got[1].type, 'error', 'a bad message is answered with an error');
    same(got[2].type, 'published', 'the publish is answered');
    const note = got.find((m) => m.event === 'note');
    same(note, { id: got[2].id, channel, event: 'note', data: '{"from":"page"}' }, 'the published event comes back');
    same(await page.evaluate(() => !!window.__closed), false, 'the socket stayed open');
    return { messages: got.length };
  },

  /**
   * Presence: two chat windows as two users (tokens from the driver, params.alice and
   * params.bob, subs "1" and "2") see each other in the "Online" list, come and go;
   * nobody is told of their own join; the token leaves the address bar; a reload
   * (inside the server's presence grace) announces nothing. params.transport "ws":
   * the same over WebSockets.
   */
  async 'chat-presence'(ctx) {
    const room = params.room;
    // transport "ws": the same over one WebSocket per page
    const ws = params.transport === 'ws';
    const url = (nick, token) => `${base}/chat.html?room=${room}&nick=${nick}&token=${encodeURIComponent(token)}`
      + (ws ? '&transport=ws' : '');
    const waitOnline = (page, subs, what) =>
      waitFor(page, (want) => JSON.stringify([...document.querySelectorAll('#members li')].map((li) => li.dataset.sub).sort()) === want,
        JSON.stringify([...subs].sort()), what);

    const alice = await ctx.newPage();
    await alice.setViewportSize({ width: 900, height: 760 });
    await alice.goto(url('alice', params.alice));
    await waitState(alice, 'open');
    await waitOnline(alice, ['1'], 'alice sees herself online');
    check(!alice.url().includes('token'), `the token is taken out of the address bar: ${alice.url()}`);

    const bob = await ctx.newPage();
    await bob.setViewportSize({ width: 900, height: 760 });
    await bob.goto(url('bob', params.bob));
    await waitState(bob, 'open');
    await waitOnline(bob, ['1', '2'], 'bob sees alice and himself online');
    await waitOnline(alice, ['1', '2'], 'alice sees bob come online');
    await waitChatLine(alice, 'join', 'Bob joined', 'alice is told bob joined');
    same(await alice.textContent('#online-count'), '2', 'online count on alice\'s page');
    same(await alice.$$eval('#members li', (lis) => lis.map((li) => li.textContent)), ['Alice (you)', 'Bob'], 'names from the tokens\' info');

    // talking works with the token (publishing needs its grant)
    await say(alice, 'hello bob');
    await waitChatLine(bob, 'message', 'hello bob', 'bob receives alice');
    same((await chatLines(bob)).filter((l) => l.kind === 'join').length, 0, 'bob is told of no join (alice was there before him, he is not told of his own)');
    const shot = await screenshot(alice, ws ? 'chat-presence-ws.png' : 'chat-presence.png');

    // bob reloads: the page comes back with the token kept for the tab, and alice
    // hears nothing (a leave would show before bob's close below is announced)
    await bob.reload();
    await waitState(bob, 'open');
    await waitOnline(bob, ['1', '2'], 'bob is back with the token kept for his tab');
    await say(alice, 'after your reload');
    await waitChatLine(bob, 'message', 'after your reload', 'bob receives alice after the reload');

    // bob closes his window: after the server's presence grace, alice sees him leave
    await bob.close({ runBeforeUnload: true });
    await waitChatLine(alice, 'leave', 'Bob left', 'alice is told bob left');
    await waitOnline(alice, ['1'], 'bob is gone from alice\'s list');
    same(await alice.textContent('#online-count'), '1', 'online count after the leave');
    same((await chatLines(alice)).filter((l) => l.kind === 'join' || l.kind === 'leave').map((l) => l.text),
      ['Bob joined', 'Bob left'], 'presence lines on alice\'s page');
    return { screenshot: shot };
  },
};

/**
 * One page opens `streams` EventSources on as many channels; each channel then gets
 * one event, published from outside the browser. Over HTTPS (HTTP/2) all of them
 * share one connection and every one receives its event; over plain HTTP/1.1
 * chromium holds at most six connections per origin, so the rest never open.
 */
scenarios['many-streams'] = async (ctx) => {
  const n = params.streams || 12;
  const prefix = unique('many');
  const page = await ctx.newPage();
  await page.goto(`${base}/healthz`);
  await page.evaluate(({ n, prefix }) => {
    window.opened = 0;
    window.got = {};
    for (let i = 0; i < n; i++) {
      const es = new EventSource(`/events/${prefix}-${i}`);
      es.onopen = () => { window.opened += 1; };
      es.onmessage = (e) => { window.got[i] = e.data; };
    }
  }, { n, prefix });
  const expectOpen = params.expectOpen || n;
  await waitFor(page, (k) => window.opened >= k, expectOpen, `${expectOpen} open EventSources`);
  for (let i = 0; i < n; i++) {
    const res = await ctx.request.post(`${base}/publish/${prefix}-${i}`, { data: `hello ${i}` });
    check(res.ok(), `publish to channel ${i} answered ${res.status()}`);
  }
  await waitFor(page, (k) => Object.keys(window.got).length >= k, expectOpen, `${expectOpen} EventSources with their event`);
  // Anything more would arrive now; over HTTP/1.1 nothing does.
  await page.waitForTimeout(params.settleMs || 0);
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  const received = await page.evaluate((n) => {
    let count = 0;
    for (let i = 0; i < n; i++) if (window.got[i] === `hello ${i}`) count += 1;
    return count;
  }, n);
  const opened = await page.evaluate(() => window.opened);
  return { protocol, opened, received };
};

/**
 * Automatic HTTPS (SPEC §13): the page is served on the certificate herald got
 * from the ACME test CA, which chromium trusts through the NSS database the
 * driver made (params.trusted: certificate errors are not ignored). Eight
 * EventSources (two more than HTTP/1.1 allows an origin) receive what the page
 * itself publishes, over HTTP/2.
 */
scenarios['acme-h2'] = async (ctx) => {
  // More EventSources than the six HTTP/1.1 connections chromium allows an
  // origin: they all open only over HTTP/2.
  const n = params.streams || 8;
  const channel = unique('acme');
  const page = await ctx.newPage();
  const response = await page.goto(`${base}/healthz`);
  check(response.ok(), `/healthz answered ${response.status()}`);
  await page.evaluate(({ channel, n }) => {
    window.opened = 0;
    window.got = [];
    for (let i = 0; i < n; i++) {
      const es = new EventSource(`/events/${channel}`);
      window.got.push([]);
      es.onopen = () => { window.opened += 1; };
      es.onmessage = (e) => { window.got[i].push(e.data); };
    }
  }, { channel, n });
  await waitFor(page, (n) => window.opened >= n, n, `${n} open EventSources`);
  await page.evaluate(async (channel) => {
    for (const data of ['one', 'two', 'three']) {
      const res = await fetch(`/publish/${channel}`, { method: 'POST', body: data });
      if (!res.ok) throw new Error(`publish answered ${res.status}`);
    }
  }, channel);
  await waitFor(page, () => window.got.every((g) => g.length >= 3), null, 'three events on every EventSource');
  for (const got of await page.evaluate(() => window.got)) same(got, ['one', 'two', 'three'], 'the events');
  // Resource timing entries are queued after the response: wait for them.
  await waitFor(page, (channel) => performance.getEntriesByType('resource')
    .some((e) => e.name.includes(`/publish/${channel}`)), channel, 'the publishes\' timing entries');
  const protocols = await page.evaluate((channel) => ({
    page: performance.getEntriesByType('navigation')[0].nextHopProtocol,
    publish: performance.getEntriesByType('resource')
      .filter((e) => e.name.includes(`/publish/${channel}`))
      .map((e) => e.nextHopProtocol)[0] || null,
  }), channel);
  return { protocols, opened: await page.evaluate(() => window.opened), url: page.url() };
};

// Access control (SPEC §6): auth-token, auth-renew, auth-cookie (see auth.mjs).
Object.assign(scenarios, authScenarios({
  base, params, step, waitFor, waitState, waitEventId, logEvents, publishResult, check, same, screenshot,
}));

// herald.js itself (SPEC §16): herald-order, herald-renew, ... (see herald.mjs).
Object.assign(scenarios, heraldScenarios({ base, params, step, waitFor, check, same }));

// ---------- main ----------

async function main() {
  if (!base || !scenarios[scenario]) {
    console.error(`usage: node e2e.mjs <base-url> <${Object.keys(scenarios).join('|')}> [params-json]`);
    process.exit(2);
  }
  const watchdog = setTimeout(() => {
    console.log(`@@result ${JSON.stringify({ ok: false, scenario, error: `watchdog: not done after ${WATCHDOG_MS} ms` })}`);
    process.exit(1);
  }, WATCHDOG_MS);

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-e2e-'));
  let ctx;
  let outcome;
  const pageErrors = [];
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: [...LAUNCH_ARGS, ...(params.chromiumArgs || [])],
      // The HTTPS scenarios use a certificate made by the test, unless the
      // driver made chromium trust its issuer (params.trusted).
      ignoreHTTPSErrors: base.startsWith('https:') && !params.trusted,
      timeout: 60000,
    });
    ctx.setDefaultTimeout(WAIT_MS);
    ctx.on('page', (p) => {
      p.on('pageerror', (e) => pageErrors.push(`${p.url()}: ${e.message}`));
      p.on('console', (m) => { if (m.type() === 'error') log('console:', m.text()); });
    });
    for (const p of ctx.pages()) await p.close();
    const result = await scenarios[scenario](ctx);
    if (pageErrors.length) throw new Failure(`JavaScript errors on the page: ${pageErrors.join(' | ')}`);
    outcome = { ok: true, scenario, ...result };
  } catch (e) {
    outcome = { ok: false, scenario, error: e instanceof Failure ? e.message : String(e.stack || e), pageErrors };
    if (ctx) {
      const page = ctx.pages().at(-1);
      if (page) await screenshot(page, `fail-${scenario}.png`).catch(() => {});
    }
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
    clearTimeout(watchdog);
    rl.close();
  }
  console.log(`@@result ${JSON.stringify(outcome)}`);
  process.exit(outcome.ok ? 0 : 1);
}

main();
