//! The open connections of one listener: the bound on them, what each is doing, and which one
//! makes room when the bound is full.
//!
//! A connection that sends nothing holds a slot until hyper's header timeout cuts it (10 s by
//! default), so a listener full of silent or idle keep-alive connections would keep a new client
//! waiting that long. At the bound, a newcomer therefore replaces the connection that has been
//! without a request the longest: silent since it was accepted, or idle between keep-alive
//! requests. A connection with a request in flight is never chosen; only when every one has a
//! request in flight does accepting wait, until a slot frees or a connection goes idle.
//!
//! The table is a mutex taken on accept, close and eviction only. The request path touches
//! only its own connection's atomics ([`Busy`]): no lock, no allocation, one clock read. This
//! module must not read or write the socket itself: hyper owns it; the accept loop turns an
//! eviction into a close.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::futures::Notified;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// One listener's open connections and the bound on them.
pub(crate) struct Connections {
    /// One permit per open connection; a permit is returned when its connection task ends.
    slots: Arc<Semaphore>,
    max: u32,
    table: Mutex<Table>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<Conn>>,
}

/// What every connection of a listener shares with the accept loop.
struct Shared {
    /// Activity times are nanoseconds since this instant.
    epoch: Instant,
    /// Set while the accept loop waits for a connection to go idle.
    waiting: AtomicBool,
    /// Wakes the accept loop when a request ends while `waiting` is set.
    idle: Notify,
}

/// One open connection as the accept loop sees it.
pub(crate) struct Conn {
    id: u64,
    /// Requests in flight on it (HTTP/1.1 serves them one at a time: 0 or 1).
    inflight: AtomicU32,
    /// Whether it has ever started a request.
    served: AtomicBool,
    /// When it last stopped having a request in flight (its accept time until then).
    idle_since: AtomicU64,
    /// Notified when the connection is chosen to make room.
    evict: Notify,
    shared: Arc<Shared>,
}

/// A connection's registration: removes it from the table and returns its slot when dropped.
pub(crate) struct Registration {
    conns: Arc<Connections>,
    conn: Arc<Conn>,
    _slot: OwnedSemaphorePermit,
}

/// A slot for a new connection.
pub(crate) struct Admitted {
    slot: OwnedSemaphorePermit,
    /// Whether an open connection was closed to make it.
    pub evicted: bool,
}

impl Connections {
    /// At most `max` connections open at once (at least 1).
    pub fn new(max: usize) -> Self {
        let max = u32::try_from(max.max(1)).unwrap_or(u32::MAX);
        Connections {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            table: Mutex::default(),
            shared: Arc::new(Shared {
                epoch: Instant::now(),
                waiting: AtomicBool::new(false),
                idle: Notify::new(),
            }),
        }
    }

    /// A slot for a connection just accepted. At the bound, the connection without a request
    /// the longest is told to close and its slot is taken over; when every connection has a
    /// request in flight, this waits for one to end or to close.
    pub async fn admit(&self) -> Admitted {
        if let Some(slot) = self.try_slot() {
            return Admitted {
                slot,
                evicted: false,
            };
        }
        loop {
            // Registered before the scan, so a request that ends after it is not missed.
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            self.shared.waiting.store(true, Ordering::SeqCst);
            if let Some(victim) = self.pick_victim() {
                self.shared.waiting.store(false, Ordering::Relaxed);
                victim.evict.notify_one();
                return Admitted {
                    slot: self.slot().await,
                    evicted: true,
                };
            }
            tokio::select! {
                slot = self.slot() => {
                    self.shared.waiting.store(false, Ordering::Relaxed);
                    return Admitted { slot, evicted: false };
                }
                () = &mut idle => {}
            }
        }
    }

    /// Enters an admitted connection in the table.
    pub fn register(self: &Arc<Self>, admitted: Admitted) -> Registration {
        let mut table = self.lock();
        let id = table.next_id;
        table.next_id += 1;
        let conn = Arc::new(Conn {
            id,
            inflight: AtomicU32::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(self.shared.now()),
            evict: Notify::new(),
            shared: self.shared.clone(),
        });
        table.open.insert(id, conn.clone());
        Registration {
            conns: self.clone(),
            conn,
            _slot: admitted.slot,
        }
    }

    /// Connections whose task has not ended yet (evicted ones included until they close).
    pub fn open(&self) -> usize {
        self.max as usize - self.slots.available_permits()
    }

    /// Waits until every connection has closed.
    pub async fn closed(&self) {
        let _all = self.slots.acquire_many(self.max).await;
    }

    fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    async fn slot(&self) -> OwnedSemaphorePermit {
        match self.slots.clone().acquire_owned().await {
            Ok(slot) => slot,
            // The semaphore is never closed: it lives as long as `self`.
            Err(_) => unreachable!("connection slots closed"),
        }
    }

