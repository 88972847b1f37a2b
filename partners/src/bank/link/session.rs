//! The connection task: connect, sign on, keep alive, change keys, read and
//! write frames, sign off; reconnect with backoff when the connection drops.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use posgate_hsm::KeyRef;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use super::backoff::Backoff;
use super::in_flight::{Finished, MatchKey};
use super::transport::{self, Io};
use super::{Inner, LinkError, lock};
use crate::bank::protocol::{
    MTI_NETWORK, MTI_NETWORK_RESPONSE, NetworkCode, NetworkRequest, NetworkResponse, ResponseCode,
    needs_mac, read_frame, verify_mac, write_frame,
};
use crate::iso8583::{Message, ascii_1987};

/// Writer queue slots beyond `max_in_flight`, for the link's own 0800s and
/// its answers to the bank's.
const CONTROL_FRAMES: usize = 16;
/// How often shutdown checks whether the requests in flight have drained.
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// The longest shutdown waits for the sign-off answer.
const SIGN_OFF_WAIT: Duration = Duration::from_secs(5);

/// Why a session ended.
enum Ended {
    Shutdown,
    Lost(String),
}

/// The connection task: runs sessions until shutdown.
pub(super) async fn run(inner: Arc<Inner>) {
    let name = inner.config.name.clone();
    let mut shutdown = inner.shutdown.subscribe();
    let mut backoff = Backoff::new(inner.config.backoff_min, inner.config.backoff_max);
    let mut connection_id = 0_u64;
    while !*shutdown.borrow() {
        connection_id += 1;
        let connected = tokio::select! {
            connected = transport::connect(&inner.config) => connected,
            _ = shutdown.changed() => break,
        };
        match connected {
            Ok(stream) => {
                tracing::info!(link = %name, addr = %inner.config.addr, "connected to the bank");
                let ended =
                    session(&inner, connection_id, stream, &mut shutdown, &mut backoff).await;
                inner.up.send_replace(false);
                let failed = lock(&inner.in_flight).disconnect(connection_id);
                match ended {
                    Ended::Shutdown => {
                        tracing::info!(link = %name, "bank link closed");
                        break;
                    }
                    Ended::Lost(reason) => tracing::warn!(
                        link = %name,
                        %reason,
                        requests_failed = failed,
                        "bank connection lost"
                    ),
                }
            }
            Err(error) => {
                let addr = &inner.config.addr;
                tracing::warn!(link = %name, %addr, %error, "cannot connect to the bank");
            }
        }
        let delay = backoff.next_delay();
        tracing::debug!(link = %name, delay_ms = delay.as_millis(), "reconnecting after a pause");
        tokio::select! {
            () = sleep(delay) => {}
            _ = shutdown.changed() => {}
        }
    }
    inner.up.send_replace(false);
}

/// The reader and writer of one connection, aborted together when dropped.
struct Tasks {
    read: JoinHandle<String>,
    write: JoinHandle<String>,
}

impl Tasks {
    /// Resolves when either side stops, with the reason.
    async fn closed(&mut self) -> Ended {
        let reason = tokio::select! {
            reason = &mut self.read => reason,
            reason = &mut self.write => reason,
        };
        Ended::Lost(reason.unwrap_or_else(|error| format!("connection task failed: {error}")))
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.read.abort();
        self.write.abort();
    }
}

