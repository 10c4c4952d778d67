//! The HTTP side: a public listener for channels and an admin listener for operators.
//!
//! Each listener is a plain accept loop handing connections to hyper's HTTP/1.1 server with a
//! `service_fn`; handlers decode, load the snapshot once, call the engine, encode. Admin routes
//! live only on the admin listener, so a channel backend can never reach them.

pub mod admin;
pub mod codec;
pub mod error;
pub mod events;
pub mod public;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::contact::{Clock, ContactConfig, Contacts};
use crate::engine::Fallback;
use crate::metrics::Metrics;
use crate::registry::Registry;

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
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// Bearer token the admin listener requires, when set.
    pub admin_token: Option<AdminToken>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(5),
            admin_token: None,
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
    /// Content served when no model is loaded at all.
    pub builtin_fallback: Fallback,
    // contact (issue 5)
    /// Contact history, event log, funnel, and the clock handlers read "now" from.
    pub contacts: Arc<Contacts>,
}

impl AppState {
    /// State around a registry.
    pub fn new(registry: Arc<Registry>, config: ServerConfig) -> Self {
        AppState {
            registry,
            metrics: Metrics::default(),
            config,
            builtin_fallback: Fallback::builtin_empty(),
            contacts: Arc::new(Contacts::in_memory(
                &ContactConfig::default(),
                Clock::system(),
            )),
        }
    }

    /// The same state with the given contact side (a data folder, a test clock).
    pub fn with_contacts(mut self, contacts: Arc<Contacts>) -> Self {
        self.contacts = contacts;
        self
    }
}

/// A started server: its bound addresses and a way to stop it.
pub struct RunningServer {
    /// Where the public listener is bound.
    pub public_addr: SocketAddr,
    /// Where the admin listener is bound.
    pub admin_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting and waits for the accept loops to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Waits until the accept loops end (they end only on shutdown).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds both listeners and starts serving.
pub async fn start(state: Arc<AppState>) -> std::io::Result<RunningServer> {
    let public = TcpListener::bind(state.config.listen).await?;
    let admin = TcpListener::bind(state.config.admin_listen).await?;
    let (public_addr, admin_addr) = (public.local_addr()?, admin.local_addr()?);
    let (stop, stopped) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(accept_loop(
            public,
            state.clone(),
            Side::Public,
            stopped.clone(),
        )),
        tokio::spawn(accept_loop(admin, state, Side::Admin, stopped)),
    ];
    Ok(RunningServer {
        public_addr,
        admin_addr,
        stop,
        tasks,
    })
}

#[derive(Clone, Copy)]
enum Side {
    Public,
    Admin,
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<AppState>,
    side: Side,
    mut stop: watch::Receiver<bool>,
) {
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
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let header_timeout = state.config.header_timeout;
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move {
                    Ok::<_, Infallible>(match side {
                        Side::Public => public::handle(&state, req).await,
                        Side::Admin => admin::handle(&state, req).await,
                    })
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(16 * 1024)
                .keep_alive(true);
            let _ = builder.serve_connection(io, svc).await;
        });
    }
}
