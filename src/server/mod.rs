//! The HTTP side: a public listener for channels and an admin listener for operators.
//!
//! Each listener is a plain accept loop handing connections to hyper's HTTP/1.1 server with a
//! `service_fn`, bounded per listener (`conns`: at the bound, the connection without a request
//! the longest makes room for the newcomer); handlers decode, load the snapshot once, call the
//! engine, encode. Admin routes live only on the admin listener, so a channel backend can never
//! reach them. Each socket is wrapped so that hyper's own answers to heads it cannot read carry
//! the JSON error body too (`head_errors`).

pub mod admin;
pub mod body;
pub mod codec;
mod conns;
pub mod decide;
pub mod error;
pub mod events;
pub mod guards;
mod head_errors;
pub mod openapi;
pub mod public;
pub mod shadow;
pub mod status;
pub mod typos;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::contact::attribution::DecisionIds;
use crate::contact::{Binding, Clock, ContactConfig, Contacts};
use crate::engine::BuiltinFallback;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::secrets::AdminToken;
use conns::{Busy, Connections};
use guards::Admission;

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
    /// What public bodies still arriving may hold in memory together.
    pub slow_bodies: body::SlowBodies,
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
    /// Where the listeners are bound (public, admin), once started: what `/openapi.json`
    /// names in `servers`.
    pub bound: std::sync::OnceLock<(SocketAddr, SocketAddr)>,
    /// Client mistakes answered anyway (unknown fields, channels, placements): counted, logged
    /// once per name.
    pub typos: typos::Typos,
    /// A candidate deciding beside the champion on a share of traffic, never served.
    pub shadow: Arc<shadow::Shadow>,
}

impl AppState {
    /// The URL of a listener for `/openapi.json`'s `servers` (see [`openapi::server_url`]).
    pub fn server_url(&self, admin: bool, host: Option<&hyper::header::HeaderValue>) -> String {
        let (public, admin_addr) = self
            .bound
            .get()
            .copied()
            .unwrap_or((self.config.listen, self.config.admin_listen));
        openapi::server_url(if admin { admin_addr } else { public }, host)
    }

    /// State around a registry, with in-memory contacts and an empty built-in fallback (tests,
    /// tools). A server with a data folder uses [`AppState::builder`].
    pub fn new(registry: Arc<Registry>, config: ServerConfig) -> Self {
        AppState::builder(registry, config).build()
    }

    /// Starts building the state around a registry.
    pub fn builder(registry: Arc<Registry>, config: ServerConfig) -> AppStateBuilder {
        AppStateBuilder {
            registry,
            config,
            builtin: BuiltinFallback::default(),
            contacts: None,
            fleet: None,
            decision_log: None,
            shadow: None,
        }
    }
}

impl AppState {
    /// The listeners' own figures now.
    pub fn listener_stats(&self) -> ListenerStats {
        ListenerStats {
            inflight: self.admission.inflight(),
            bodies_reading: self.admission.bodies_reading(),
            slow_body_bytes: self.slow_bodies.held(),
            max_inflight: self.admission.max(),
            open_connections: self.connections.load(Relaxed),
            evicted_connections: self.evicted_connections.load(Relaxed),
        }
    }
}

/// The listeners' figures: admission and connections, as `/metrics` and the status page show
/// them.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ListenerStats {
    /// Decide requests in flight.
    pub inflight: usize,
    /// Decide bodies still arriving (not in flight until read).
    pub bodies_reading: usize,
    /// Bytes public bodies still arriving after their first read hold (see
    /// [`body::SlowBodies`]).
    pub slow_body_bytes: usize,
    /// The admission bound.
    pub max_inflight: usize,
    /// Open connections, both listeners.
    pub open_connections: usize,
    /// Connections closed to make room for a new one at the bound.
    pub evicted_connections: u64,
}

