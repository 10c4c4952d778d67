//! The HTTP side: a public listener for channels and an admin listener for operators.
//!
//! Each listener is a plain accept loop handing connections to hyper's HTTP/1.1 server with a
//! `service_fn`, bounded per listener (`conns`: at the bound, the connection without a request
//! the longest makes room for the newcomer); handlers decode, load the snapshot once, call the
//! engine, encode. Admin routes live only on the admin listener, so a channel backend can never
//! reach them.

pub mod admin;
pub mod body;
pub mod codec;
mod conns;
pub mod decide;
pub mod error;
pub mod events;
pub mod guards;
pub mod openapi;
pub mod public;
pub mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::contact::attribution::DecisionIds;
use crate::contact::{Clock, ContactConfig, Contacts};
use crate::engine::BuiltinFallback;
use crate::metrics::Metrics;
use crate::registry::Registry;
use conns::{Busy, Connections};
use guards::Admission;

/// The admin bearer token; its `Debug` never shows it.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token; an empty string means no token.
    pub fn new(token: String) -> Option<Self> {
        (!token.is_empty()).then_some(AdminToken(token))
    }

    /// Compares in constant time, so response timing does not leak the token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Public listener address.
    pub listen: SocketAddr,
    /// Admin listener address.
    pub admin_listen: SocketAddr,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Time a client has to send its request headers; hyper also closes a keep-alive
    /// connection idle for this long.
    pub header_timeout: Duration,
    /// Time a client has to send a request body once its headers are in.
    pub body_timeout: Duration,
    /// Budget of one decision, from the request read to the answer.
    pub deadline: Duration,
    /// Decide requests in flight before new ones get `overload` fallback.
    pub max_inflight: usize,
    /// Open connections per listener. At the bound a newcomer replaces the connection idle the
    /// longest (silent since accepted, or between keep-alive requests); accepting waits only
    /// while every connection has a request in flight.
    pub max_connections: usize,
    /// On shutdown: how long `/readyz` says 503 while still serving, so balancers move away.
    pub drain_delay: Duration,
    /// On shutdown: how long in-flight requests get to finish.
    pub grace: Duration,
    /// Bearer token the admin listener requires, when set.
    pub admin_token: Option<AdminToken>,
    /// Where decision ids take their random bits (the thread's RNG unless a test fixes them).
    pub decision_ids: DecisionIds,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(2),
            deadline: Duration::from_millis(5),
            max_inflight: 128,
            max_connections: 4096,
            drain_delay: Duration::from_millis(1000),
            grace: Duration::from_secs(10),
            admin_token: None,
            decision_ids: DecisionIds::default(),
        }
    }
}

/// What handlers share.
pub struct AppState {
    /// The serving snapshot.
    pub registry: Arc<Registry>,
    /// Counters.
    pub metrics: Metrics,
    /// Settings.
    pub config: ServerConfig,
    /// The last stage of the fallback chain (and all there is without a model).
    pub builtin: BuiltinFallback,
    /// Decide requests in flight.
    pub admission: Admission,
    /// Set when shutdown begins: `/readyz` answers 503 from then on.
    pub draining: AtomicBool,
    /// Open connections, both listeners.
    pub connections: AtomicUsize,
    /// Connections closed to make room for a new one at the bound, both listeners.
    pub evicted_connections: AtomicU64,
    /// Contact history, event log, funnel, and the clock handlers read "now" from.
    pub contacts: Arc<Contacts>,
    /// The link to the other replicas, when `--redis` is set.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// The sample of decisions logged for replay, when `--decision-log` is set.
    pub decision_log: Option<Arc<crate::decision_log::DecisionLog>>,
}

impl AppState {
    /// State around a registry, with an empty built-in fallback.
    pub fn new(registry: Arc<Registry>, config: ServerConfig) -> Self {
        Self::with_builtin(registry, config, BuiltinFallback::default())
    }

    /// State around a registry and a built-in fallback.
    pub fn with_builtin(
        registry: Arc<Registry>,
        config: ServerConfig,
        builtin: BuiltinFallback,
    ) -> Self {
        let contacts = Arc::new(Contacts::in_memory(
            &ContactConfig::default(),
            Clock::system(),
        ));
        follow_models(&registry, &contacts);
        AppState {
            registry,
            metrics: Metrics::default(),
            admission: Admission::new(config.max_inflight),
            config,
            builtin,
            draining: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            evicted_connections: AtomicU64::new(0),
            contacts,
            fleet: None,
            decision_log: None,
        }
    }

    /// The same state, sharing events with the fleet.
    pub fn with_fleet(mut self, fleet: Arc<crate::fleet::Fleet>) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// The same state logging a sample of its decisions.
    pub fn with_decision_log(mut self, log: Arc<crate::decision_log::DecisionLog>) -> Self {
        self.decision_log = Some(log);
        self
    }

    /// The same state with the given contact side (a data folder, a test clock).
    pub fn with_contacts(mut self, contacts: Arc<Contacts>) -> Self {
        follow_models(&self.registry, &contacts);
        self.contacts = contacts;
        self
    }
}

/// Keeps the contact side ready for every model the registry publishes (history horizon,
/// funnel tables), from now on. The hook holds the contact side weakly: one replaced by
/// [`AppState::with_contacts`] is not kept alive by it.
fn follow_models(registry: &Registry, contacts: &Arc<Contacts>) {
    let contacts = Arc::downgrade(contacts);
    registry.on_publish(move |set| {
        if let Some(c) = contacts.upgrade() {
            bind_set(&c, set);
        }
    });
}

