//! The simulated bank's books: card accounts (credit lines), holds from
//! authorizations, postings from sales, captures and refunds, loyalty
//! points, reversals, the RRN idempotency record and the duplicate check on
//! trace numbers.
//!
//! Like an acquirer host, the bank refuses with 94 (duplicate transmission)
//! a request whose STAN its acquirer already used on the same day for
//! another transaction (another RRN): a STAN names one transaction of one
//! acquirer for a day. The day is field 7's `MMDD` (UTC), the acquirer is
//! field 32. Repeats of the same transaction (same RRN: an 0401 after its
//! 0400, a retransmitted 0100) are answered as before, from the record.
//!
//! Pure and synchronous: the server parses a message into a request type of
//! this module, calls [`Ledger`] under a mutex, and turns the [`Answer`] back
//! into a message. Money is integer minor units; every effect a transaction
//! had is recorded on it so a reversal undoes exactly that, once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use chrono::NaiveDate;
use des::TdesEde2;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, KeyInit};
use posgate_hsm::pin_block::iso0_clear_block;
use posgate_hsm::{CardExpiry, Pan, Secret, mac::constant_time_eq};
use zeroize::Zeroizing;

use super::config::SimConfig;

/// Approved.
pub const RC_APPROVED: &str = "00";
/// Do not honour: blocked card, or an original that was reversed before it arrived.
pub const RC_DO_NOT_HONOUR: &str = "05";
/// Invalid amount: a capture above the authorized amount.
pub const RC_INVALID_AMOUNT: &str = "13";
/// Invalid card number: unknown PAN or bad Luhn check digit.
pub const RC_INVALID_CARD: &str = "14";
/// Unable to locate record: a capture whose authorization is unknown, declined or reversed.
pub const RC_NO_ORIGINAL: &str = "25";
/// Format error: a missing or malformed field, a zero amount, a currency the account does not hold.
pub const RC_FORMAT_ERROR: &str = "30";
/// Insufficient funds (open-to-buy below the amount).
pub const RC_INSUFFICIENT_FUNDS: &str = "51";
/// Expired card, or field 14 does not match the card.
pub const RC_EXPIRED: &str = "54";
/// Incorrect PIN.
pub const RC_WRONG_PIN: &str = "55";
/// The card security code (field 48) does not match the card (Visa's N7).
pub const RC_SECURITY_CODE_MISMATCH: &str = "N7";
/// Issuer unavailable (used by fault configs).
pub const RC_ISSUER_UNAVAILABLE: &str = "91";
/// Duplicate transmission: same RRN with different content, a second
/// capture, or a STAN the acquirer already used that day for another RRN.
pub const RC_DUPLICATE: &str = "94";
/// System malfunction: unparsable (but MAC-valid) request, or the ledger is full.
pub const RC_SYSTEM_MALFUNCTION: &str = "96";

/// Upper bound on recorded transactions (and idempotency entries): an hour
/// of load at 500 requests per second is 1.8 million. Beyond it the
/// simulator answers 96 rather than grow without bound.
pub const MAX_TRANSACTIONS: usize = 2_000_000;

/// An authorization, a sale or a refund: the requests that start a transaction.
#[derive(Debug, Clone)]
pub struct FinancialRequest {
    pub kind: FinancialKind,
    /// The full PAN; zeroized on drop, never printed.
    pub pan_digits: Secret<String>,
    /// A refund by reference: the payment refunded (field 90), instead of the card.
    pub refunded: Option<OriginalKey>,
    /// Field 14, if sent.
    pub expiry: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub key: OriginalKey,
    /// Field 52, enciphered under the ZPK; never printed.
    pub pin_block: Option<Secret<[u8; 8]>>,
    /// Field 48's card security code; zeroized on drop, never printed.
    pub security_code: Option<Secret<String>>,
    /// The request's business content, compared on an RRN repeat.
    pub fingerprint: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinancialKind {
    /// 0100: hold the amount.
    Authorization,
    /// 0200, processing code 00: post the amount.
    Sale,
    /// 0200, processing code 20: credit the amount back.
    Refund,
}

/// How a transaction is named: by its MTI (repeat bit cleared), STAN,
/// transmission date-time and acquiring institution (field 90), and by its RRN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginalKey {
    /// `0100`, `0200` or `0220`.
    pub mti: String,
    pub stan: String,
    /// Field 7, `MMDDhhmmss`.
    pub transmitted_at: String,
    /// Field 32 zero-padded to 11 digits, as field 90 carries it.
    pub acquirer_id: String,
    pub rrn: String,
}

