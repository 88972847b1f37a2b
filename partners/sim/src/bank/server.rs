//! The TCP side: accept loop, one task per connection reading 2-byte
//! length-prefixed frames, one task per request (so many are in flight and
//! a late answer holds up no other), one writer task per connection.
//! Shutdown follows mini-redis: a watch channel every loop selects on.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use posgate_hsm::{Hsm, KeyRef, SoftwareHsm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::faults::{Fault, FaultPlan};
use super::ledger::{Answer, Effect, Ledger, RC_FORMAT_ERROR, RC_SYSTEM_MALFUNCTION};
use super::mac;
use super::stats::SimStats;
use super::transformers;
use posgate_partners::iso8583::{Message, Mti, ascii_1987};

/// HSM label of the simulator's MAC key; key change adds versions to it.
pub const MAC_KEY_LABEL: &str = "bank-sim.mac";
/// HSM label of the simulator's zone master key.
pub const ZMK_LABEL: &str = "bank-sim.zmk";

/// Connections served at once: a gateway opens one per link, a load run a
/// few; 256 leaves room while bounding file descriptors.
const MAX_CONNECTIONS: usize = 256;
/// Requests in flight per connection: four times the link's default
/// `max_in_flight` (256), so the link's limit is the one that bites.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 1024;
/// Answers queued for the writer of one connection (one per request in flight, and duplicates).
const MAX_QUEUED_ANSWERS: usize = 2 * MAX_IN_FLIGHT_PER_CONNECTION;
/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// State every connection shares.
pub(crate) struct Shared {
    pub hsm: SoftwareHsm,
    pub ledger: Mutex<Ledger>,
    pub faults: Mutex<FaultPlan>,
    pub stats: Mutex<SimStats>,
    /// Serialises key changes so each rotation is wrapped and answered whole.
    pub key_change: tokio::sync::Mutex<()>,
}

/// Locks a std mutex; a panic while holding one is a bug, and the data is
/// still consistent (every update is a few field writes), so carry on.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What to do with one request, after it was applied.
enum Reply {
    Nothing,
    /// Send these frames (all of them: a duplicate is two), after `delay`.
    Send {
        frames: Vec<Vec<u8>>,
        mti: Mti,
        delay: Duration,
    },
    /// Close the connection after `delay`, answering nothing.
    Close {
        delay: Duration,
    },
}

enum Outgoing {
    Frame(Vec<u8>),
    Close,
}

/// Accepts connections until `shutdown` fires, then waits for them to end.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracing::debug!(%peer, "bank sim: connection accepted");
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    connection(stream, shared, shutdown).await;
                    drop(permit);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "bank sim: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    connections.join_all().await;
}

/// Serves one connection until the peer closes it, a fault drops it, or shutdown.
async fn connection(stream: TcpStream, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let (out, out_rx) = mpsc::channel(MAX_QUEUED_ANSWERS);
    let (closed_tx, mut closed) = watch::channel(false);
    let writer_task = tokio::spawn(write_loop(writer, out_rx, closed_tx));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    let mut requests = JoinSet::new();
    let peer_closed = loop {
        while requests.try_join_next().is_some() {}
        let frame = tokio::select! {
            frame = read_frame(&mut reader) => frame,
            _ = shutdown.changed() => break false,
            _ = closed.changed() => break false,
        };
        let Ok(Some(frame)) = frame else {
            break true;
        };
        let permit = tokio::select! {
            permit = in_flight.clone().acquire_owned() => permit.expect("never closed"),
            _ = shutdown.changed() => break false,
        };
        let shared = shared.clone();
        let out = out.clone();
        requests.spawn(async move {
            let reply = handle(&shared, &frame).await;
            deliver(reply, &out, &shared).await;
            drop(permit);
        });
    };
    if peer_closed {
        // Answers already being prepared still go out (a half-closed peer reads them).
        tokio::select! {
            () = async { while requests.join_next().await.is_some() {} } => {}
            _ = shutdown.changed() => {}
            _ = closed.changed() => {}
        }
    }
    requests.shutdown().await;
    drop(out);
    let _ = writer_task.await;
}

async fn read_frame(reader: &mut OwnedReadHalf) -> std::io::Result<Option<Vec<u8>>> {
    let mut length = [0_u8; 2];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    // The 2-byte prefix bounds a frame at 65,535 bytes.
    let mut frame = vec![0_u8; usize::from(u16::from_be_bytes(length))];
    reader.read_exact(&mut frame).await?;
    Ok(Some(frame))
}

