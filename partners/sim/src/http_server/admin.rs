//! The read-only admin endpoint of a partner simulator: `GET /ledger` on a
//! loopback address answers the simulator's books as JSON (per account or
//! bill its balance or status, per transaction id what it applied), so an
//! outside tester can reconcile against it without probing the partner API.
//! Plain HTTP/1.1, one request per connection, nothing that changes state.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::server::{PartnerService, Shared};

/// Longest request head read: a `GET /ledger` needs a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// A client must send its request head within this time.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections answered at once; more are closed at once. A tester's script
/// needs one; a few more allow a dashboard beside it.
const MAX_CONNECTIONS: usize = 4;

/// Checks that `listen` is an IP address and port on the loopback interface:
/// the books are for the machine's own testers, never the network.
pub fn check_loopback(listen: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("admin_listen is an IP:port, got {listen:?}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "admin_listen must be a loopback address (127.0.0.1 or [::1]), got {listen:?}"
        ));
    }
    Ok(addr)
}

/// Serves `GET /ledger` until `shutdown` turns true.
pub(crate) async fn serve<S: PartnerService>(
    listener: TcpListener,
    shared: Arc<Shared<S>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else { continue };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(error) = answer(stream, &shared.service).await {
                        tracing::debug!(%error, "{}: admin request failed", S::NAME);
                    }
                    drop(slot);
                });
            }
        }
    }
}

async fn answer<S: PartnerService>(mut stream: TcpStream, service: &S) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = async {
        let mut buffer = [0_u8; 512];
        while head.len() < MAX_REQUEST_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let count = stream.read(&mut buffer).await?;
            if count == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..count]);
        }
        Ok::<_, io::Error>(())
    };
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "admin request head"))??;
    let request_line = head.split(|byte| *byte == b'\n').next().unwrap_or_default();
    let (status, body) = if request_line.starts_with(b"GET /ledger ") {
        let body = serde_json::to_vec_pretty(&service.ledger_json())
            .map_err(|error| io::Error::other(error.to_string()))?;
        ("200 OK", body)
    } else if request_line.starts_with(b"GET ") {
        (
            "404 Not Found",
            br#"{"error":"the admin endpoint serves GET /ledger only"}"#.to_vec(),
        )
    } else {
        (
            "405 Method Not Allowed",
            br#"{"error":"the admin endpoint is read-only: GET /ledger"}"#.to_vec(),
        )
    };
    let header = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}