    /// Removes and returns the connection without a request in flight for the longest time.
    fn pick_victim(&self) -> Option<Arc<Conn>> {
        let mut table = self.lock();
        let id = table
            .open
            .values()
            .filter(|c| c.inflight.load(Ordering::SeqCst) == 0)
            .min_by_key(|c| c.idle_since.load(Ordering::Relaxed))?
            .id;
        table.open.remove(&id)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table holds no invariant a panicking holder could break halfway.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Registration {
    /// The connection, for its requests to mark themselves in flight ([`Busy`]).
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Resolves when the connection is chosen to make room for a newcomer.
    pub fn evicted(&self) -> Notified<'_> {
        self.conn.evict.notified()
    }

    /// Whether the connection has started a request. One that has not can be dropped as it
    /// is; one that has is shut down gracefully so a request that raced the eviction finishes.
    pub fn served(&self) -> bool {
        self.conn.served.load(Ordering::Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.conns.lock().open.remove(&self.conn.id);
    }
}

/// A request in flight on a connection: keeps the connection from being evicted until dropped.
pub(crate) struct Busy<'a>(&'a Conn);

impl<'a> Busy<'a> {
    /// Marks a request in flight on `conn`.
    pub fn enter(conn: &'a Conn) -> Busy<'a> {
        conn.inflight.fetch_add(1, Ordering::SeqCst);
        conn.served.store(true, Ordering::Relaxed);
        Busy(conn)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let c = self.0;
        c.idle_since.store(c.shared.now(), Ordering::Relaxed);
        c.inflight.fetch_sub(1, Ordering::SeqCst);
        if c.shared.waiting.load(Ordering::SeqCst) {
            c.shared.idle.notify_one();
        }
    }
}

/// Descriptors a process needs beside its connections: the event log, snapshots, the
/// listeners, Redis, a margin.
const OTHER_FILES: u64 = 256;

/// Raises the open-file soft limit to the hard one, as far as the connection bounds of both
/// listeners need, and warns when even the hard limit is below that: at the file limit, accept
/// fails before the bound is reached, so the bound never makes room and newcomers wait.
pub(crate) fn fit_file_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let need = 2 * max_connections as u64 + OTHER_FILES;
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else { return };
    if current >= need {
        return;
    }
    let target = limit.maximum.map_or(need, |max| max.min(need));
    if target > current {
        let raised = Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        // Refused, the limit stays as it was, and the check below says so.
        let _ = setrlimit(Resource::Nofile, raised);
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if now >= need {
        return;
    }
    tracing::warn!(
        open_file_limit = now,
        needed = need,
        max_connections,
        "the open-file limit is below what --max-connections needs on both listeners: past it \
         new connections fail before the bound makes room; raise the limit (ulimit -n, the \
         container's nofile) or lower --max-connections"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted_now(conns: &Connections) -> Admitted {
        let slot = conns.try_slot().expect("a free slot");
        Admitted {
            slot,
            evicted: false,
        }
    }

    #[tokio::test]
    async fn the_longest_idle_connection_without_a_request_goes_first() {
        let conns = Arc::new(Connections::new(3));
        let oldest = conns.register(admitted_now(&conns));
        let middle = conns.register(admitted_now(&conns));
        let newest = conns.register(admitted_now(&conns));
        // The oldest is busy, the middle one served a request and went idle after the newest
        // was accepted: the newest has been without a request the longest.
        let busy = Busy::enter(oldest.conn());
        drop(Busy::enter(middle.conn()));
        assert!(middle.served() && !newest.served());
        let victim = conns.pick_victim().expect("a victim");
        assert_eq!(victim.id, newest.conn().id);
        let victim = conns.pick_victim().expect("a second victim");
        assert_eq!(victim.id, middle.conn().id);
        assert!(
            conns.pick_victim().is_none(),
            "a busy connection was chosen"
        );
        drop(busy);
        assert_eq!(conns.pick_victim().expect("now idle").id, oldest.conn().id);
    }

    #[tokio::test]
    async fn admit_waits_for_a_request_to_end_when_all_are_busy() {
        let conns = Arc::new(Connections::new(1));
        let only = conns.register(admitted_now(&conns));
        let busy = Busy::enter(only.conn());
        let waiter = {
            let conns = conns.clone();
            tokio::spawn(async move { conns.admit().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // The request ends: the accept loop is woken, evicts the now idle connection, and
        // gets its slot once the connection's task drops its registration.
        drop(busy);
        only.evicted().await;
        drop(only);
        let admitted = waiter.await.unwrap();
        assert!(admitted.evicted);
        assert_eq!(conns.open(), 1, "the newcomer holds the only slot");
    }
}