/// Field 90's naming of a transaction: MTI, STAN, date-time, acquirer.
type DataKey = (String, String, String, String);

/// What a STAN must be unique within, with the STAN: the acquirer (field 32,
/// 11 digits), the day of transmission (field 7's `MMDD`) and the STAN.
type TraceKey = (String, String, String);

impl OriginalKey {
    fn by_data(&self) -> DataKey {
        (
            self.mti.clone(),
            self.stan.clone(),
            self.transmitted_at.clone(),
            self.acquirer_id.clone(),
        )
    }

    fn by_rrn(&self) -> (String, String) {
        (self.mti.clone(), self.rrn.clone())
    }

    /// The request's trace: its acquirer, day of transmission and STAN.
    fn trace(&self) -> TraceKey {
        let day = self.transmitted_at.get(..4).unwrap_or(&self.transmitted_at);
        (self.acquirer_id.clone(), day.to_owned(), self.stan.clone())
    }
}

/// What looking up an original found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    One(usize),
    None,
    /// More than one recorded transaction fits, or the RRN names one whose
    /// field 90 data differ: the bank refuses to guess.
    Ambiguous,
}

/// 0220: capture of an earlier authorization.
#[derive(Debug, Clone)]
pub struct CaptureRequest {
    /// This advice itself (MTI 0220).
    pub key: OriginalKey,
    /// The authorization it captures (from field 90, and the advice's RRN).
    pub original: OriginalKey,
    pub amount_minor: i64,
    pub currency: String,
    pub fingerprint: Vec<u8>,
}

/// 0400/0401: reversal of an earlier transaction.
#[derive(Debug, Clone)]
pub struct ReversalRequest {
    /// This reversal itself (MTI 0400, its own STAN, the original's RRN).
    pub key: OriginalKey,
    /// The transaction to reverse (from field 90, and the reversal's RRN).
    pub original: OriginalKey,
    pub fingerprint: Vec<u8>,
}

/// What the bank answers, before it becomes a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub response_code: String,
    /// Field 38, on approvals of authorizations, sales and refunds.
    pub approval_code: Option<String>,
    /// Field 48 on co-brand cards: points this answer added (or took back) and the balance after.
    pub loyalty: Option<Loyalty>,
}

