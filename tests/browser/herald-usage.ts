// Type-checks web/herald.d.ts as a page would use it: `tsc --strict --noEmit`
// (run by tests/api/browser/herald_js.rs). Nothing here runs.
import {
  subscribe,
  type Gap,
  type HeraldEvent,
  type Member,
  type PresenceChange,
  type Published,
  type PublishError,
  type State,
  type Subscription,
} from '../../web/herald.js';

// The five-line example of docs/herald-js.md.
const sub = subscribe({
  channels: ['news'],
  onEvent: (e) => console.log(e.id, e.event, e.data),
});

// Every option.
let token = 'eyJ...';
const full: Subscription = subscribe({
  url: 'https://push.example.com',
  channels: ['presence-room-7', 'private-user-42'] as const,
  transport: 'ws',
  getToken: async () => {
    const res = await fetch('/app/herald-token');
    token = await res.text();
    return token;
  },
  lastEventId: localStorage.getItem('lastId'),
  withCredentials: false,
  onEvent(e: HeraldEvent) {
    const channel: string | null = e.channel;
    localStorage.setItem('lastId', e.id);
    if (channel !== null) console.log(channel.toUpperCase(), e.data.length);
  },
  onGap(gap: Gap) {
    const ch: string = gap.channel;
    console.warn(`some events of ${ch} may be missing`, gap.reason ?? '');
  },
  onPresence(change: PresenceChange) {
    if (change.type === 'join' && change.member) console.log(change.member.sub, 'joined');
    const names = change.members.map((m: Member) => m.sub);
    console.log(names.join(', '), change.count, change.truncated);
  },
  onState(state: State, reason, error) {
    if (state === 'closed' && reason === 'revoked') location.assign('/login');
    if (reason === 'get_token_failed') console.error(error);
  },
});

// A synchronous getToken, and none at all.
subscribe({ channels: 'news', getToken: () => token });
subscribe({ channels: 'news', getToken: () => null, transport: 'sse' });

async function talk(s: Subscription): Promise<string> {
  const published: Published = await s.publish('chat', { text: 'hi' }, { event: 'chat', idempotencyKey: crypto.randomUUID() });
  await s.publish('chat', 'plain text');
  try {
    await s.publish('chat', 'x', { event: 'herald.nope' });
  } catch (e) {
    const err = e as PublishError;
    console.log(err.status, err.code, err.message, err.body);
  }
  const roster: Member[] = s.members('presence-room-7');
  const last: string = s.lastEventId;
  return `${published.id} ${published.subscribers} ${published.replayed === true} ${roster.length} ${last}`;
}

talk(full).then(() => {
  sub.close();
  full.close();
});

// What the declarations refuse.
// @ts-expect-error: channels is required
subscribe({ onEvent: () => {} });
// @ts-expect-error: no such transport
subscribe({ channels: 'news', transport: 'websocket' });
// @ts-expect-error: lastEventId is read-only
sub.lastEventId = '5';
// @ts-expect-error: a publish option that does not exist
sub.publish('news', 'x', { type: 'alert' });
