// Access-control scenarios (SPEC §6) for e2e.mjs, run by tests/api/browser/auth.rs:
//
//   auth-token   the demo page on a private channel with ?token= receives events and
//                publishes with Authorization: Bearer; with a bad token its stream is
//                refused (401), and herald.js closes it and never asks again
//   auth-renew   a 3-second token: before it expires, the page (herald.js) gets a
//                new token from its renew URL and resumes after its last id, missing
//                nothing published meanwhile
//   auth-cookie  a page on another origin (another port of 127.0.0.1) reads a private
//                channel with the token in a cookie, through withCredentials
//
// `h` holds e2e.mjs's helpers; the scenarios get their tokens from the params or
// from the driver's "mint" step.

export function authScenarios(h) {
  const { base, params, step, waitFor, waitState, waitEventId, logEvents, publishResult, check, same, screenshot } = h;

  async function publishAs(tok, channel, data) {
    const url = `${base}/publish/${encodeURIComponent(channel)}`;
    const res = await fetch(url, { method: 'POST', body: data, headers: { Authorization: `Bearer ${tok}` } });
    const text = await res.text();
    if (!res.ok) throw new Error(`POST ${url} -> ${res.status} ${text}`);
    return JSON.parse(text);
  }

  /** The page's requests for a stream, in order, as their query parameters (and .auth, the Authorization header). */
  function streamRequests(page) {
    const seen = [];
    page.on('request', (r) => {
      const url = new URL(r.url());
      if (url.pathname.startsWith('/events')) {
        const params = url.searchParams;
        params.auth = r.headers().authorization || null;
        seen.push(params);
      }
    });
    return seen;
  }

  async function until(what, cond) {
    const deadline = Date.now() + 20000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  return {
    async 'auth-token'(ctx) {
      const { channel, token, badToken, publishToken, settleMs } = params;
      check(channel && token && badToken && publishToken, 'auth-token needs channel, token, badToken, publishToken');
      const page = await ctx.newPage();
      await page.goto(`${base}/?channel=${channel}&token=${encodeURIComponent(token)}`);
      await waitState(page, 'open');
      const outside = await publishAs(publishToken, channel, 'private hello');
      await waitEventId(page, outside.id);
      // The page's own publish carries the token as a Bearer header.
      await page.fill('#pub-channel', channel);
      await page.fill('#pub-data', 'from the page');
      const own = await publishResult(page, () => page.click('#pub-submit'), 'ok');
      await waitEventId(page, own.id, 'the event the page published with its token');
      same((await logEvents(page)).map((e) => e.data), ['private hello', 'from the page'], 'events on the private channel');
      const shown = await page.textContent('body');
      check(!shown.includes(token), 'the token is not shown on the page');
      await screenshot(page, 'index-token.png');

      const bad = await ctx.newPage();
      const streams = streamRequests(bad);
      await bad.goto(`${base}/?channel=${channel}&token=${encodeURIComponent(badToken)}`);
      await waitState(bad, 'closed');
      // The server's retry is short: a reconnecting EventSource would ask again now.
      await bad.waitForTimeout(settleMs || 1000);
      same(streams.length, 1, 'stream requests with a bad token (a 401 is final: no retry)');
      same(await bad.getAttribute('#state', 'data-state'), 'closed', 'the state after the refusal');
      same((await logEvents(bad)).length, 0, 'events shown with a bad token');
      return { events: 2 };
    },

    async 'auth-renew'(ctx) {
      const { channel, publishToken, ttl } = params;
      check(channel && publishToken && ttl, 'auth-renew needs channel, publishToken, ttl');
      const page = await ctx.newPage();
      // The app's token endpoint: it mints a fresh token (through the driver),
      // after an event is published while the page has no stream.
      let during = null;
      let renewals = 0;
      await page.route((url) => url.pathname === '/app/herald-token', async (route) => {
        renewals += 1;
        during = await publishAs(publishToken, channel, 'published while renewing');
        const { token } = await step('mint', { subscribe: [channel], ttl: 600 });
        await route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ token }) });
      });
      const streams = streamRequests(page);
      // The short token is minted once the page is loaded (a slow page load
      // must not eat its seconds), typed into the field, and used.
      await page.goto(`${base}/?channel=${channel}&renew=/app/herald-token&connect=0`);
      const { token } = await step('mint', { subscribe: [channel], ttl });
      await page.fill('#sub-token', token);
      await page.click('#sub-submit');
      await waitState(page, 'open');
      const address = new URL(page.url()).searchParams;
      check(!page.url().includes(token), 'the token is not written into the address');
      same(address.get('renew'), '/app/herald-token', 'the renew URL kept in the address');
      const before = await publishAs(publishToken, channel, 'before expiry');
      await waitEventId(page, before.id);

      await until('the renewal', () => during !== null);
      await waitEventId(page, during.id, 'the event published while renewing');
      await waitState(page, 'open');
      const after = await publishAs(publishToken, channel, 'after renewal');
      await waitEventId(page, after.id);

      const events = await logEvents(page);
      same(events.map((e) => [e.id, e.data]), [
        [before.id, 'before expiry'],
        [during.id, 'published while renewing'],
        [after.id, 'after renewal'],
      ], 'every event once, in order, across the renewal');
      same(renewals, 1, 'renewals');
      same(streams.length, 2, 'streams opened');
      // The old stream serves while the new token is fetched, so it may have
      // handed over the event published meanwhile.
      check([before.id, during.id].includes(streams[1].get('lastEventId')),
        `the new stream resumes after the last id seen: ${streams[1].get('lastEventId')}`);
      same(streams[0].auth, `Bearer ${token}`, 'the first stream\'s token, as a header');
      check(streams[1].auth && streams[1].auth !== streams[0].auth, 'the new stream uses the new token');
      same(streams.map((p) => p.get('token')), [null, null], 'tokens in a stream URL');
      const sys = await page.$$eval('#log li.sys .ev-data', (n) => n.map((x) => x.textContent));
      check(sys.some((t) => t.includes('renewing the token')), `the page says it renews the token: ${JSON.stringify(sys)}`);
      return { events: events.length };
    },

    async 'auth-cookie'(ctx) {
      const { pageBase, channel, token, publishToken } = params;
      check(pageBase && channel && token && publishToken, 'auth-cookie needs pageBase, channel, token, publishToken');
      check(new URL(pageBase).origin !== new URL(base).origin, 'the page is on another origin');
      await ctx.addCookies([{ name: 'herald_token', value: token, url: base }]);
      const page = await ctx.newPage();
      await page.goto(`${pageBase}/healthz`);
      const open = (withCredentials) => page.evaluate(({ url, withCredentials }) => new Promise((resolve) => {
        const es = new EventSource(url, { withCredentials });
        window.__got = [];
        es.onopen = () => resolve('open');
        es.onerror = () => { if (es.readyState === EventSource.CLOSED) resolve('closed'); };
        es.onmessage = (e) => window.__got.push(e.data);
      }), { url: `${base}/events/${channel}`, withCredentials });
      same(await open(false), 'closed', 'without withCredentials (no cookie sent)');
      same(await open(true), 'open', 'with withCredentials');
      const ev = await publishAs(publishToken, channel, 'read through a cookie');
      await waitFor(page, (d) => window.__got.includes(d), 'read through a cookie', `event ${ev.id} on the cookie stream`);
      return { origin: pageBase };
    },
  };
}
