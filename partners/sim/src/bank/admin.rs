//! The read-only admin endpoint: `GET /ledger` answers the books as JSON
//! ([`LedgerDump`]: per account held, posted, points; per transaction, by
//! RRN, what it applied). Plain HTTP/1.1 on a loopback address only (the
//! config refuses others), one request per connection, nothing to change.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::ledger::LedgerDump;
use super::server::{Shared, lock};

/// The longest request head read: a `GET` line and a few headers.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until `shutdown` turns true.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &shared)).await;
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0_u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await?;
        if read == 0 || head.len() + read > MAX_REQUEST_BYTES {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = head.split(|&byte| byte == b'\r').next().unwrap_or_default();
    let (status, body) = match line {
        b"GET /ledger HTTP/1.1" | b"GET /ledger HTTP/1.0" => {
            let dump: LedgerDump = lock(&shared.ledger).dump();
            match serde_json::to_string_pretty(&dump) {
                Ok(json) => ("200 OK", json),
                Err(error) => (
                    "500 Internal Server Error",
                    format!("{{\"error\":\"{error}\"}}"),
                ),
            }
        }
        _ if line.starts_with(b"GET ") => (
            "404 Not Found",
            "{\"error\":\"only GET /ledger\"}".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "{\"error\":\"read-only: GET /ledger\"}".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