async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut out: mpsc::Receiver<Outgoing>,
    closed: watch::Sender<bool>,
) {
    while let Some(outgoing) = out.recv().await {
        let Outgoing::Frame(frame) = outgoing else {
            break;
        };
        let length = u16::try_from(frame.len()).expect("packed messages are checked against u16");
        let mut wire = Vec::with_capacity(frame.len() + 2);
        wire.extend_from_slice(&length.to_be_bytes());
        wire.extend_from_slice(&frame);
        if writer.write_all(&wire).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
    let _ = closed.send(true);
}

async fn deliver(reply: Reply, out: &mpsc::Sender<Outgoing>, shared: &Shared) {
    match reply {
        Reply::Nothing => {}
        Reply::Close { delay } => {
            tokio::time::sleep(delay).await;
            let _ = out.send(Outgoing::Close).await;
        }
        Reply::Send { frames, mti, delay } => {
            tokio::time::sleep(delay).await;
            for frame in frames {
                if out.send(Outgoing::Frame(frame)).await.is_err() {
                    return;
                }
                lock(&shared.stats).count_response(mti.as_str());
            }
        }
    }
}

/// Unpacks, checks the MAC, applies and decides how to answer one frame.
async fn handle(shared: &Shared, frame: &[u8]) -> Reply {
    let Ok(request) = ascii_1987().unpack(frame) else {
        return unparsable(shared, frame).await;
    };
    let mti = request.mti();
    lock(&shared.stats).count_request(mti.as_str());
    if mti.is_response() {
        tracing::debug!(mti = mti.as_str(), "bank sim: ignoring a response message");
        return Reply::Nothing;
    }
    if mti.as_str().starts_with("08") {
        let response = super::network::answer(shared, &request).await;
        return match ascii_1987().pack(&response) {
            Ok(packed) => send(vec![packed], response.mti(), Duration::ZERO),
            Err(error) => {
                tracing::error!(%error, "bank sim: cannot pack a network response");
                Reply::Nothing
            }
        };
    }
    let Some(version) = verify_request_mac(shared, frame, &request).await else {
        lock(&shared.stats).mac_failures += 1;
        tracing::info!(mti = mti.as_str(), "bank sim: MAC failure, answering 96");
        let response = transformers::response(&request, &code_answer(RC_SYSTEM_MALFUNCTION));
        return packed_reply(shared, response, KeyRef::latest(MAC_KEY_LABEL), Fault::None).await;
    };
    let (fault, latency, decline_all) = {
        let mut plan = lock(&shared.faults);
        let config = plan.config().clone();
        (plan.draw(), config.latency, config.decline_all)
    };
    let answer = match decline_all {
        Some(code) => {
            lock(&shared.stats).count_fault("decline_all");
            code_answer(&code)
        }
        None => apply(shared, &request),
    };
    let response = transformers::response(&request, &answer);
    count_fault(shared, fault);
    let key = KeyRef::version(MAC_KEY_LABEL, version);
    match packed_reply(shared, response, key, fault).await {
        Reply::Send { frames, mti, delay } => Reply::Send {
            frames,
            mti,
            delay: delay + latency,
        },
        Reply::Close { delay } => Reply::Close {
            delay: delay + latency,
        },
        Reply::Nothing => Reply::Nothing,
    }
}

fn code_answer(code: &str) -> Answer {
    Answer {
        response_code: code.to_owned(),
        approval_code: None,
        loyalty: None,
    }
}

fn send(frames: Vec<Vec<u8>>, mti: Mti, delay: Duration) -> Reply {
    Reply::Send { frames, mti, delay }
}

fn count_fault(shared: &Shared, fault: Fault) {
    let name = match fault {
        Fault::None => return,
        Fault::NoResponse => "no_response",
        Fault::DropConnection => "drop_connection",
        Fault::Late(_) => "late_response",
        Fault::Duplicate => "duplicate_response",
        Fault::BadMac => "bad_mac",
    };
    lock(&shared.stats).count_fault(name);
}

/// Applies a MAC-valid financial request to the ledger.
fn apply(shared: &Shared, request: &Message) -> Answer {
    let today = chrono::Utc::now().date_naive();
    let parsed = match transformers::base_mti(request.mti()).as_str() {
        "0100" | "0200" => transformers::financial(request)
            .map(|parsed| lock(&shared.ledger).financial(&parsed, today)),
        "0220" => {
            transformers::capture(request).map(|parsed| lock(&shared.ledger).capture(&parsed))
        }
        "0400" => {
            transformers::reversal(request).map(|parsed| lock(&shared.ledger).reversal(&parsed))
        }
        _ => Err(transformers::FormatError {
            field: 0,
            reason: "message type not supported",
        }),
    };
    match parsed {
        Ok((answer, effect)) => {
            count_effect(shared, effect);
            answer
        }
        Err(error) => {
            lock(&shared.stats).format_errors += 1;
            tracing::info!(
                mti = request.mti().as_str(),
                field = error.field,
                reason = error.reason,
                "bank sim: format error, answering 30"
            );
            code_answer(RC_FORMAT_ERROR)
        }
    }
}

fn count_effect(shared: &Shared, effect: Effect) {
    let mut stats = lock(&shared.stats);
    match effect {
        Effect::Applied | Effect::Full => {}
        Effect::Replayed => stats.duplicates_replayed += 1,
        Effect::Conflict => stats.duplicates_refused += 1,
        Effect::DuplicateStan => stats.duplicate_stans_refused += 1,
        Effect::Reversed => stats.reversals_applied += 1,
        Effect::AlreadyReversed | Effect::NothingToUndo => stats.reversals_nothing_to_undo += 1,
        Effect::UnknownOriginal => stats.reversals_unknown_original += 1,
        Effect::Ambiguous => stats.references_ambiguous += 1,
    }
}

/// Checks a request's MAC under any kept version of the MAC key.
async fn verify_request_mac(shared: &Shared, frame: &[u8], request: &Message) -> Option<u32> {
    mac::verify_mac(ascii_1987(), frame, request, &shared.hsm, MAC_KEY_LABEL).await
}

/// Packs `response` with a MAC under `key` and shapes the reply by `fault`.
async fn packed_reply(shared: &Shared, mut response: Message, key: KeyRef, fault: Fault) -> Reply {
    let mti = response.mti();
    let Some(mut packed) = pack_with_mac(shared, &mut response, &key).await else {
        return Reply::Nothing;
    };
    match fault {
        Fault::None => send(vec![packed], mti, Duration::ZERO),
        Fault::NoResponse => Reply::Nothing,
        Fault::DropConnection => Reply::Close {
            delay: Duration::ZERO,
        },
        Fault::Late(by) => send(vec![packed], mti, by),
        Fault::Duplicate => send(vec![packed.clone(), packed], mti, Duration::ZERO),
        Fault::BadMac => {
            // The MAC travels as hex: swap its last digit for another hex digit.
            let last = packed.len() - 1;
            packed[last] = if packed[last] == b'0' { b'1' } else { b'0' };
            send(vec![packed], mti, Duration::ZERO)
        }
    }
}

/// Packs with a MAC under `key`; `None` (logged) if that fails or exceeds a frame.
async fn pack_with_mac(shared: &Shared, response: &mut Message, key: &KeyRef) -> Option<Vec<u8>> {
    match mac::pack_with_mac(ascii_1987(), response, &shared.hsm, key).await {
        Ok(packed) if u16::try_from(packed.len()).is_ok() => Some(packed),
        Ok(_) => {
            tracing::error!("bank sim: response longer than a frame");
            None
        }
        Err(error) => {
            tracing::error!(%error, "bank sim: cannot pack a response");
            None
        }
    }
}

/// A frame that does not unpack: if it still ends in a valid MAC under an
/// MTI, answer 96 (system malfunction); otherwise there is nothing to answer to.
async fn unparsable(shared: &Shared, frame: &[u8]) -> Reply {
    lock(&shared.stats).unparsable_frames += 1;
    let Some(mti_bytes) = frame
        .get(..4)
        .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
    else {
        return Reply::Nothing;
    };
    let mti = Mti::new(mti_bytes);
    let wire_len = ascii_1987()
        .field(64)
        .and_then(posgate_partners::iso8583::FieldSpec::wire_len)
        .unwrap_or(16);
    let input_len = frame.len().saturating_sub(wire_len);
    let mac = hex::decode(&frame[input_len..]).unwrap_or_default();
    let valid = mti_bytes.iter().all(u8::is_ascii_digit)
        && !mti.is_response()
        && input_len > 4
        && mac.len() == mac::MAC_BYTES
        && shared
            .hsm
            .mac_verify(
                &KeyRef::latest(MAC_KEY_LABEL),
                mac::MAC_ALGORITHM,
                &frame[..input_len],
                &mac,
            )
            .await
            .is_ok();
    if !valid {
        tracing::info!("bank sim: unparsable frame without a valid MAC, ignored");
        return Reply::Nothing;
    }
    let response = transformers::response(&Message::new(mti), &code_answer(RC_SYSTEM_MALFUNCTION));
    packed_reply(shared, response, KeyRef::latest(MAC_KEY_LABEL), Fault::None).await
}
