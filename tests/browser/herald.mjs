// Scenarios that drive web/herald.js itself (SPEC §16) for e2e.mjs, run by
// tests/api/browser/herald_js.rs. The page sits on one herald (params.pageBase)
// and imports /herald.js from it; the subscriptions talk to another herald, the
// one under test (`base`), across origins as a real app's page would. What the
// server sees is read from its /metrics.
//
//   herald-order     events in id order with their type, data and channel, on
//                    one- and multi-channel subscriptions; publish() and a refused one
//   herald-renew     3-second tokens renewed before exp, three times, under steady
//                    publishing: every event once, in order
//   herald-expired   the page's clock is an hour fast, so no renewal is planned:
//                    the server's herald.expired starts it, and nothing is lost
//   herald-gap       a resume from an id the history no longer reaches: onGap first
//   herald-presence  two users, one per transport: snapshot, join, leave, rosters
//   herald-close     close() ends every stream and connection at the server
//   herald-refused   a bad token (401) and a token without the grant (403) close
//                    the subscription after one request, with no retry
//   herald-revoke    POST /disconnect: without revoke, back from the last id with a
//                    new token; with revoke, closed, and no further request
//   herald-idempotent  publish() with an idempotencyKey twice: one event, one id
//
// params.transports lists the transports a scenario runs on, one after the other.

