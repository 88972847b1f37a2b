//! The card-payment machinery every card call shares: the bank links, BIN
//! routing, STAN allocation, the HSM operations on card data (keyed PAN
//! fingerprints, request digests, PIN translation), and the trace numbers
//! and settlement lines of a card record.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::ops::Range;

use chrono::{DateTime, NaiveDate, Utc};
use posgate_hsm::{Hsm, HsmError, KeyRef, Pan, PinBlockFormat, PinTranslation};
use posgate_partners::bank::link::BankLink;
use sha2::{Digest, Sha256};

use super::CardError;
use super::card::PinInput;
use super::config::{BankLinkConfig, CardConfig};
use super::stan_space;
use crate::model::Party;
use crate::model::card::{CardRecord, CardRouteKind};
use crate::model::transaction::SettlementLine;
use crate::ports::db::stan::StanStore;
use crate::ports::db::{Database, StoreError};

/// Where a card goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub kind: CardRouteKind,
    pub link: String,
    pub pin_required: bool,
}

/// The card-payment machinery the services share.
#[derive(Debug)]
pub struct Payments {
    pub config: CardConfig,
    pub hsm: Arc<dyn Hsm>,
    pub links: BTreeMap<String, BankLink>,
    /// STANs taken from the store and not handed out yet.
    stans: Arc<StanBlocks>,
}

/// STANs taken from the store and not handed out yet, per institution id
/// and UTC day: financial requests and the links' own 0800s draw on them.
#[derive(Debug, Default)]
struct StanBlocks(tokio::sync::Mutex<BTreeMap<(String, NaiveDate), Range<u32>>>);

impl StanBlocks {
    /// The next STAN of `acquirer_id` on the UTC day of `now`; a new block
    /// from `store` when the current one is used up.
    async fn next(
        &self,
        store: &dyn StanStore,
        acquirer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let space = (stan_space(acquirer_id), now.date_naive());
        let mut stans = self.0.lock().await;
        // Blocks of earlier days are never used again.
        stans.retain(|(_, day), _| *day >= space.1);
        let block = stans.entry(space.clone()).or_insert(0..0);
        if block.start >= block.end {
            *block = store.allocate_stans(&space.0, space.1, STAN_BLOCK).await?;
        }
        let stan = block.next().expect("a fresh block is not empty");
        Ok(format!("{stan:06}"))
    }
}

/// The STANs of a link's own 0800s, from the shared blocks: several gateway
/// instances on one database never send one STAN twice a day.
#[derive(Debug)]
struct LinkStans {
    blocks: Arc<StanBlocks>,
    store: Arc<dyn Database>,
    acquirer_id: String,
}

#[async_trait::async_trait]
impl posgate_partners::bank::link::StanSource for LinkStans {
    async fn next_stan(&self) -> Result<String, String> {
        self.blocks
            .next(self.store.as_ref(), &self.acquirer_id, Utc::now())
            .await
            .map_err(|error| error.to_string())
    }
}

/// STANs taken from the store at a time: one database round trip per this
/// many requests, and at most this many trace numbers skipped when the
/// process dies (a day has 999,999 per institution).
pub const STAN_BLOCK: u32 = 100;

impl Payments {
    /// Starts a link per configured bank link (they connect and sign on in
    /// the background). STANs come from `store`'s counters.
    pub fn start(config: CardConfig, hsm: Arc<dyn Hsm>, store: &Arc<dyn Database>) -> Self {
        let stans = Arc::new(StanBlocks::default());
        let links = config
            .links
            .iter()
            .map(|link| {
                let mut link_config = posgate_partners::bank::link::LinkConfig::new(
                    &link.id,
                    &link.addr,
                    &link.acquirer_id,
                    &link.mac_key,
                    &link.zmk,
                );
                link_config.request_timeout = link.request_timeout;
                link_config.max_in_flight = link.max_in_flight;
                link_config.echo_interval = link.echo_interval;
                link_config.key_change_interval = link.key_change_interval;
                link_config.stans = Some(Arc::new(LinkStans {
                    blocks: Arc::clone(&stans),
                    store: Arc::clone(store),
                    acquirer_id: link.acquirer_id.clone(),
                }));
                (
                    link.id.clone(),
                    BankLink::start(link_config, Arc::clone(&hsm)),
                )
            })
            .collect();
        Self {
            config,
            hsm,
            links,
            stans,
        }
    }

    /// The next STAN (field 11) for a request on `link_id` transmitted at
    /// `now`: unique per acquiring institution id and UTC day across every
    /// link of that institution, restarts and gateway instances, because the
    /// numbers come in blocks from a counter row in the database.
    pub async fn next_stan(
        &self,
        store: &dyn StanStore,
        link_id: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let acquirer_id = self
            .config
            .link(link_id)
            .map(|link| link.acquirer_id.as_str())
            .ok_or_else(|| StoreError::Invariant(format!("no bank link {link_id}")))?;
        self.stans.next(store, acquirer_id, now).await
    }

    /// Signs every link off (0800/002), each after its requests in flight
    /// finished and waiting for the bank's 0810 at most one request timeout
    /// (capped at 5 s), then closes them. Called when the server stops:
    /// dropping the links alone would leave the sign-off to a runtime that
    /// is going away.
    pub async fn shutdown(&self) {
        futures::future::join_all(self.links.values().map(BankLink::shutdown)).await;
    }

