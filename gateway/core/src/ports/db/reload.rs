//! Wallet card links (`LinkCard`) and the durable state of card-funded
//! top-ups and auto-reloads (migration 0010).
//!
//! A saga row names the step about to run and the ids its transactions will
//! carry, and is written BEFORE that step's external call; each step's own
//! transaction (a card SALE, a wallet `TOP_UP`, the wallet PAYMENT) is then
//! recorded like any other. After a crash the recovery worker
//! (`wallet::saga::recover`) reads the saga and the states of its
//! transactions and either finishes it or compensates every earlier step.

use chrono::{DateTime, Utc};

use super::StoreError;

use crate::model::{IdempotencyKey, RequestFingerprint};

use crate::model::link::CardLink;

/// What a saga is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaKind {
    /// Pay found the balance short: card SALE, wallet `TOP_UP`, then PAYMENT.
    AutoReload,
    /// A top-up paid by a card at the counter: card SALE, then `TOP_UP`.
    CardTopUp,
}

impl SagaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AutoReload => "auto_reload",
            Self::CardTopUp => "card_top_up",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "auto_reload" => Ok(Self::AutoReload),
            "card_top_up" => Ok(Self::CardTopUp),
            other => Err(StoreError::Corrupt(format!("unknown saga kind {other:?}"))),
        }
    }
}

/// The step a saga is in: the one whose external call may be under way.
/// Steps only move forward; `Done` and `Compensated` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SagaStep {
    Card,
    TopUp,
    Pay,
    Done,
    Compensated,
}

impl SagaStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Card => "card",
            Self::TopUp => "top_up",
            Self::Pay => "pay",
            Self::Done => "done",
            Self::Compensated => "compensated",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "card" => Ok(Self::Card),
            "top_up" => Ok(Self::TopUp),
            "pay" => Ok(Self::Pay),
            "done" => Ok(Self::Done),
            "compensated" => Ok(Self::Compensated),
            other => Err(StoreError::Corrupt(format!("unknown saga step {other:?}"))),
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Compensated)
    }
}

/// One saga: the parent wallet transaction and the ids of its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saga {
    /// The parent wallet transaction (the PAYMENT, or the card-funded `TOP_UP`).
    pub saga_id: String,
    pub kind: SagaKind,
    pub step: SagaStep,
    pub link_id: Option<String>,
    pub card_transaction_id: String,
    /// The auto-reload `TOP_UP` (auto-reload only).
    pub top_up_transaction_id: Option<String>,
    pub reload_minor: i64,
    pub currency: String,
    /// The decline reason the parent got when a step failed.
    pub failure: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An answered idempotency key written with a link change.
#[derive(Debug, Clone)]
pub struct AnsweredKey {
    pub key: IdempotencyKey,
    pub fingerprint: RequestFingerprint,
    pub response: Vec<u8>,
    pub at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What a link write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkWrite {
    Written,
    /// The key was already used: nothing written; read its answer.
    KeyTaken,
    /// The wallet already has an active link (`LinkCard`), or the link is no
    /// longer active (`UnlinkCard`): nothing written.
    Conflict,
}

/// Links and sagas, the same SQL on both backends (`define_reload_store!`).
#[async_trait::async_trait]
pub trait ReloadStore: Send + Sync {
    /// Stores a new link and its answered key in one transaction.
    async fn insert_link(
        &self,
        link: &CardLink,
        answer: &AnsweredKey,
    ) -> Result<LinkWrite, StoreError>;
    /// Marks an active link unlinked, with its answered key.
    async fn unlink(
        &self,
        link_id: &str,
        reason: &str,
        answer: &AnsweredKey,
    ) -> Result<LinkWrite, StoreError>;
    /// The wallet's active link.
    async fn active_link(
        &self,
        wallet_operator_id: &str,
        wallet_ref: &str,
    ) -> Result<Option<CardLink>, StoreError>;
    async fn card_link(&self, link_id: &str) -> Result<Option<CardLink>, StoreError>;
    /// Inserts a saga or moves it to `saga.step` (durable on return).
    async fn put_saga(&self, saga: &Saga) -> Result<(), StoreError>;
    async fn saga(&self, saga_id: &str) -> Result<Option<Saga>, StoreError>;
    /// The saga a step transaction (card SALE or auto-reload `TOP_UP`) belongs to.
    async fn saga_of_step(&self, transaction_id: &str) -> Result<Option<Saga>, StoreError>;
    /// Sagas not final and unchanged since before `before`, oldest first.
    async fn open_sagas(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<Saga>, StoreError>;
    /// Claims up to `limit` of [`Self::open_sagas`] that no other instance
    /// holds, leased to `lease.holder` until `lease.until`, for recovery.
    async fn claim_sagas(
        &self,
        before: DateTime<Utc>,
        lease: &super::Lease,
        limit: i64,
    ) -> Result<Vec<Saga>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::link::LinkStatus;

    /// A card link prints its masked PAN, never its enciphered card token.
    #[test]
    fn card_link_never_prints_its_token() {
        let now = Utc::now();
        let link = CardLink {
            link_id: "link-1".to_owned(),
            status: LinkStatus::Active,
            wallet_operator_id: "op".to_owned(),
            wallet_ref: "1234567890123456".to_owned(),
            account_id: "1234567890123456".to_owned(),
            display_id: "3456".to_owned(),
            masked_pan: "411111******1111".to_owned(),
            pan_fingerprint: "ab".repeat(32),
            card_brand: "VISA".to_owned(),
            card_link: "bank".to_owned(),
            token: posgate_hsm::Secret::new(vec![0xC0, 0xFF, 0xEE, 0x42]),
            token_key: "wallet-card-token".to_owned(),
            token_key_version: 1,
            auto_reload: true,
            step_minor: 1_000,
            currency: "TWD".to_owned(),
            store_id: "S001".to_owned(),
            terminal_id: "T01".to_owned(),
            operator_id: "clerk".to_owned(),
            client_request_id: "req-1".to_owned(),
            linked_at: now,
            unlinked_at: None,
            unlink_reason: None,
        };
        for text in [format!("{link:?}"), format!("{link:#?}")] {
            assert!(!text.contains("192, 255, 238, 66"), "{text}");
            assert!(!text.contains("[192,"), "{text}");
            assert!(text.contains("token: ***"), "{text}");
            assert!(text.contains("411111******1111"), "{text}");
        }
        assert_eq!(link.token.to_string(), "***");
    }
}