export function heraldScenarios(h) {
  const { base, params, step, waitFor, check, same } = h;
  const transports = params.transports || ['sse', 'ws'];
  const pageBase = params.pageBase;

  async function publishAs(channel, data, event) {
    const url = `${base}/publish/${encodeURIComponent(channel)}` + (event ? `?event=${encodeURIComponent(event)}` : '');
    const headers = params.publishToken ? { Authorization: `Bearer ${params.publishToken}` } : {};
    const res = await fetch(url, { method: 'POST', body: data, headers });
    const text = await res.text();
    if (!res.ok) throw new Error(`POST ${url} -> ${res.status} ${text}`);
    return JSON.parse(text);
  }

  /** A series of the server's /metrics (0 when absent). */
  async function metric(series) {
    const text = await (await fetch(`${base}/metrics`)).text();
    for (const line of text.split('\n')) {
      if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
    }
    return 0;
  }

  async function until(what, cond, ms = 20000) {
    const deadline = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * A page on pageBase with `start(name, options)`: imports /herald.js, subscribes
   * to `base` and records what the callbacks get in window.rec[name]. options.token
   * is what getToken() returns; options.mint makes getToken() ask the driver for a
   * new token each time.
   */
  async function heraldPage(ctx, { clockAheadMs = 0 } = {}) {
    const page = await ctx.newPage();
    await page.exposeFunction('heraldMint', (spec) => step('mint', spec));
    if (clockAheadMs) {
      await page.addInitScript((ahead) => {
        const now = Date.now.bind(Date);
        Date.now = () => now() + ahead;
      }, clockAheadMs);
    }
    await page.goto(`${pageBase}/healthz`);
    await page.evaluate((api) => {
      window.rec = {};
      window.subs = {};
      window.start = async (name, opts) => {
        const { subscribe } = await import('/herald.js');
        const r = { events: [], gaps: [], states: [], presence: [], tokens: 0 };
        window.rec[name] = r;
        const { mint, token, ...rest } = opts;
        const options = {
          url: api,
          ...rest,
          onEvent: (e) => r.events.push(e),
          onGap: (g) => r.gaps.push(g),
          onPresence: (p) => r.presence.push(p),
          onState: (s, reason) => r.states.push([s, reason || null]),
        };
        if (mint) {
          options.getToken = async () => {
            r.tokens += 1;
            return (await window.heraldMint(mint)).token;
          };
        } else if (token) {
          options.getToken = () => {
            r.tokens += 1;
            return token;
          };
        }
        window.subs[name] = subscribe(options);
      };
    }, base);
    return page;
  }

  const rec = (page, name) => page.evaluate((n) => window.rec[n], name);
  const waitOpen = (page, name) =>
    waitFor(page, (n) => window.rec[n] && window.rec[n].states.some(([s]) => s === 'open'), name, `${name} open`);
  const waitEvents = (page, name, count) =>
    waitFor(page, ([n, k]) => window.rec[n].events.length >= k, [name, count], `${count} events on ${name}`);

  function distinctAndIncreasing(events, what) {
    for (let i = 1; i < events.length; i++) {
      check(BigInt(events[i].id) > BigInt(events[i - 1].id), `${what}: ids increase (${events[i - 1].id} then ${events[i].id})`);
    }
  }

  return {
    async 'herald-order'(ctx) {
      const page = await heraldPage(ctx);
      for (const transport of transports) {
        const a = `order-${transport}-a`;
        const b = `order-${transport}-b`;
        await page.evaluate(([t, a, b]) => Promise.all([
          window.start(`multi-${t}`, { channels: [a, b], transport: t }),
          window.start(`single-${t}`, { channels: a, transport: t }),
        ]), [transport, a, b]);
        await waitOpen(page, `multi-${transport}`);
        await waitOpen(page, `single-${transport}`);

        const sent = [];
        for (let n = 0; n < 10; n++) {
          const channel = n % 2 ? b : a;
          const event = n % 3 === 0 ? 'alert' : '';
          const data = n === 4 ? 'line one\nline two\r\nline three' : `event ${n}`;
          const answer = await publishAs(channel, data, event);
          sent.push({ id: answer.id, event: event || 'message', data: data.replace(/\r\n/g, '\n'), channel });
        }
        await waitEvents(page, `multi-${transport}`, 10);
        await waitEvents(page, `single-${transport}`, 5);
        const multi = (await rec(page, `multi-${transport}`)).events;
        // The wire of a multi-channel event stream does not carry the channel.
        const channelOf = (e) => (transport === 'ws' ? e.channel : null);
        same(multi, sent.map((e) => ({ ...e, channel: channelOf(e) })), `${transport}: the multi-channel subscription's events`);
        same((await rec(page, `single-${transport}`)).events, sent.filter((e) => e.channel === a), `${transport}: the one-channel subscription's events`);
        distinctAndIncreasing(multi, transport);

        // publish() from the page, a string and a JSON value, then a refused one
        const published = await page.evaluate(async ([t, a, b]) => {
          const sub = window.subs[`multi-${t}`];
          const first = await sub.publish(a, 'from the page', { event: 'note' });
          const second = await sub.publish(b, { n: 1 });
          let refused = null;
          try {
            await sub.publish('not a channel', 'x');
          } catch (e) {
            refused = { status: e.status, code: e.code, message: e.message };
          }
          return { first, second, refused, last: null };
        }, [transport, a, b]);
        same(published.first.channel, a, `${transport}: publish() answers the channel`);
        same(published.second.channel, b, `${transport}: publish() answers the channel`);
        check(published.refused && published.refused.code === 'bad_channel' && published.refused.message,
          `${transport}: a refused publish rejects with herald's error: ${JSON.stringify(published.refused)}`);
        same(published.refused.status, transport === 'ws' ? 0 : 400, `${transport}: the refused publish's status`);
        await waitEvents(page, `multi-${transport}`, 12);
        const mine = (await rec(page, `multi-${transport}`)).events.slice(10);
        same(mine, [
          { id: published.first.id, event: 'note', data: 'from the page', channel: transport === 'ws' ? a : null },
          { id: published.second.id, event: 'message', data: '{"n":1}', channel: transport === 'ws' ? b : null },
        ], `${transport}: the events the page published`);
        same(await page.evaluate((t) => window.subs[`multi-${t}`].lastEventId, transport), published.second.id, `${transport}: lastEventId`);
        same((await rec(page, `multi-${transport}`)).gaps, [], `${transport}: gaps`);
        await page.evaluate((t) => { window.subs[`multi-${t}`].close(); window.subs[`single-${t}`].close(); }, transport);
      }
      return { transports };
    },

    async 'herald-renew'(ctx) {
      const { channel, ttl, renewals } = params;
      return renewUnderLoad(ctx, { channel, ttl, renewals, clockAheadMs: 0 });
    },

    async 'herald-expired'(ctx) {
      const { channel, ttl } = params;
      return renewUnderLoad(ctx, { channel, ttl, renewals: 2, clockAheadMs: 3600 * 1000 });
    },

    async 'herald-gap'(ctx) {
      const { channel, lastEventId, retained } = params;
      const page = await heraldPage(ctx);
      for (const transport of transports) {
        const name = `gap-${transport}`;
        await page.evaluate(([n, t, ch, id]) => window.start(n, { channels: [ch], transport: t, lastEventId: id }),
          [name, transport, channel, lastEventId]);
        await waitEvents(page, name, retained.length);
        const r = await rec(page, name);
        same(r.gaps.length, 1, `${transport}: gaps told`);
        same(r.gaps[0].channel, channel, `${transport}: the gap's channel`);
        same(r.events.map((e) => e.id), retained, `${transport}: the retained events after the gap`);
        await page.evaluate((n) => window.subs[n].close(), name);
      }
      return { transports };
    },

    async 'herald-presence'(ctx) {
      const { room, alice, bob } = params;
      const page = await heraldPage(ctx);
      const pairs = [['sse', 'ws'], ['ws', 'sse']];
      for (const [ta, tb] of pairs) {
        const ch = `${room}-${ta}`;
        const subsOf = (change) => change.members.map((m) => m.sub).sort();
        const roster = (name) => page.evaluate(([n, c]) => window.subs[n].members(c), [name, ch]);
        await page.evaluate(([ta, ch, token]) => window.start(`alice-${ta}`, { channels: [ch], transport: ta, token }), [ta, ch, alice]);
        await waitFor(page, (n) => window.rec[n].presence.length >= 1, `alice-${ta}`, 'alice\'s snapshot');
        await page.evaluate(([tb, ch, token]) => window.start(`bob-${tb}`, { channels: [ch], transport: tb, token }), [tb, ch, bob]);
        await waitFor(page, (n) => window.rec[n].presence.length >= 2, `alice-${ta}`, 'alice told of bob');
        await waitFor(page, (n) => window.rec[n].presence.length >= 1, `bob-${tb}`, 'bob\'s snapshot');
        const aliceSaw = (await rec(page, `alice-${ta}`)).presence;
        const bobSaw = (await rec(page, `bob-${tb}`)).presence;
        same(aliceSaw.map((p) => [p.type, subsOf(p), p.count]), [['snapshot', ['1'], 1], ['join', ['1', '2'], 2]], `alice (${ta}): presence`);
        same(aliceSaw[1].member, { sub: '2', info: { name: 'Bob' } }, `alice (${ta}): who joined`);
        same(bobSaw.map((p) => [p.type, subsOf(p), p.count]), [['snapshot', ['1', '2'], 2]], `bob (${tb}): his snapshot`);
        const names = (await roster(`alice-${ta}`)).map((m) => [m.sub, m.info.name]).sort();
        same(names, [['1', 'Alice'], ['2', 'Bob']], `alice (${ta}): members() after bob joined`);

        // bob leaves; after the server's presence grace alice is told
        await page.evaluate((n) => window.subs[n].close(), `bob-${tb}`);
        await waitFor(page, (n) => window.rec[n].presence.length >= 3, `alice-${ta}`, 'alice told bob left');
        const left = (await rec(page, `alice-${ta}`)).presence[2];
        same([left.type, left.member.sub, subsOf(left), left.count], ['leave', '2', ['1'], 1], `alice (${ta}): bob's leave`);
        same((await roster(`alice-${ta}`)).map((m) => m.sub), ['1'], `alice (${ta}): members() after bob left`);
        await page.evaluate((n) => window.subs[n].close(), `alice-${ta}`);
      }
      return { pairs };
    },

    async 'herald-close'(ctx) {
      const page = await heraldPage(ctx);
      const streams = () => metric('herald_streams_open');
      const connections = () => metric('herald_connections_open');
      const before = { streams: await streams(), connections: await connections() };
      same(before.streams, 0, 'streams open before');
      await page.evaluate(() => Promise.all([
        window.start('sse-one', { channels: ['close-a'], transport: 'sse' }),
        window.start('sse-two', { channels: ['close-a', 'close-b'], transport: 'sse' }),
        window.start('ws-one', { channels: ['close-a'], transport: 'ws' }),
        window.start('ws-two', { channels: ['close-a', 'close-b'], transport: 'ws' }),
      ]));
      for (const n of ['sse-one', 'sse-two', 'ws-one', 'ws-two']) await waitOpen(page, n);
      await until('4 streams open at the server', async () => (await streams()) === 4);
      const during = await connections();
      check(during >= before.connections + 4, `4 more connections while subscribed: ${before.connections} then ${during}`);

      await page.evaluate(() => Object.values(window.subs).forEach((s) => s.close()));
      await until('no stream open at the server', async () => (await streams()) === 0);
      await until(`connections back to ${before.connections}`, async () => (await connections()) === before.connections);
      const late = await publishAs('close-a', 'after close');
      await page.waitForTimeout(300);
      for (const n of ['sse-one', 'sse-two', 'ws-one', 'ws-two']) {
        const r = await rec(page, n);
        check(!r.events.some((e) => e.id === late.id), `${n}: an event after close() was handed over`);
        same(r.states.at(-1), ['closed', 'client'], `${n}: the last state`);
      }
      return { before, during };
    },

    async 'herald-refused'(ctx) {
      const { channel, badToken, otherToken, settleMs } = params;
      const page = await heraldPage(ctx);
      const unauthorized = 'herald_requests_rejected_total{reason="unauthorized"}';
      const forbidden = 'herald_requests_rejected_total{reason="forbidden"}';
      const out = {};
      for (const transport of transports) {
        for (const [kind, token, series, reason] of [
          ['bad', badToken, unauthorized, 'unauthorized'],
          ['other', otherToken, forbidden, 'forbidden'],
        ]) {
          const name = `${kind}-${transport}`;
          const before = await metric(series);
          await page.evaluate(([n, t, ch, token]) => window.start(n, { channels: [ch], transport: t, token }), [name, transport, channel, token]);
          await waitFor(page, (n) => window.rec[n].states.some(([s]) => s === 'closed'), name, `${name} closed`);
          // The server's retry: is short; a subscription that retried would have by now.
          await page.waitForTimeout(settleMs || 1500);
          const r = await rec(page, name);
          same(r.states, [['connecting', null], ['closed', reason]], `${name}: states`);
          same(r.tokens, 1, `${name}: getToken() calls`);
          // A WebSocket upgrade shows the page no status: herald.js asks once with HEAD.
          same(await metric(series) - before, transport === 'ws' ? 2 : 1, `${name}: requests refused at the server`);
          same(await metric('herald_streams_open'), 0, `${name}: streams open`);
          out[name] = r.states;
        }
      }
      return out;
    },

    /**
     * POST /disconnect (SPEC §11) without revoke: herald.js comes back with a new
     * token from the last id, losing nothing. With revoke: it closes ("revoked")
     * and asks the server nothing more.
     */
    async 'herald-revoke'(ctx) {
      const { channel, settleMs } = params;
      const page = await heraldPage(ctx);
      const toHerald = [];
      page.on('request', (r) => { if (r.url().startsWith(base)) toHerald.push(`${r.method()} ${r.url()}`); });
      const disconnect = async (body) => {
        const res = await fetch(`${base}/disconnect`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${params.publishToken}`, 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        });
        const text = await res.text();
        if (!res.ok) throw new Error(`POST /disconnect -> ${res.status} ${text}`);
        return JSON.parse(text);
      };
      const unauthorized = 'herald_requests_rejected_total{reason="unauthorized"}';
      const out = {};
      for (const transport of transports) {
        const name = `revoke-${transport}`;
        const ch = `${channel}-${transport}`;
        const sub = `77${transport}`;
        await page.evaluate(([n, t, ch, sub]) => window.start(n, { channels: [ch], transport: t, mint: { sub, subscribe: [ch], ttl: 600 } }),
          [name, transport, ch, sub]);
        await waitOpen(page, name);
        const first = await publishAs(ch, 'before the disconnect');
        await waitFor(page, ([n, id]) => window.rec[n].events.some((e) => e.id === id), [name, first.id], `${transport}: the first event`);

        // A disconnect without revoke: back at once, with a new token, from the last id.
        same(await disconnect({ sub }), { disconnected: 1 }, `${transport}: POST /disconnect`);
        const meanwhile = await publishAs(ch, 'published while disconnected');
        await waitFor(page, ([n, id]) => window.rec[n].events.some((e) => e.id === id), [name, meanwhile.id], `${transport}: the event published meanwhile`);
        await until(`${transport}: open again`, async () => (await rec(page, name)).states.at(-1)[0] === 'open');
        let r = await rec(page, name);
        same(r.events.map((e) => e.id), [first.id, meanwhile.id], `${transport}: events across the disconnect`);
        check(r.states.some(([s, why]) => s === 'reconnecting' && why === 'disconnected'), `${transport}: states ${JSON.stringify(r.states)}`);
        same(r.tokens, 2, `${transport}: getToken() calls (the first, then after the disconnect)`);

        // A revocation: closed, and nothing more reaches the server.
        const before = { unauthorized: await metric(unauthorized), requests: toHerald.length, tokens: r.tokens };
        same(await disconnect({ sub, revoke: '1m' }), { disconnected: 1 }, `${transport}: POST /disconnect with revoke`);
        await waitFor(page, (n) => window.rec[n].states.some(([s]) => s === 'closed'), name, `${transport}: closed`);
        // A retry would come within the server's short retry: and herald.js's one-second jitter.
        await page.waitForTimeout(settleMs || 2000);
        r = await rec(page, name);
        same(r.states.at(-1), ['closed', 'revoked'], `${transport}: the last state`);
        same(r.tokens, before.tokens, `${transport}: getToken() calls after the revocation`);
        same(await metric(unauthorized), before.unauthorized, `${transport}: requests refused at the server after the revocation`);
        same(await metric('herald_streams_open'), 0, `${transport}: streams open after the revocation`);
        same(toHerald.slice(before.requests), [], `${transport}: requests the page sent herald after the revocation`);
        out[transport] = r.states;
      }
      return out;
    },

    /**
     * publish() with an idempotencyKey (SPEC §12), twice: one event, the same
     * answer, the second marked replayed; the key with other data is refused.
     */
    async 'herald-idempotent'(ctx) {
      const page = await heraldPage(ctx);
      const out = {};
      for (const transport of transports) {
        const name = `idem-${transport}`;
        const ch = `idem-${transport}`;
        await page.evaluate(([n, t, ch]) => window.start(n, { channels: [ch], transport: t }), [name, transport, ch]);
        await waitOpen(page, name);
        const answers = await page.evaluate(async ([n, ch, key]) => {
          const sub = window.subs[n];
          const first = await sub.publish(ch, 'once', { event: 'note', idempotencyKey: key });
          const again = await sub.publish(ch, 'once', { event: 'note', idempotencyKey: key });
          let reused = null;
          try {
            await sub.publish(ch, 'other data', { event: 'note', idempotencyKey: key });
          } catch (e) {
            reused = { status: e.status, code: e.code };
          }
          const next = await sub.publish(ch, 'next');
          return { first, again, reused, next };
        }, [name, ch, `key-${transport}-${Date.now()}`]);
        same(answers.again.id, answers.first.id, `${transport}: the repeated publish answers the first id`);
        same(answers.again.replayed, true, `${transport}: the repeated answer is marked replayed`);
        check(!answers.first.replayed, `${transport}: the first answer is not replayed`);
        same(answers.reused, { status: transport === 'ws' ? 0 : 422, code: 'idempotency_key_reused' }, `${transport}: the key with other data`);
        await waitFor(page, ([n, id]) => window.rec[n].events.some((e) => e.id === id), [name, answers.next.id], `${transport}: the next event`);
        same((await rec(page, name)).events.map((e) => [e.id, e.data]),
          [[answers.first.id, 'once'], [answers.next.id, 'next']], `${transport}: events published`);
        await page.evaluate((n) => window.subs[n].close(), name);
        out[transport] = answers.first.id;
      }
      return out;
    },
  };

  /**
   * Subscribes with tokens of `ttl` seconds from the driver while one event is
   * published every 100 ms, until getToken() was called for `renewals` renewals
   * and a little more; then every event must have arrived once, in order.
   */
  async function renewUnderLoad(ctx, { channel, ttl, renewals, clockAheadMs }) {
    const page = await heraldPage(ctx, { clockAheadMs });
    const out = {};
    for (const transport of transports) {
      const name = `renew-${transport}`;
      const ch = `${channel}-${transport}`;
      await page.evaluate(([n, t, ch, ttl]) => window.start(n, { channels: [ch], transport: t, mint: { subscribe: [ch], publish: [ch], ttl } }),
        [name, transport, ch, ttl]);
      await waitOpen(page, name);
      const sent = [];
      let extra = 0;
      const deadline = Date.now() + 60000;
      // Publish until the renewals are done, then 10 more.
      while (extra < 10) {
        check(Date.now() < deadline, `${transport}: ${renewals} renewals within 60 s (${(await rec(page, name)).tokens - 1} so far)`);
        sent.push((await publishAs(ch, `event ${sent.length}`)).id);
        await new Promise((r) => setTimeout(r, 100));
        if ((await rec(page, name)).tokens > renewals) extra += 1;
      }
      // and one over the page's own connection, with its renewed token
      const own = await page.evaluate(([n, ch]) => window.subs[n].publish(ch, 'from the page'), [name, ch]);
      sent.push(own.id);
      await waitFor(page, ([n, id]) => window.rec[n].events.some((e) => e.id === id), [name, own.id], `${transport}: the last event`);
      const r = await rec(page, name);
      same(r.events.map((e) => e.id), sent, `${transport}: every event once, in order, across ${r.tokens - 1} renewals`);
      same(r.gaps, [], `${transport}: gaps`);
      check(!r.states.some(([s]) => s === 'closed' || s === 'reconnecting'), `${transport}: states ${JSON.stringify(r.states)}`);
      const why = clockAheadMs ? 'expired' : 'expiring';
      same(r.states.filter(([s]) => s === 'renewing').map(([, reason]) => reason).slice(0, renewals),
        Array(renewals).fill(why), `${transport}: why it renewed`);
      await page.evaluate((n) => window.subs[n].close(), name);
      out[transport] = { events: sent.length, renewals: r.tokens - 1 };
    }
    return out;
  }
}