impl Answer {
    fn code(code: &str) -> Self {
        Self {
            response_code: code.to_owned(),
            approval_code: None,
            loyalty: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loyalty {
    pub points_delta: i64,
    pub points_balance: i64,
}

/// What applying a request did, for statistics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A new request, applied (approved or declined).
    Applied,
    /// Same RRN and content as an earlier request: its answer, replayed.
    Replayed,
    /// Same RRN, different content: 94, nothing applied.
    Conflict,
    /// A STAN its acquirer already used that day for another RRN: 94, nothing applied.
    DuplicateStan,
    /// A reversal that undid its original.
    Reversed,
    /// A reversal whose original was already reversed.
    AlreadyReversed,
    /// A reversal whose original was declined.
    NothingToUndo,
    /// A reversal whose original is unknown: recorded so a late original is declined.
    UnknownOriginal,
    /// A reversal, capture or refund whose reference fits more than one
    /// transaction, or whose RRN and field 90 name different ones: refused
    /// (25), nothing applied.
    Ambiguous,
    /// The ledger is at [`MAX_TRANSACTIONS`]: 96, nothing applied.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnKind {
    Authorization,
    Sale,
    Refund,
    Capture { authorization: usize },
}

/// One recorded transaction and every effect it had on its account.
#[derive(Debug)]
struct Txn {
    kind: TxnKind,
    /// How the request that made it named itself (RRN and field 90 data).
    key: OriginalKey,
    account: usize,
    /// Field 37: how the bank's settlement (and its acknowledgement files) name it.
    rrn: String,
    /// Still held by this authorization.
    hold_minor: i64,
    /// What this transaction added to the account's posted amount (negative for refunds).
    posted_minor: i64,
    /// Points this transaction added (negative: taken back).
    points_delta: i64,
    /// An authorization that a capture consumed.
    capture: Option<usize>,
    reversed: bool,
}

struct Account {
    pan: Pan,
    digits: Secret<String>,
    expiry: CardExpiry,
    pin: Option<Secret<String>>,
    security_code: Option<Secret<String>>,
    limit_minor: i64,
    opening_balance_minor: i64,
    currency: String,
    blocked: bool,
    co_brand: bool,
    held_minor: i64,
    posted_minor: i64,
    points: i64,
}

impl Account {
    fn available_minor(&self) -> i64 {
        self.limit_minor - self.opening_balance_minor - self.held_minor - self.posted_minor
    }

    /// Adds `delta` points, never taking the balance below zero; returns what was applied.
    fn add_points(&mut self, delta: i64) -> i64 {
        let applied = delta.max(-self.points);
        self.points += applied;
        applied
    }
}

/// The bank's books. Not `Sync` by itself: the server keeps it behind a mutex.
pub struct Ledger {
    accounts: Vec<Account>,
    zpk: Zeroizing<[u8; 16]>,
    points_per_unit: i64,
    txns: Vec<Txn>,
    /// Every transaction by each of its names; a match needs both. Field 90
    /// data fit one transaction at most since a STAN reused by its acquirer
    /// on the same day is refused; the lookups still refuse to guess.
    by_data: HashMap<DataKey, Vec<usize>>,
    by_rrn: HashMap<(String, String), Vec<usize>>,
    /// Reversals that arrived before their original, by the original's full name.
    early: HashSet<OriginalKey>,
    /// Idempotency record: (request class, RRN) -> (content fingerprint, answer).
    answered: HashMap<(String, String), (Vec<u8>, Answer)>,
    /// The RRN each answered request's trace (acquirer, day, STAN) was
    /// first used for. One entry per entry of `answered` at most, so it is
    /// bounded by [`MAX_TRANSACTIONS`] too.
    traced: HashMap<TraceKey, String>,
    approvals_issued: u64,
    /// Settlement: what each RRN's postings amounted to when last settled.
    settled_by_rrn: HashMap<String, i64>,
    /// Settlement cycles closed so far, by business date (kept to answer a repeat).
    cycles: BTreeMap<NaiveDate, Vec<SettledItem>>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("accounts", &self.accounts.len())
            .field("transactions", &self.txns.len())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens the books from a validated config.
    pub fn new(config: &SimConfig) -> Result<Self, String> {
        let zpk_bytes = Zeroizing::new(
            hex::decode(config.zpk_hex.expose()).map_err(|_| "zpk_hex is not hex".to_owned())?,
        );
        let zpk: [u8; 16] = zpk_bytes
            .as_slice()
            .try_into()
            .map_err(|_| "zpk_hex is 16 bytes".to_owned())?;
        let mut ledger = Self {
            accounts: Vec::with_capacity(config.accounts.len()),
            zpk: Zeroizing::new(zpk),
            points_per_unit: config.points_per_unit,
            txns: Vec::new(),
            by_data: HashMap::new(),
            by_rrn: HashMap::new(),
            early: HashSet::new(),
            answered: HashMap::new(),
            traced: HashMap::new(),
            approvals_issued: 0,
            settled_by_rrn: HashMap::new(),
            cycles: BTreeMap::new(),
        };
        for account in &config.accounts {
            let pan = Pan::parse(account.pan.expose()).map_err(|error| error.to_string())?;
            let digits: Secret<String> = Secret::new(
                account
                    .pan
                    .expose()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect(),
            );
            let co_brand = config
                .co_brand_bins
                .iter()
                .any(|bin| digits.expose().starts_with(bin.as_str()));
            ledger.accounts.push(Account {
                pan,
                digits,
                expiry: CardExpiry::parse(&account.expiry).map_err(|error| error.to_string())?,
                pin: account.pin.clone(),
                security_code: account.security_code.clone(),
                limit_minor: account.limit_minor,
                opening_balance_minor: account.balance_minor,
                currency: account.currency.clone(),
                blocked: account.blocked,
                co_brand,
                held_minor: 0,
                posted_minor: 0,
                points: 0,
            });
        }
        Ok(ledger)
    }

    /// Applies an authorization, sale or refund.
    pub fn financial(&mut self, request: &FinancialRequest, today: NaiveDate) -> (Answer, Effect) {
        let class = request.key.mti.clone();
        self.idempotent(&class, &request.key, &request.fingerprint, |ledger| {
            let answer = ledger.apply_financial(request, today);
            (answer, Effect::Applied)
        })
    }

    /// Applies a capture advice.
    pub fn capture(&mut self, request: &CaptureRequest) -> (Answer, Effect) {
        let class = request.key.mti.clone();
        self.idempotent(&class, &request.key, &request.fingerprint, |ledger| {
            (ledger.apply_capture(request), Effect::Applied)
        })
    }

    /// Applies a reversal (0400 or its repeat 0401). It is recorded under
    /// the original's RRN, which its field 37 carries.
    pub fn reversal(&mut self, request: &ReversalRequest) -> (Answer, Effect) {
        let class = format!("0400/{}", request.original.mti);
        let own = OriginalKey {
            rrn: request.original.rrn.clone(),
            ..request.key.clone()
        };
        self.idempotent(&class, &own, &request.fingerprint, |ledger| {
            ledger.apply_reversal(&request.original)
        })
    }

    /// Replays the recorded answer for a repeated (class, RRN of `own`),
    /// refuses a changed repeat or a STAN already used for another RRN with
    /// 94, else applies and records.
    fn idempotent(
        &mut self,
        class: &str,
        own: &OriginalKey,
        fingerprint: &[u8],
        apply: impl FnOnce(&mut Self) -> (Answer, Effect),
    ) -> (Answer, Effect) {
        let id = (class.to_owned(), own.rrn.clone());
        if let Some((recorded, answer)) = self.answered.get(&id) {
            return if recorded.as_slice() == fingerprint {
                (answer.clone(), Effect::Replayed)
            } else {
                (Answer::code(RC_DUPLICATE), Effect::Conflict)
            };
        }
        let trace = own.trace();
        if self.traced.get(&trace).is_some_and(|rrn| *rrn != own.rrn) {
            return (Answer::code(RC_DUPLICATE), Effect::DuplicateStan);
        }
        if self.answered.len() >= MAX_TRANSACTIONS || self.txns.len() >= MAX_TRANSACTIONS {
            return (Answer::code(RC_SYSTEM_MALFUNCTION), Effect::Full);
        }
        let (answer, effect) = apply(self);
        self.answered
            .insert(id, (fingerprint.to_vec(), answer.clone()));
        self.traced.entry(trace).or_insert_with(|| own.rrn.clone());
        (answer, effect)
    }

    fn apply_financial(&mut self, request: &FinancialRequest, today: NaiveDate) -> Answer {
        if self.early.contains(&request.key) {
            return Answer::code(RC_DO_NOT_HONOUR);
        }
        let index = if let Some(refunded) = &request.refunded {
            // The card of the refunded payment; nothing to screen (no card
            // data came). Field 90 is the only name a refund by reference
            // has for it (its RRN is the refund's own): it must fit exactly one.
            match self.find_by_data(refunded) {
                Found::One(txn) if !self.txns[txn].reversed => self.txns[txn].account,
                Found::Ambiguous => return Answer::code(RC_NO_ORIGINAL),
                _ => return Answer::code(RC_INVALID_CARD),
            }
        } else {
            // Accounts are a handful of configured test cards: a scan is enough.
            let found = self
                .accounts
                .iter()
                .position(|account| account.digits.expose() == request.pan_digits.expose());
            let Some(index) = found else {
                return Answer::code(RC_INVALID_CARD);
            };
            if let Some(code) = self.screen(index, request, today) {
                return Answer::code(code);
            }
            index
        };
        let account = &mut self.accounts[index];
        let amount = request.amount_minor;
        let (hold_minor, posted_minor, points_wanted) = match request.kind {
            FinancialKind::Authorization => (amount, 0, 0),
            FinancialKind::Sale => (0, amount, amount / self.points_per_unit),
            FinancialKind::Refund => (0, -amount, -(amount / self.points_per_unit)),
        };
        account.held_minor += hold_minor;
        account.posted_minor += posted_minor;
        let points_delta = if account.co_brand {
            account.add_points(points_wanted)
        } else {
            0
        };
        let kind = match request.kind {
            FinancialKind::Authorization => TxnKind::Authorization,
            FinancialKind::Sale => TxnKind::Sale,
            FinancialKind::Refund => TxnKind::Refund,
        };
        self.record(Txn {
            kind,
            key: request.key.clone(),
            account: index,
            rrn: request.key.rrn.clone(),
            hold_minor,
            posted_minor,
            points_delta,
            capture: None,
            reversed: false,
        });
        self.approved(index, points_delta)
    }

    /// The decline code for a request on a known account, if any.
    fn screen(
        &self,
        index: usize,
        request: &FinancialRequest,
        today: NaiveDate,
    ) -> Option<&'static str> {
        let account = &self.accounts[index];
        if account.blocked {
            return Some(RC_DO_NOT_HONOUR);
        }
        let expiry_mismatch = request
            .expiry
            .as_deref()
            .is_some_and(|sent| sent != account.expiry.to_yymm());
        if account.expiry.is_expired_at(today) || expiry_mismatch {
            return Some(RC_EXPIRED);
        }
        // A zero-amount authorization is an account verification (card
        // linking): allowed, it holds nothing.
        let verification =
            request.kind == FinancialKind::Authorization && request.amount_minor == 0;
        if request.currency != account.currency || (request.amount_minor <= 0 && !verification) {
            return Some(RC_FORMAT_ERROR);
        }
        if let Some(block) = &request.pin_block {
            let matches = account.pin.as_ref().is_some_and(|pin| {
                pin_matches(
                    &self.zpk,
                    account.digits.expose(),
                    pin.expose(),
                    *block.expose(),
                )
            });
            if !matches {
                return Some(RC_WRONG_PIN);
            }
        }
        if let (Some(sent), Some(expected)) = (&request.security_code, &account.security_code)
            && !constant_time_eq(sent.expose().as_bytes(), expected.expose().as_bytes())
        {
            return Some(RC_SECURITY_CODE_MISMATCH);
        }
        let spends = request.kind != FinancialKind::Refund;
        if spends && account.available_minor() < request.amount_minor {
            return Some(RC_INSUFFICIENT_FUNDS);
        }
        None
    }

    fn apply_capture(&mut self, request: &CaptureRequest) -> Answer {
        let Found::One(auth_index) = self.find(&request.original) else {
            return Answer::code(RC_NO_ORIGINAL);
        };
        let auth = &self.txns[auth_index];
        if auth.kind != TxnKind::Authorization || auth.reversed {
            return Answer::code(RC_NO_ORIGINAL);
        }
        if auth.capture.is_some() {
            return Answer::code(RC_DUPLICATE);
        }
        let index = auth.account;
        let held = auth.hold_minor;
        if request.currency != self.accounts[index].currency || request.amount_minor <= 0 {
            return Answer::code(RC_FORMAT_ERROR);
        }
        if request.amount_minor > held {
            return Answer::code(RC_INVALID_AMOUNT);
        }
        let account = &mut self.accounts[index];
        // The whole hold goes: the captured part to posted, the rest back to open-to-buy.
        account.held_minor -= held;
        account.posted_minor += request.amount_minor;
        let points_delta = if account.co_brand {
            account.add_points(request.amount_minor / self.points_per_unit)
        } else {
            0
        };
        let capture_index = self.txns.len();
        self.txns[auth_index].hold_minor = 0;
        self.txns[auth_index].capture = Some(capture_index);
        self.record(Txn {
            kind: TxnKind::Capture {
                authorization: auth_index,
            },
            key: request.key.clone(),
            account: index,
            rrn: request.key.rrn.clone(),
            hold_minor: 0,
            posted_minor: request.amount_minor,
            points_delta,
            capture: None,
            reversed: false,
        });
        Answer {
            response_code: RC_APPROVED.to_owned(),
            approval_code: None,
            loyalty: self.loyalty(index, points_delta),
        }
    }

    fn apply_reversal(&mut self, original: &OriginalKey) -> (Answer, Effect) {
        let index = match self.find(original) {
            Found::One(index) => index,
            Found::Ambiguous => return (Answer::code(RC_NO_ORIGINAL), Effect::Ambiguous),
            Found::None => {
                if self.answered.contains_key(&original.by_rrn()) {
                    // The original was declined: it changed nothing.
                    return (Answer::code(RC_APPROVED), Effect::NothingToUndo);
                }
                self.early.insert(original.clone());
                return (Answer::code(RC_APPROVED), Effect::UnknownOriginal);
            }
        };
        if self.txns[index].reversed {
            return (Answer::code(RC_APPROVED), Effect::AlreadyReversed);
        }
        let mut points_delta = self.undo(index);
        // Reversing an authorization voids the whole sale, its capture included.
        if let Some(capture) = self.txns[index].capture
            && !self.txns[capture].reversed
        {
            points_delta += self.undo(capture);
        }
        let account = self.txns[index].account;
        let answer = Answer {
            response_code: RC_APPROVED.to_owned(),
            approval_code: None,
            loyalty: self.loyalty(account, points_delta),
        };
        (answer, Effect::Reversed)
    }

    /// Undoes one transaction's recorded effects; returns the points change.
    fn undo(&mut self, index: usize) -> i64 {
        let txn = &mut self.txns[index];
        debug_assert!(!txn.reversed, "a transaction is reversed at most once");
        txn.reversed = true;
        let account = &mut self.accounts[txn.account];
        account.held_minor -= txn.hold_minor;
        account.posted_minor -= txn.posted_minor;
        let points = account.add_points(-txn.points_delta);
        txn.hold_minor = 0;
        assert!(account.held_minor >= 0, "holds never go negative");
        points
    }

    /// The original a capture or reversal names, as a bank host matches it:
    /// its RRN and its field 90 data (MTI, STAN, date-time, acquirer) must
    /// both fit one recorded transaction.
    fn find(&self, key: &OriginalKey) -> Found {
        let named = self
            .by_rrn
            .get(&key.by_rrn())
            .map_or(&[][..], Vec::as_slice);
        match Self::only(
            named
                .iter()
                .copied()
                .filter(|&index| self.txns[index].key.by_data() == key.by_data()),
        ) {
            Found::None if !named.is_empty() => Found::Ambiguous,
            found => found,
        }
    }

    /// The original a refund by reference names by field 90 alone.
    fn find_by_data(&self, key: &OriginalKey) -> Found {
        let fits = self
            .by_data
            .get(&key.by_data())
            .map_or(&[][..], Vec::as_slice);
        Self::only(fits.iter().copied())
    }

    fn only(mut fits: impl Iterator<Item = usize>) -> Found {
        match (fits.next(), fits.next()) {
            (None, _) => Found::None,
            (Some(index), None) => Found::One(index),
            (Some(_), Some(_)) => Found::Ambiguous,
        }
    }

    fn record(&mut self, txn: Txn) {
        let index = self.txns.len();
        self.by_data
            .entry(txn.key.by_data())
            .or_default()
            .push(index);
        self.by_rrn.entry(txn.key.by_rrn()).or_default().push(index);
        self.txns.push(txn);
    }

    fn approved(&mut self, account: usize, points_delta: i64) -> Answer {
        self.approvals_issued += 1;
        Answer {
            response_code: RC_APPROVED.to_owned(),
            approval_code: Some(format!("{:06}", self.approvals_issued % 1_000_000)),
            loyalty: self.loyalty(account, points_delta),
        }
    }

    fn loyalty(&self, account: usize, points_delta: i64) -> Option<Loyalty> {
        let account = &self.accounts[account];
        account.co_brand.then_some(Loyalty {
            points_delta,
            points_balance: account.points,
        })
    }

    /// Closes the settlement cycle of `business_date`: every RRN whose
    /// postings (sales, captures, refunds, net of reversals) changed since the
    /// previous cycle, with the change; an RRN settled for the first time is
    /// listed even when its postings net to zero (a sale voided the same day).
    /// Closing a date again gives the same items: a closed cycle never changes.
    pub fn settle_cycle(&mut self, business_date: NaiveDate) -> Vec<SettledItem> {
        if let Some(items) = self.cycles.get(&business_date) {
            return items.clone();
        }
        let mut current: BTreeMap<&str, (usize, i64)> = BTreeMap::new();
        for txn in &self.txns {
            if matches!(txn.kind, TxnKind::Authorization) {
                continue;
            }
            let entry = current.entry(txn.rrn.as_str()).or_insert((txn.account, 0));
            if !txn.reversed {
                entry.1 += txn.posted_minor;
            }
        }
        let mut items = Vec::new();
        for (rrn, (account, posted_minor)) in current {
            let before = self.settled_by_rrn.get(rrn).copied();
            if before == Some(posted_minor) {
                continue;
            }
            items.push(SettledItem {
                rrn: rrn.to_owned(),
                currency: self.accounts[account].currency.clone(),
                posted_delta_minor: posted_minor - before.unwrap_or(0),
            });
        }
        for item in &items {
            *self.settled_by_rrn.entry(item.rrn.clone()).or_insert(0) += item.posted_delta_minor;
        }
        self.cycles.insert(business_date, items.clone());
        items
    }

    /// A copy of the books: masked PANs, amounts, points, totals per currency.
    pub fn snapshot(&self) -> LedgerSnapshot {
        self.check_invariants();
        let mut totals: BTreeMap<String, CurrencyTotals> = BTreeMap::new();
        let accounts = self
            .accounts
            .iter()
            .map(|account| {
                let total = totals.entry(account.currency.clone()).or_default();
                total.held_minor += i128::from(account.held_minor);
                total.posted_minor += i128::from(account.posted_minor);
                AccountSnapshot {
                    pan_masked: account.pan.masked(),
                    currency: account.currency.clone(),
                    limit_minor: account.limit_minor,
                    opening_balance_minor: account.opening_balance_minor,
                    held_minor: account.held_minor,
                    posted_minor: account.posted_minor,
                    available_minor: account.available_minor(),
                    points: account.points,
                    blocked: account.blocked,
                }
            })
            .collect();
        LedgerSnapshot {
            accounts,
            totals,
            transactions: self.txns.len(),
        }
    }

    /// The books with what each transaction applied: [`Self::snapshot`]
    /// plus one entry per recorded transaction, in arrival order.
    pub fn dump(&self) -> LedgerDump {
        let snapshot = self.snapshot();
        let applied = self
            .txns
            .iter()
            .map(|txn| AppliedEntry {
                rrn: txn.rrn.clone(),
                kind: match txn.kind {
                    TxnKind::Authorization => "authorization",
                    TxnKind::Sale => "sale",
                    TxnKind::Refund => "refund",
                    TxnKind::Capture { .. } => "capture",
                },
                mti: txn.key.mti.clone(),
                stan: txn.key.stan.clone(),
                transmitted_at: txn.key.transmitted_at.clone(),
                acquirer_id: txn.key.acquirer_id.clone(),
                pan_masked: self.accounts[txn.account].pan.masked(),
                currency: self.accounts[txn.account].currency.clone(),
                held_minor: txn.hold_minor,
                posted_minor: txn.posted_minor,
                points_delta: txn.points_delta,
                reversed: txn.reversed,
            })
            .collect();
        LedgerDump {
            accounts: snapshot.accounts,
            totals: snapshot.totals,
            applied,
        }
    }

    /// Money is conserved: each account's held and posted amounts are the
    /// sums of its live transactions' effects.
    fn check_invariants(&self) {
        let mut held = vec![0_i64; self.accounts.len()];
        let mut posted = vec![0_i64; self.accounts.len()];
        for txn in self.txns.iter().filter(|txn| !txn.reversed) {
            held[txn.account] += txn.hold_minor;
            posted[txn.account] += txn.posted_minor;
        }
        for (index, account) in self.accounts.iter().enumerate() {
            assert_eq!(
                account.held_minor, held[index],
                "held is the sum of open holds"
            );
            assert_eq!(
                account.posted_minor, posted[index],
                "posted is the sum of postings"
            );
            assert!(account.points >= 0, "points never go negative");
        }
    }
}

/// Whether an ISO 9564 format 0 block, enciphered under the ZPK, carries `pin` for `pan_digits`.
fn pin_matches(zpk: &[u8; 16], pan_digits: &str, pin: &str, block: [u8; 8]) -> bool {
    let cipher = TdesEde2::new_from_slice(zpk).expect("two-key TDES takes 16 bytes");
    let mut clear = Zeroizing::new(block);
    cipher.decrypt_block(GenericArray::from_mut_slice(&mut clear[..]));
    iso0_clear_block(pin, pan_digits)
        .is_ok_and(|expected| constant_time_eq(&expected[..], &clear[..]))
}

/// One RRN in a settlement cycle: what its postings changed since the previous cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledItem {
    pub rrn: String,
    /// ISO 4217 numeric code (the account's).
    pub currency: String,
    /// Posted to the cardholder's account (positive: a sale the bank owes the merchant for).
    pub posted_delta_minor: i64,
}