async fn session(
    inner: &Arc<Inner>,
    id: u64,
    stream: Box<dyn Io>,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Ended {
    let (reader, writer) = tokio::io::split(stream);
    let (frames_tx, frames_rx) = mpsc::channel(inner.config.max_in_flight + CONTROL_FRAMES);
    lock(&inner.in_flight).connect(id, frames_tx);
    inner.touch();
    let mut tasks = Tasks {
        read: tokio::spawn(read_loop(Arc::clone(inner), id, reader)),
        write: tokio::spawn(write_loop(Arc::clone(inner), writer, frames_rx)),
    };
    tokio::select! {
        ended = tasks.closed() => ended,
        ended = signed_on(inner, id, shutdown, backoff) => ended,
    }
}

/// Signs on, then keeps the session alive until shutdown or a failed echo.
async fn signed_on(
    inner: &Inner,
    id: u64,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Ended {
    let name = &inner.config.name;
    match network_exchange(inner, NetworkCode::SignOn).await {
        Ok(response) if response.response_code.is_approved() => {}
        Ok(response) => {
            return Ended::Lost(format!(
                "sign-on refused with response code {}",
                response.response_code
            ));
        }
        Err(error) => return Ended::Lost(format!("sign-on failed: {error}")),
    }
    lock(&inner.in_flight).set_signed_on(id);
    backoff.reset();
    let key_change_interval = inner.config.key_change_interval;
    if key_change_interval.is_some() {
        // Before any request, so the first MACs already use the new key.
        change_key(inner).await;
    }
    if inner.is_shutting_down() {
        return close(inner).await;
    }
    inner.up.send_replace(true);
    tracing::info!(link = %name, "signed on to the bank");
    let mut next_key_change = key_change_interval.map(|interval| Instant::now() + interval);
    loop {
        let echo_at = *lock(&inner.last_activity) + inner.config.echo_interval;
        let key_change_at = next_key_change.unwrap_or(echo_at);
        tokio::select! {
            _ = shutdown.changed() => return close(inner).await,
            () = sleep_until(echo_at) => {
                let idle = lock(&inner.last_activity).elapsed() >= inner.config.echo_interval;
                if idle && let Err(reason) = echo(inner).await {
                    return Ended::Lost(reason);
                }
            }
            () = sleep_until(key_change_at), if next_key_change.is_some() => {
                change_key(inner).await;
                next_key_change = key_change_interval.map(|interval| Instant::now() + interval);
            }
        }
    }
}

/// An idle-line echo; an unanswered or refused echo ends the session.
async fn echo(inner: &Inner) -> Result<(), String> {
    match network_exchange(inner, NetworkCode::Echo).await {
        Ok(response) if response.response_code.is_approved() => {
            tracing::debug!(link = %inner.config.name, "echo answered");
            Ok(())
        }
        Ok(response) => Err(format!(
            "echo refused with response code {}",
            response.response_code
        )),
        Err(error) => Err(format!("echo failed: {error}")),
    }
}

/// Asks the bank for a new MAC key and installs it as the next version of
/// the MAC key label. A failure keeps the current key and is logged.
async fn change_key(inner: &Inner) {
    let name = &inner.config.name;
    match install_new_key(inner).await {
        Ok((version, kcv)) => {
            tracing::info!(link = %name, mac_key = %inner.config.mac_key, version, %kcv, "new MAC key installed");
        }
        Err(reason) => {
            tracing::warn!(link = %name, mac_key = %inner.config.mac_key, %reason, "key change failed; keeping the current MAC key");
        }
    }
}

async fn install_new_key(inner: &Inner) -> Result<(u32, String), String> {
    let response = network_exchange(inner, NetworkCode::KeyChange)
        .await
        .map_err(|error| error.to_string())?;
    if !response.response_code.is_approved() {
        return Err(format!(
            "refused with response code {}",
            response.response_code
        ));
    }
    let payload = response
        .key_change
        .ok_or_else(|| "the answer carries no key in field 48".to_owned())?;
    let zmk = KeyRef::latest(inner.config.zmk.as_str());
    let zmk_info = inner
        .hsm
        .key_info(&zmk)
        .await
        .map_err(|error| error.to_string())?;
    let info = inner
        .hsm
        .unwrap_key(
            &inner.config.mac_key,
            &payload.to_wrapped(zmk_info.kcv),
            &zmk,
        )
        .await
        .map_err(|error| error.to_string())?;
    Ok((info.version, info.kcv.to_string()))
}

/// Sends sign-off after the requests in flight have drained (bounded by one
/// request timeout).
async fn close(inner: &Inner) -> Ended {
    inner.up.send_replace(false);
    let deadline = Instant::now() + inner.config.request_timeout;
    while lock(&inner.in_flight).requests() > 0 && Instant::now() < deadline {
        sleep(DRAIN_POLL).await;
    }
    let wait = inner.config.request_timeout.min(SIGN_OFF_WAIT);
    match tokio::time::timeout(wait, network_exchange(inner, NetworkCode::SignOff)).await {
        Ok(Ok(_)) => tracing::info!(link = %inner.config.name, "signed off"),
        Ok(Err(error)) => {
            tracing::warn!(link = %inner.config.name, %error, "sign-off unanswered");
        }
        Err(_) => tracing::warn!(link = %inner.config.name, "sign-off unanswered in time"),
    }
    Ended::Shutdown
}

/// Sends one of the link's own 0800s and waits for its 0810.
async fn network_exchange(inner: &Inner, code: NetworkCode) -> Result<NetworkResponse, LinkError> {
    let codec = |error: &dyn std::fmt::Display| LinkError::Codec(error.to_string());
    let stan = inner.network_stan().await?;
    let request = NetworkRequest::new(code, &stan, Utc::now())
        .to_message()
        .map_err(|error| codec(&error))?;
    let frame = ascii_1987().pack(&request).map_err(|error| codec(&error))?;
    let key = MatchKey {
        mti: MTI_NETWORK_RESPONSE,
        stan,
        rrn: None,
    };
    tracing::debug!(link = %inner.config.name, code = code.as_str(), stan = %key.stan, "sending network management request");
    let response = inner.exchange(key, frame, true).await?;
    NetworkResponse::parse(&response).map_err(|error| codec(&error))
}

async fn write_loop(
    inner: Arc<Inner>,
    mut writer: WriteHalf<Box<dyn Io>>,
    mut frames: mpsc::Receiver<Vec<u8>>,
) -> String {
    while let Some(frame) = frames.recv().await {
        if let Err(error) = write_frame(&mut writer, &frame).await {
            return format!("write failed: {error}");
        }
        inner.touch();
    }
    "writer queue closed".to_owned()
}

async fn read_loop(inner: Arc<Inner>, id: u64, mut reader: ReadHalf<Box<dyn Io>>) -> String {
    loop {
        match read_frame(&mut reader).await {
            Ok(Some(frame)) => {
                inner.touch();
                on_frame(&inner, id, &frame).await;
            }
            Ok(None) => return "closed by the bank".to_owned(),
            Err(error) => return format!("read failed: {error}"),
        }
    }
}

/// Handles one frame from the bank: an answer to hand to its waiter, or a
/// network management request to answer.
async fn on_frame(inner: &Inner, id: u64, frame: &[u8]) {
    let name = &inner.config.name;
    let message = match ascii_1987().unpack(frame) {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(link = %name, %error, "unparsable frame from the bank dropped");
            return;
        }
    };
    if message.mti() == MTI_NETWORK {
        answer_network_request(inner, id, &message);
        return;
    }
    let Some(key) = MatchKey::for_response(&message).filter(|_| message.mti().is_response()) else {
        tracing::warn!(link = %name, mti = message.mti().as_str(), "unexpected message from the bank dropped");
        return;
    };
    if !lock(&inner.in_flight).is_waiting(&key) {
        let finished = lock(&inner.in_flight).finished(&key);
        log_unmatched(name, &key, finished);
        return;
    }
    let result = if needs_mac(message.mti()) {
        match verify_mac(
            ascii_1987(),
            frame,
            &message,
            inner.hsm.as_ref(),
            &inner.config.mac_key,
        )
        .await
        {
            Ok(_) => Ok(message),
            Err(error) => {
                tracing::warn!(
                    link = %name,
                    mti = key.mti.as_str(),
                    stan = %key.stan,
                    rrn = key.rrn.as_deref().unwrap_or(""),
                    reason = %error,
                    "response MAC did not verify; treated as no answer"
                );
                Err(LinkError::BadMac)
            }
        }
    } else {
        Ok(message)
    };
    let completed = lock(&inner.in_flight).complete(&key, result);
    if let Err(finished) = completed {
        log_unmatched(name, &key, finished);
    }
}

/// Answers a bank-initiated 0800 (echo, sign-on of the bank side) with "00".
fn answer_network_request(inner: &Inner, id: u64, request: &Message) {
    let name = &inner.config.name;
    tracing::debug!(link = %name, code = request.get_str(70).unwrap_or(""), "network management request from the bank");
    let answer = NetworkResponse::answer(request, ResponseCode::Approved, None);
    let frame = match ascii_1987().pack(&answer) {
        Ok(frame) => frame,
        Err(error) => {
            tracing::warn!(link = %name, %error, "cannot answer the bank's 0800");
            return;
        }
    };
    let writer = lock(&inner.in_flight).writer(id);
    if let Some(writer) = writer
        && writer.try_send(frame).is_err()
    {
        tracing::warn!(link = %name, "writer queue full; the bank's 0800 goes unanswered");
    }
}

fn log_unmatched(name: &str, key: &MatchKey, finished: Option<Finished>) {
    let what = match finished {
        Some(Finished::Answered) => "duplicate response dropped",
        Some(Finished::TimedOut) => "late response (after the timeout) dropped",
        Some(Finished::Lost) => "response after connection loss dropped",
        None => "response matching no request dropped",
    };
    tracing::warn!(
        link = %name,
        mti = key.mti.as_str(),
        stan = %key.stan,
        rrn = key.rrn.as_deref().unwrap_or(""),
        "{what}"
    );
}
