//! The baseline for the load benchmark: a bare hyper 1.x server that reads each request body
//! and answers a fixed JSON body, with nextbest's connection settings and nothing else.
//!
//! `cargo run --release --example bare_server -- --body-bytes 700`
//! Same runtime (tokio multi-thread, `--workers`), same allocator (jemalloc), same per-connection
//! setup as `server::accept_loop` (TCP_NODELAY, HTTP/1.1 keep-alive, header-read timeout, 16 KiB
//! buffer) and the same response headers (`content-type`, `server-timing`), so
//! `examples/loadbench.rs` can read the difference as the price of the decision itself. It
//! prints `listening on ADDR` on stdout once bound.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A bare hyper server answering a fixed JSON body.
#[derive(Parser)]
struct Args {
    /// Address to bind (port 0: any free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Size of the JSON answer in bytes (match a typical nextbest answer).
    #[arg(long, default_value_t = 400)]
    body_bytes: usize,
    /// Runtime worker threads (0: one per core), as nextbest's `--workers`.
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

/// A JSON object of exactly `n` bytes (at least the 10 of `{"pad":""}`).
fn body_of(n: usize) -> Bytes {
    let pad = n.saturating_sub(10);
    Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(pad)))
}

async fn answer(req: Request<hyper::body::Incoming>, body: Bytes) -> Response<Full<Bytes>> {
    // Read the request body as nextbest does (bounded), so both servers do the same I/O.
    let _ = Limited::new(req.into_body(), 64 * 1024).collect().await;
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(
        "server-timing",
        HeaderValue::from_static("decide;dur=0.012"),
    );
    resp
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let body = body_of(args.body_bytes);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.workers > 0 {
        rt.worker_threads(args.workers);
    }
    rt.enable_all().build()?.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(answer(req, body).await) }
                });
                let mut builder = http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .max_buf_size(16 * 1024)
                    .keep_alive(true);
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}