/// The books at one moment. No full PAN anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSnapshot {
    pub accounts: Vec<AccountSnapshot>,
    /// Per ISO 4217 numeric currency code: the sums over its accounts.
    pub totals: BTreeMap<String, CurrencyTotals>,
    /// Transactions recorded (approved ones, captures included).
    pub transactions: usize,
}

impl LedgerSnapshot {
    /// The account of a full PAN (compared by its masked form and last four digits).
    pub fn account(&self, pan: &str) -> Option<&AccountSnapshot> {
        let masked = Pan::parse(pan).ok()?.masked();
        self.accounts
            .iter()
            .find(|account| account.pan_masked == masked)
    }

    /// The totals of one currency (zero if no account holds it).
    pub fn totals(&self, currency: &str) -> CurrencyTotals {
        self.totals.get(currency).copied().unwrap_or_default()
    }
}

/// The books as the admin endpoint shows them (`GET /ledger`). No full PAN.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LedgerDump {
    pub accounts: Vec<AccountSnapshot>,
    /// Per ISO 4217 numeric currency code: the sums over its accounts.
    pub totals: BTreeMap<String, CurrencyTotals>,
    /// Every approved transaction, in arrival order, with what it applied.
    pub applied: Vec<AppliedEntry>,
}

/// What one approved transaction did to its account. Amounts are what it
/// still contributes: a reversed transaction shows `reversed` and its hold
/// at 0; its postings are no longer counted in the account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedEntry {
    /// Field 37.
    pub rrn: String,
    /// `authorization`, `sale`, `refund` or `capture`.
    pub kind: &'static str,
    /// Field 90's naming of it: MTI, STAN, field 7, acquirer (11 digits).
    pub mti: String,
    pub stan: String,
    pub transmitted_at: String,
    pub acquirer_id: String,
    pub pan_masked: String,
    /// ISO 4217 numeric.
    pub currency: String,
    /// Still held by it (authorizations not captured or reversed).
    pub held_minor: i64,
    /// Posted by it (negative for refunds).
    pub posted_minor: i64,
    pub points_delta: i64,
    pub reversed: bool,
}

/// One account at one moment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountSnapshot {
    /// First 6 and last 4 digits.
    pub pan_masked: String,
    pub currency: String,
    pub limit_minor: i64,
    /// What was owed before the simulator started.
    pub opening_balance_minor: i64,
    /// Authorized, not yet captured or reversed.
    pub held_minor: i64,
    /// Captured and sold, minus refunds, since the simulator started.
    pub posted_minor: i64,
    /// Open-to-buy: limit - opening balance - held - posted.
    pub available_minor: i64,
    pub points: i64,
    pub blocked: bool,
}

/// Sums over one currency's accounts: what the gateway's records must match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CurrencyTotals {
    pub held_minor: i128,
    pub posted_minor: i128,
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