impl crate::metrics::prom::Collect for ListenerStats {
    fn collect(&self, out: &mut crate::metrics::prom::Exposition) {
        use crate::metrics::prom::Kind;
        for (name, help, v) in [
            (
                "nextbest_inflight_decisions",
                "Decide requests in flight.",
                self.inflight,
            ),
            (
                "nextbest_decide_bodies_reading",
                "Decide requests whose body is still arriving; they count in flight once read.",
                self.bodies_reading,
            ),
            (
                "nextbest_slow_body_bytes",
                "Bytes received and held by public request bodies still arriving after their first read (at most 64 MiB or 16 bodies of --max-body-bytes, whichever is larger; beyond, 503).",
                self.slow_body_bytes,
            ),
            (
                "nextbest_max_inflight_decisions",
                "The admission bound.",
                self.max_inflight,
            ),
            (
                "nextbest_open_connections",
                "Open connections, both listeners.",
                self.open_connections,
            ),
        ] {
            out.family(name, Kind::Gauge, help).sample(&[], v);
        }
        out.family(
            "nextbest_connections_evicted_total",
            Kind::Counter,
            "Connections closed to make room for a new one at --max-connections, both listeners.",
        )
        .sample(&[], self.evicted_connections);
    }
}

/// What [`AppState`] is built from; what is not given takes its default.
pub struct AppStateBuilder {
    registry: Arc<Registry>,
    config: ServerConfig,
    builtin: BuiltinFallback,
    contacts: Option<Arc<Contacts>>,
    fleet: Option<Arc<crate::fleet::Fleet>>,
    decision_log: Option<Arc<crate::decision_log::DecisionLog>>,
    shadow: Option<Arc<shadow::Shadow>>,
}

impl AppStateBuilder {
    /// The last stage of the fallback chain (`--fallback-file`).
    pub fn builtin(mut self, builtin: BuiltinFallback) -> Self {
        self.builtin = builtin;
        self
    }

    /// The contact side, opened by [`open_contacts`] (so it follows the registry's models).
    pub fn contacts(mut self, contacts: Arc<Contacts>) -> Self {
        self.contacts = Some(contacts);
        self
    }

    /// Shares events with the fleet.
    pub fn fleet(mut self, fleet: Arc<crate::fleet::Fleet>) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Logs a sample of the decisions.
    pub fn decision_log(mut self, log: Arc<crate::decision_log::DecisionLog>) -> Self {
        self.decision_log = Some(log);
        self
    }

    /// The shadow slot, kept in the data folder ([`shadow::Shadow::open`]); without it, one
    /// in memory only.
    pub fn shadow(mut self, shadow: Arc<shadow::Shadow>) -> Self {
        self.shadow = Some(shadow);
        self
    }

    /// The state; without a contact side given, an in-memory one following the registry.
    pub fn build(self) -> AppState {
        let contacts = self.contacts.unwrap_or_else(|| {
            let config = ContactConfig::default();
            let opened = open_contacts(&self.registry, &config, Clock::system());
            // Without a data folder nothing is opened, so nothing can fail.
            Arc::new(opened.unwrap_or_else(|_| Contacts::in_memory(&config, Clock::system())))
        });
        // The shadow joins conversions to its decisions, from every source of events.
        let shadow = self.shadow.unwrap_or_default();
        contacts.subscribe(shadow.clone());
        // The candidate follows the snapshots the champion is compiled for.
        let (follows, base) = (shadow.clone(), self.registry.models_folder());
        let limits = self.registry.config().limits.clone();
        self.registry.on_publish(move |set, store| {
            follows.promoted(set);
            follows.follow(store, base.clone(), &limits);
        });
        AppState {
            registry: self.registry,
            metrics: Metrics::default(),
            admission: Admission::new(self.config.max_inflight),
            slow_bodies: body::SlowBodies::new(self.config.max_body_bytes),
            config: self.config,
            builtin: self.builtin,
            draining: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            evicted_connections: AtomicU64::new(0),
            contacts,
            fleet: self.fleet,
            decision_log: self.decision_log,
            typos: typos::Typos::default(),
            bound: std::sync::OnceLock::new(),
            shadow,
        }
    }
}

/// Opens the contact side for a registry: it follows every model the registry publishes
/// (history horizon, funnel tables, the experiment), bound before the log replays so replayed
/// outcomes count. The one place registry and contact side are wired.
pub fn open_contacts(
    registry: &Registry,
    config: &ContactConfig,
    clock: Clock,
) -> Result<Contacts, crate::contact::ContactError> {
    open_contacts_with(registry, config, clock, None)
}