    /// The route of a card: the longest matching co-brand range, else the acquirer.
    pub fn route(&self, pan: &Pan) -> Route {
        let digits = pan.digits();
        match self
            .config
            .co_brand
            .iter()
            .find(|range| digits.starts_with(&range.prefix))
        {
            Some(range) => Route {
                kind: CardRouteKind::CoBrandIssuer,
                link: range.link.clone(),
                pin_required: range.pin_required,
            },
            None => Route {
                kind: CardRouteKind::Acquirer,
                link: self.config.acquirer_link.clone().unwrap_or_default(),
                pin_required: false,
            },
        }
    }

    pub fn link(&self, id: &str) -> Option<&BankLink> {
        self.links.get(id)
    }

    /// The keyed PAN fingerprint (hex HMAC-SHA256 in the HSM).
    pub async fn fingerprint(&self, pan: &Pan) -> Result<String, HsmError> {
        let key = KeyRef::latest(&self.config.pan_fingerprint_key);
        Ok(pan.fingerprint(self.hsm.as_ref(), &key).await?.hex)
    }

    /// A keyed digest of sensitive request data, for idempotency comparison
    /// without keeping anything a brute force could reverse.
    pub async fn keyed_digest(&self, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        let key = KeyRef::latest(&self.config.pan_fingerprint_key);
        Ok(self.hsm.hmac(&key, data).await?.bytes)
    }

    /// The HSM label of a terminal's PIN key, if `key_id` is assigned to it.
    pub fn pin_key_label(&self, key_id: &str, store_id: &str, terminal_id: &str) -> Option<&str> {
        let terminal = format!("{store_id}/{terminal_id}");
        self.config
            .pin_keys
            .iter()
            .find(|key| key.id == key_id && key.terminals.contains(&terminal))
            .map(|key| key.hsm_label.as_str())
    }

    /// Translates a PIN block from the terminal's key to the link's zone PIN
    /// key, ISO 9564 format 0 (what the bank link carries in field 52).
    pub async fn translate_pin(
        &self,
        pan: &Pan,
        pin: &PinInput,
        terminal_key_label: &str,
        link_id: &str,
    ) -> Result<Vec<u8>, HsmError> {
        let zpk = self
            .config
            .link(link_id)
            .map(|link| link.zpk.clone())
            .unwrap_or_default();
        self.hsm
            .translate_pin(PinTranslation {
                pan,
                source_key: KeyRef::latest(terminal_key_label),
                source_format: pin.format,
                pin_block: pin.block.expose(),
                destination_key: KeyRef::latest(zpk),
                destination_format: PinBlockFormat::Iso0,
            })
            .await
    }
}

/// The link of a route, if it is up (else nothing is sent or stored).
pub fn up_link<'a>(
    payments: &'a Payments,
    link_id: &str,
) -> Result<(&'a BankLink, &'a BankLinkConfig), CardError> {
    match (payments.link(link_id), payments.config.link(link_id)) {
        (Some(link), Some(config)) if link.is_up() => Ok((link, config)),
        _ => Err(CardError::PartnerUnavailable {
            link_id: link_id.to_owned(),
        }),
    }
}

/// The retrieval reference number (field 37) of a transaction: 12 base-36
/// characters from the random bits of its UUID v7, unique in practice and
/// checked by a unique index.
pub fn rrn_for(transaction_id: &uuid::Uuid) -> String {
    let bytes = transaction_id.as_bytes();
    let mut random = [0u8; 8];
    random.copy_from_slice(&bytes[8..16]);
    // 62 bits: the variant bits of byte 8 are fixed, and 36^12 > 2^62.
    let mut value = u64::from_be_bytes(random) & ((1 << 62) - 1);
    let mut out = [b'0'; 12];
    for slot in out.iter_mut().rev() {
        let digit = u8::try_from(value % 36).expect("below 36");
        *slot = if digit < 10 {
            b'0' + digit
        } else {
            b'A' + digit - 10
        };
        value /= 36;
    }
    String::from_utf8(out.to_vec()).expect("ASCII")
}

/// The terminal id at the bank (field 41, 8 characters): the store and
/// terminal ids joined when they fit, else the first 8 hex digits of their
/// SHA-256 (stable, and distinct in practice).
pub fn bank_terminal_id(store_id: &str, terminal_id: &str) -> String {
    let joined = format!("{store_id}{terminal_id}");
    if joined.len() <= 8 {
        format!("{joined:<8}")
    } else {
        let digest = Sha256::digest(format!("{store_id}/{terminal_id}").as_bytes());
        hex::encode_upper(&digest[..4])
    }
}

/// The obligations of money captured on a card: the bank owes the store.
/// Negative `amount_minor` (a refund or a void) reverses them.
pub fn card_lines(record: &CardRecord, amount_minor: i64, kind: &str) -> Vec<SettlementLine> {
    vec![
        SettlementLine {
            party: Party::Store(record.store_id.clone()).to_string(),
            kind: kind.to_owned(),
            currency: record.currency.clone(),
            amount_minor,
        },
        SettlementLine {
            party: Party::Bank(record.link_id.clone()).to_string(),
            kind: kind.to_owned(),
            currency: record.currency.clone(),
            amount_minor: -amount_minor,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrn_is_twelve_base36_characters() {
        let rrn = rrn_for(&uuid::Uuid::now_v7());
        assert_eq!(rrn.len(), 12);
        assert!(
            rrn.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        );
        assert_ne!(rrn, rrn_for(&uuid::Uuid::now_v7()));
    }

    #[test]
    fn bank_terminal_ids() {
        assert_eq!(bank_terminal_id("S001", "T01"), "S001T01 ");
        let long = bank_terminal_id("STORE-LONG-1", "TILL-1");
        assert_eq!(long.len(), 8);
        assert_ne!(long, bank_terminal_id("STORE-LONG-1", "TILL-2"));
    }
}
