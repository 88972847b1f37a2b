//! Who caused an event in a transaction's history. Built as an [`Actor`] and
//! displayed once into the stored text (`Event::actor`, the audit chain's
//! `actor`); parsed once where the audit API reads the history back.

use std::fmt;

/// The cause of a history event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The authenticated caller of the request, by its SPIFFE id (a
    /// terminal, an auditor), or a caller recorded in an earlier text form.
    Caller(String),
    /// A terminal the event is recorded for after its call returned (an
    /// online biller's late answer to a notice the terminal started).
    Terminal {
        store_id: String,
        terminal_id: String,
    },
    /// The bank's answer moved the transaction.
    Bank,
    /// One of posgate's own workers.
    Worker(Worker),
}

/// posgate's workers that change transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worker {
    /// Store-and-forward: reversals, advices, notices sent until acknowledged.
    StoreAndForward,
    /// Authorization expiry.
    Expiry,
    /// The clearing run.
    Clearing,
    /// Reconciliation against a partner's acknowledgement file.
    Reconciliation,
}

impl Worker {
    const ALL: [Self; 4] = [
        Self::StoreAndForward,
        Self::Expiry,
        Self::Clearing,
        Self::Reconciliation,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StoreAndForward => "saf",
            Self::Expiry => "expiry",
            Self::Clearing => "clearing",
            Self::Reconciliation => "reconciliation",
        }
    }
}

impl Actor {
    /// Reads a stored actor. Every text is some actor: what is not the bank,
    /// a worker or a `terminal:<store>/<terminal>` is a caller.
    pub fn parse(text: &str) -> Self {
        if text == "bank" {
            return Self::Bank;
        }
        if let Some(worker) = Worker::ALL.into_iter().find(|w| w.as_str() == text) {
            return Self::Worker(worker);
        }
        if let Some((store_id, terminal_id)) = text
            .strip_prefix("terminal:")
            .and_then(|rest| rest.split_once('/'))
        {
            return Self::Terminal {
                store_id: store_id.to_owned(),
                terminal_id: terminal_id.to_owned(),
            };
        }
        Self::Caller(text.to_owned())
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Caller(id) => f.write_str(id),
            Self::Terminal {
                store_id,
                terminal_id,
            } => write!(f, "terminal:{store_id}/{terminal_id}"),
            Self::Bank => f.write_str("bank"),
            Self::Worker(worker) => f.write_str(worker.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_read_back_what_they_print() {
        for actor in [
            Actor::Caller("spiffe://posgate/store/S001/terminal/T01".into()),
            Actor::Terminal {
                store_id: "S001".into(),
                terminal_id: "T01".into(),
            },
            Actor::Bank,
            Actor::Worker(Worker::StoreAndForward),
            Actor::Worker(Worker::Expiry),
            Actor::Worker(Worker::Clearing),
            Actor::Worker(Worker::Reconciliation),
        ] {
            assert_eq!(Actor::parse(&actor.to_string()), actor);
        }
    }

    #[test]
    fn stored_texts_keep_their_form() {
        assert_eq!(Actor::Worker(Worker::StoreAndForward).to_string(), "saf");
        assert_eq!(Actor::Bank.to_string(), "bank");
        assert_eq!(
            Actor::parse("store/S1/terminal/T1"),
            Actor::Caller("store/S1/terminal/T1".into())
        );
    }
}