/// Readies the contact side for a model set: each model's history horizon and funnel table,
/// and the experiment that attributes outcomes naming no decision. Also called before the
/// event log is replayed at start.
pub fn bind_set(contacts: &Contacts, set: &crate::registry::ModelSet) {
    for (model, _, key) in set.models() {
        contacts.bind_model(&model.compiled, key);
    }
    let challenger = set.challenger.as_ref().map(|c| {
        let experiment = crate::experiment::Challenger {
            model: c.model.clone(),
            share: c.share,
            salt: c.salt.clone(),
        };
        (set.key(crate::experiment::Variant::Challenger), experiment)
    });
    contacts
        .funnel()
        .activate(set.key(crate::experiment::Variant::Champion), challenger);
}

/// A started server: its bound addresses and a way to stop it.
pub struct RunningServer {
    /// Where the public listener is bound.
    pub public_addr: SocketAddr,
    /// Where the admin listener is bound.
    pub admin_addr: SocketAddr,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Arc<Connections>>>,
}

impl RunningServer {
    /// Drains and stops: `/readyz` turns 503 at once, requests keep being served for the
    /// drain delay, then accepting stops and in-flight requests get the grace period to
    /// finish. Returns how many connections were still open when the grace period ended.
    pub async fn shutdown(self) -> usize {
        self.state.draining.store(true, Relaxed);
        tokio::time::sleep(self.state.config.drain_delay).await;
        let _ = self.stop.send(true);
        let mut left = 0;
        for t in self.tasks {
            let Ok(conns) = t.await else { continue };
            let open = conns.open();
            if tokio::time::timeout(self.state.config.grace, conns.closed())
                .await
                .is_err()
            {
                left += open;
            }
        }
        left
    }
}

/// Which of the two listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Channels' decisions and events.
    Public,
    /// Operators' admin API and metrics.
    Admin,
}

/// A listener that could not be bound, with its address.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind the {} listener on {addr}: {source}", match .listener { Listener::Public => "public", Listener::Admin => "admin" })]
pub struct BindError {
    /// Which listener.
    pub listener: Listener,
    /// The address asked for.
    pub addr: SocketAddr,
    /// The cause (address in use, not available here, ...).
    #[source]
    pub source: std::io::Error,
}

/// Binds both listeners and starts serving.
pub async fn start(state: Arc<AppState>) -> Result<RunningServer, BindError> {
    let (public, public_addr) = bind(Listener::Public, state.config.listen).await?;
    let (admin, admin_addr) = bind(Listener::Admin, state.config.admin_listen).await?;
    let (stop, stopped) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(accept_loop(
            public,
            state.clone(),
            Side::Public,
            stopped.clone(),
        )),
        tokio::spawn(accept_loop(admin, state.clone(), Side::Admin, stopped)),
    ];
    Ok(RunningServer {
        public_addr,
        admin_addr,
        state,
        stop,
        tasks,
    })
}

async fn bind(
    listener: Listener,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), BindError> {
    let fail = |source| BindError {
        listener,
        addr,
        source,
    };
    let l = TcpListener::bind(addr).await.map_err(fail)?;
    let bound = l.local_addr().map_err(fail)?;
    Ok((l, bound))
}

#[derive(Clone, Copy)]
enum Side {
    Public,
    Admin,
}

/// Why a connection's task stopped just serving it.
enum Ending {
    /// The connection ended by itself (client close, timeout, error).
    Closed,
    /// Chosen to make room for a newcomer at the bound.
    Evicted,
    /// The server is stopping.
    Stopping,
}

/// Accepts until told to stop; returns the listener's connections for a graceful drain.
async fn accept_loop(
    listener: TcpListener,
    state: Arc<AppState>,
    side: Side,
    mut stop: watch::Receiver<bool>,
) -> Arc<Connections> {
    let conns = Arc::new(Connections::new(state.config.max_connections));
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.changed() => return conns,
        };
        // At the bound, the connection idle the longest makes room; when every one has a
        // request in flight, wait (the kernel backlog holds the next ones).
        let admitted = tokio::select! {
            a = conns.admit() => a,
            _ = stop.changed() => return conns,
        };
        if admitted.evicted {
            state.evicted_connections.fetch_add(1, Relaxed);
        }
        let _ = stream.set_nodelay(true);
        let registration = conns.register(admitted);
        // One clone per request of this connection's own context: no count shared with other
        // connections is touched.
        let ctx = Arc::new((state.clone(), registration.conn().clone()));
        let svc = service_fn(move |req| {
            let ctx = ctx.clone();
            async move {
                let (state, conn) = &*ctx;
                // A request raced by an eviction is still finished: see `Ending::Evicted`.
                let _busy = Busy::enter(conn);
                Ok::<_, Infallible>(match side {
                    Side::Public => public::handle(state, req).await,
                    Side::Admin => admin::handle(state, req).await,
                })
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(state.config.header_timeout)
            .max_buf_size(16 * 1024)
            .keep_alive(true);
        let state = state.clone();
        let mut stopping = stop.clone();
        state.connections.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let ending = tokio::select! {
                _ = conn.as_mut() => Ending::Closed,
                () = registration.evicted() => Ending::Evicted,
                _ = stopping.wait_for(|stop| *stop) => Ending::Stopping,
            };
            match ending {
                Ending::Closed => {}
                // Silent since accepted: nothing to finish, close it now (hyper's graceful
                // shutdown would wait for a first request until the header timeout).
                Ending::Evicted if !registration.served() => {}
                // Idle keep-alive closes at once; a request in flight (one that raced the
                // eviction, or any at a stop) finishes first.
                Ending::Evicted | Ending::Stopping => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            state.connections.fetch_sub(1, Relaxed);
            drop(registration);
        });
    }
}
