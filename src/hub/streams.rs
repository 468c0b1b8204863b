//! The open streams, by who holds them and which channels they read, so a
//! disconnect (SPEC §11) can end the ones it names.
//!
//! Each stream (event stream or WebSocket) registers a [`Ticket`] when it
//! opens and removes it when it is dropped. A disconnect walks the tickets
//! under one std `Mutex` (never held across an `.await`: it only compares a
//! few strings per ticket and flips an atomic), marks each match with the
//! reason it ends, and wakes its stream; the stream sees the mark the next
//! time it is polled (at once when idle, within a few items when busy),
//! writes `herald.disconnected` and ends. A walk rather than indexes by
//! `sub`, `jti` and channel: a disconnect is an operator's action, rare
//! beside opening and closing streams, and a walk is a few comparisons per
//! ticket, while indexes would cost every stream's open and close a few
//! more map updates under the same lock.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::task::AtomicWaker;

use crate::domain::ChannelName;
use crate::revocation::{Disconnect, Holder, Reason, Revocations};

/// One open stream, as a disconnect sees it.
#[derive(Debug)]
pub struct Ticket {
    holder: Option<Box<Holder>>,
    channels: Box<[ChannelName]>,
    /// 0 while open; else the [`Reason`] it must end for.
    ended: AtomicU8,
    /// The stream's task, woken when `ended` is set.
    waker: AtomicWaker,
    /// Its place in [`Streams`].
    slot: usize,
}

impl Ticket {
    /// Why the stream must end, once a disconnect named it.
    pub fn ended(&self) -> Option<Reason> {
        Reason::from_u8(self.ended.load(Ordering::Acquire))
    }

    /// [`Ticket::ended`], registering `waker` to be woken when it is set.
    pub fn poll_ended(&self, waker: &std::task::Waker) -> Option<Reason> {
        self.waker.register(waker);
        self.ended()
    }

    fn end(&self, reason: Reason) -> bool {
        let set = self
            .ended
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if set {
            self.waker.wake();
        }
        set
    }
}

/// Every open stream's ticket.
#[derive(Debug, Default)]
pub struct Streams {
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    tickets: Vec<Option<Arc<Ticket>>>,
    /// Empty places in `tickets`, reused first.
    free: Vec<usize>,
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a stream of `holder` on `channels`. A token revoked
    /// between the request's check and now ends the stream at once (the
    /// revocation is added before the walk that would have found it).
    pub fn register(
        &self,
        holder: Option<Holder>,
        channels: Box<[ChannelName]>,
        revocations: &Revocations,
    ) -> Arc<Ticket> {
        let ticket = {
            let mut slots = self.lock();
            let slot = slots.free.pop().unwrap_or(slots.tickets.len());
            let ticket = Arc::new(Ticket {
                holder: holder.map(Box::new),
                channels,
                ended: AtomicU8::new(0),
                waker: AtomicWaker::new(),
                slot,
            });
            if slot == slots.tickets.len() {
                slots.tickets.push(Some(ticket.clone()));
            } else {
                slots.tickets[slot] = Some(ticket.clone());
            }
            ticket
        };
        if let Some(h) = ticket.holder.as_deref() {
            if revocations.is_revoked(h.sub.as_deref(), h.jti.as_deref(), h.iat) {
                ticket.end(Reason::Revoked);
            }
        }
        ticket
    }

    /// Removes a stream's ticket (the stream was dropped).
    pub fn unregister(&self, ticket: &Ticket) {
        let mut slots = self.lock();
        let occupied = slots
            .tickets
            .get(ticket.slot)
            .and_then(Option::as_ref)
            .is_some_and(|t| std::ptr::eq(&**t, ticket));
        if occupied {
            slots.tickets[ticket.slot] = None;
            slots.free.push(ticket.slot);
        }
        // Give memory back once most places are empty.
        if slots.tickets.len() > 64 && slots.free.len() > 3 * slots.tickets.len() / 4 {
            while slots.tickets.last().is_some_and(Option::is_none) {
                slots.tickets.pop();
            }
            let len = slots.tickets.len();
            slots.free.retain(|&i| i < len);
            slots.tickets.shrink_to(2 * len);
            let free = slots.free.len();
            slots.free.shrink_to(2 * free);
        }
    }

    /// Ends every open stream `order` names; returns how many.
    pub fn disconnect(&self, order: &Disconnect) -> usize {
        let slots = self.lock();
        slots
            .tickets
            .iter()
            .flatten()
            .filter_map(|t| Some((t, order.ends(t.holder.as_deref(), &t.channels)?)))
            .filter(|(t, reason)| t.end(*reason))
            .count()
    }

    /// Streams registered now.
    pub fn len(&self) -> usize {
        let slots = self.lock();
        slots.tickets.len() - slots.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::Revoke;

    fn chs(names: &[&str]) -> Box<[ChannelName]> {
        names
            .iter()
            .map(|n| ChannelName::parse(n).unwrap())
            .collect()
    }

    fn holder(sub: &str, iat: u64) -> Option<Holder> {
        Some(Holder {
            sub: Some(sub.into()),
            jti: Some(format!("{sub}-{iat}").into()),
            iat: Some(iat),
        })
    }

    #[test]
    fn a_disconnect_ends_the_matching_streams_once() {
        let streams = Streams::default();
        let none = Revocations::default();
        let a = streams.register(holder("42", 10), chs(&["news", "x"]), &none);
        let b = streams.register(holder("42", 10), chs(&["other"]), &none);
        let c = streams.register(holder("7", 10), chs(&["news"]), &none);
        let anon = streams.register(None, chs(&["news"]), &none);
        let order = Disconnect {
            sub: Some("42".into()),
            channel: ChannelName::parse("news").ok(),
            jti: None,
            revoke: None,
        };
        assert_eq!(streams.disconnect(&order), 1);
        assert_eq!(a.ended(), Some(Reason::Disconnected));
        assert_eq!((b.ended(), c.ended(), anon.ended()), (None, None, None));
        assert_eq!(streams.disconnect(&order), 0, "already ended");
        let by_channel = Disconnect { sub: None, ..order };
        assert_eq!(streams.disconnect(&by_channel), 2);
        assert_eq!(anon.ended(), Some(Reason::Disconnected));
    }

    #[test]
    fn a_stream_registered_with_a_revoked_token_ends_at_once() {
        let streams = Streams::default();
        let revocations = Revocations::default();
        revocations.insert(&Disconnect {
            sub: Some("42".into()),
            channel: None,
            jti: None,
            revoke: Some(Revoke {
                at: 10,
                until_ms: crate::revocation::now_ms() + 60_000,
            }),
        });
        let old = streams.register(holder("42", 10), chs(&["a"]), &revocations);
        let new = streams.register(holder("42", 11), chs(&["a"]), &revocations);
        assert_eq!(old.ended(), Some(Reason::Revoked));
        assert_eq!(new.ended(), None);
    }

    #[test]
    fn places_are_reused_and_given_back() {
        let streams = Streams::default();
        let none = Revocations::default();
        let tickets: Vec<_> = (0..1000)
            .map(|i| streams.register(holder("u", i), chs(&["a"]), &none))
            .collect();
        assert_eq!(streams.len(), 1000);
        for t in &tickets[10..] {
            streams.unregister(t);
        }
        assert_eq!(streams.len(), 10);
        assert!(streams.lock().tickets.capacity() < 1000);
        let again = streams.register(None, chs(&["a"]), &none);
        assert!(again.slot < 1000);
        for t in tickets[..10].iter().chain([&again]) {
            streams.unregister(t);
        }
        assert!(streams.is_empty());
    }
}
