//! The requests waiting for an answer on the current connection, keyed by
//! what their answer will carry, and a short memory of finished ones so a
//! late or duplicate answer is logged for what it is.

use std::collections::{HashMap, VecDeque};

use tokio::sync::{mpsc, oneshot};

use super::LinkError;
use crate::bank::protocol::{is_network, response_mti};
use crate::iso8583::{Message, Mti};

/// How many finished requests are remembered: a late answer comes at most a
/// few timeouts later, and this covers several timeouts of a full link.
const RECENT_CAPACITY: usize = 4096;

/// What an answer must carry to match a request: the response MTI, the STAN
/// and (except for 08xx) the RRN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct MatchKey {
    pub mti: Mti,
    pub stan: String,
    pub rrn: Option<String>,
}

impl MatchKey {
    /// The key of the answer `request` expects.
    pub(super) fn for_request(request: &Message) -> Result<Self, LinkError> {
        let missing = |field: u8| LinkError::Codec(format!("request has no field {field}"));
        let stan = request.get_str(11).ok_or_else(|| missing(11))?.to_owned();
        let rrn = if is_network(request.mti()) {
            None
        } else {
            Some(request.get_str(37).ok_or_else(|| missing(37))?.to_owned())
        };
        Ok(Self {
            mti: response_mti(request.mti()),
            stan,
            rrn,
        })
    }

    /// The key an answer carries; `None` without a STAN (or RRN outside 08xx).
    pub(super) fn for_response(response: &Message) -> Option<Self> {
        let stan = response.get_str(11)?.to_owned();
        let rrn = if is_network(response.mti()) {
            None
        } else {
            Some(response.get_str(37)?.to_owned())
        };
        Some(Self {
            mti: response.mti(),
            stan,
            rrn,
        })
    }
}

/// How a finished request ended, to name a second answer in the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finished {
    Answered,
    TimedOut,
    Lost,
}

struct Waiter {
    reply: oneshot::Sender<Result<Message, LinkError>>,
    /// The link's own 0800s, which `max_in_flight` does not count.
    control: bool,
}

struct Connection {
    id: u64,
    writer: mpsc::Sender<Vec<u8>>,
    signed_on: bool,
}

pub(super) struct InFlight {
    max_requests: usize,
    connection: Option<Connection>,
    waiters: HashMap<MatchKey, Waiter>,
    /// Waiters that are not control messages.
    requests: usize,
    recent: VecDeque<(MatchKey, Finished)>,
}

impl InFlight {
    pub(super) fn new(max_requests: usize) -> Self {
        Self {
            max_requests,
            connection: None,
            waiters: HashMap::new(),
            requests: 0,
            recent: VecDeque::with_capacity(RECENT_CAPACITY),
        }
    }

    /// Registers a waiter and returns the writer to send its frame through.
    pub(super) fn reserve(
        &mut self,
        key: MatchKey,
        reply: oneshot::Sender<Result<Message, LinkError>>,
        control: bool,
    ) -> Result<mpsc::Sender<Vec<u8>>, LinkError> {
        let writer = match &self.connection {
            Some(connection) if control || connection.signed_on => connection.writer.clone(),
            _ => return Err(LinkError::NotConnected),
        };
        if !control && self.requests >= self.max_requests {
            return Err(LinkError::Busy);
        }
        if self.waiters.contains_key(&key) {
            return Err(LinkError::Codec(format!(
                "a request answered by {} with STAN {} and RRN {} is already in flight",
                key.mti.as_str(),
                key.stan,
                key.rrn.as_deref().unwrap_or("-")
            )));
        }
        if !control {
            self.requests += 1;
        }
        self.waiters.insert(key, Waiter { reply, control });
        Ok(writer)
    }

    fn take(&mut self, key: &MatchKey) -> Option<Waiter> {
        let waiter = self.waiters.remove(key)?;
        if !waiter.control {
            self.requests -= 1;
        }
        Some(waiter)
    }

    fn remember(&mut self, key: MatchKey, finished: Finished) {
        if self.recent.len() == RECENT_CAPACITY {
            self.recent.pop_front();
        }
        self.recent.push_back((key, finished));
    }

    /// Forgets a waiter whose frame never left (the writer was gone).
    pub(super) fn cancel(&mut self, key: &MatchKey) {
        self.take(key);
    }

    /// Removes a waiter whose time ran out. False if it was already answered.
    pub(super) fn expire(&mut self, key: &MatchKey) -> bool {
        let expired = self.take(key).is_some();
        if expired {
            self.remember(key.clone(), Finished::TimedOut);
        }
        expired
    }

    pub(super) fn is_waiting(&self, key: &MatchKey) -> bool {
        self.waiters.contains_key(key)
    }

    /// Hands `result` to the waiter for `key`. If none waits, returns how a
    /// request with that key finished lately, if one did.
    pub(super) fn complete(
        &mut self,
        key: &MatchKey,
        result: Result<Message, LinkError>,
    ) -> Result<(), Option<Finished>> {
        match self.take(key) {
            Some(waiter) => {
                self.remember(key.clone(), Finished::Answered);
                // The sender may have given up this instant; it then reads
                // nothing, which is the same as a timeout.
                let _ = waiter.reply.send(result);
                Ok(())
            }
            None => Err(self.finished(key)),
        }
    }

    /// How the latest request with `key` finished, if it is remembered.
    pub(super) fn finished(&self, key: &MatchKey) -> Option<Finished> {
        self.recent
            .iter()
            .rev()
            .find(|(recent, _)| recent == key)
            .map(|(_, finished)| *finished)
    }

    pub(super) fn connect(&mut self, id: u64, writer: mpsc::Sender<Vec<u8>>) {
        self.connection = Some(Connection {
            id,
            writer,
            signed_on: false,
        });
    }

    pub(super) fn set_signed_on(&mut self, id: u64) {
        if let Some(connection) = self.connection.as_mut().filter(|c| c.id == id) {
            connection.signed_on = true;
        }
    }

    /// The writer of connection `id`, if it is still the current one.
    pub(super) fn writer(&self, id: u64) -> Option<mpsc::Sender<Vec<u8>>> {
        self.connection
            .as_ref()
            .filter(|connection| connection.id == id)
            .map(|connection| connection.writer.clone())
    }

    /// Forgets connection `id` and fails everything waiting on it with
    /// `ConnectionLost`. Returns how many waiters failed; 0 if `id` is not
    /// the current connection (it was torn down already).
    pub(super) fn disconnect(&mut self, id: u64) -> usize {
        if self.connection.as_ref().is_none_or(|c| c.id != id) {
            return 0;
        }
        self.connection = None;
        self.requests = 0;
        let waiters: Vec<(MatchKey, Waiter)> = self.waiters.drain().collect();
        let failed = waiters.len();
        for (key, waiter) in waiters {
            let _ = waiter.reply.send(Err(LinkError::ConnectionLost));
            self.remember(key, Finished::Lost);
        }
        failed
    }

    /// Requests (not control messages) waiting.
    pub(super) fn requests(&self) -> usize {
        self.requests
    }
}