/// [`open_contacts`] with the shadow subscribed before the log replays, so conversions its
/// restored figures missed (a crash before their last save) are joined again.
pub fn open_contacts_with(
    registry: &Registry,
    config: &ContactConfig,
    clock: Clock,
    shadow: Option<&Arc<shadow::Shadow>>,
) -> Result<Contacts, crate::contact::ContactError> {
    Contacts::open_with(config, clock, |c| {
        let binding = c.binding();
        registry.on_publish(move |set, store| bind_set(&binding, set, store));
        if let Some(s) = shadow {
            c.subscribe(s.clone());
            s.learn_through(c.binding());
        }
    })
}

/// Readies the contact side for a model set: each model's history horizon and funnel table,
/// what its contextual adaptive offers learn (reading the snapshot it was compiled against), and
/// the experiment that attributes outcomes naming no decision.
fn bind_set(
    binding: &Binding,
    set: &crate::registry::ModelSet,
    store: &Arc<crate::features::FeatureStore>,
) {
    let mut learning = Vec::with_capacity(2);
    for (model, _, key) in set.models() {
        binding.bind_model(&model.compiled, key);
        learning.push((&model.compiled, key));
    }
    binding.bind_learning(&learning, store);
    let challenger = set.challenger.as_ref().map(|c| {
        let experiment = crate::experiment::Challenger {
            model: c.model.clone(),
            share: c.share,
            salt: c.salt.clone(),
        };
        (set.key(crate::experiment::Variant::Challenger), experiment)
    });
    binding.activate(set.key(crate::experiment::Variant::Champion), challenger);
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

/// Both listeners' addresses, bound and not yet listening: a port another process holds is
/// refused at start, before a snapshot loads, and until the server serves a client meets a
/// refused connection, not one queued behind the load.
pub struct Reserved {
    public: (TcpSocket, SocketAddr),
    admin: (TcpSocket, SocketAddr),
}

impl Reserved {
    /// The public listener's address as bound (a port 0 made real), for what names this server.
    pub fn public(&self) -> SocketAddr {
        self.public.1
    }
}

/// Takes both listeners' addresses (needs no runtime).
pub fn reserve(config: &ServerConfig) -> Result<Reserved, BindError> {
    Ok(Reserved {
        public: take(Listener::Public, config.listen)?,
        admin: take(Listener::Admin, config.admin_listen)?,
    })
}

/// Binds both listeners and starts serving.
pub async fn start(state: Arc<AppState>) -> Result<RunningServer, BindError> {
    let reserved = reserve(&state.config)?;
    start_reserved(state, reserved)
}

/// Starts serving on addresses taken earlier (within a runtime).
pub fn start_reserved(
    state: Arc<AppState>,
    reserved: Reserved,
) -> Result<RunningServer, BindError> {
    conns::fit_file_limit(state.config.max_connections);
    let listen = |listener, (socket, addr): (TcpSocket, SocketAddr)| {
        socket.listen(BACKLOG).map_err(|source| BindError {
            listener,
            addr,
            source,
        })
    };
    let (public_addr, admin_addr) = (reserved.public.1, reserved.admin.1);
    let public = listen(Listener::Public, reserved.public)?;
    let admin = listen(Listener::Admin, reserved.admin)?;
    let _ = state.bound.set((public_addr, admin_addr));
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

/// Connections the kernel completes before one is accepted (tokio's own for `bind`).
const BACKLOG: u32 = 1024;

/// Binds one listener's address, as tokio's `TcpListener::bind` does, without listening yet.
fn take(listener: Listener, addr: SocketAddr) -> Result<(TcpSocket, SocketAddr), BindError> {
    let fail = |source| BindError {
        listener,
        addr,
        source,
    };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    let bound = socket.local_addr().map_err(fail)?;
    Ok((socket, bound))
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
    // Failures since the last accepted connection: an outage is logged once, not 50 times a
    // second, and its end says how many it refused.
    let mut failing = 0u64;
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    if failing > 0 {
                        tracing::info!(failures = failing, "accepting connections again");
                        failing = 0;
                    }
                    stream
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    if failing == 0 {
                        tracing::warn!(error = %e, "accept failed; logged once until a connection is accepted again");
                    }
                    failing += 1;
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
            let stream = head_errors::JsonHeadErrors::new(stream);
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
