//! posgate-core: the domain model, config sections, ports and application
//! services of the gateway, free of transport and database crates (no tonic,
//! prost, sqlx or hyper; a dependency check in `.ci/run` keeps it so).
//!
//! # Layout
//! - [`model`]: values every domain shares and the records the database keeps, one file each:
//!   - [`model::money`]: currencies, amount bounds, fee contracts with explicit rounding.
//!   - [`model::business_day`]: shops' time zones and cutoffs to business dates, `StoreConfig`.
//!   - [`model::clock`]: the current time, replaceable in tests.
//!   - [`model::idempotency`]: idempotency keys, request fingerprints, stored answers, `Answered`.
//!   - [`model::request`]: the request context of every call, field violations.
//!   - [`model::ids`], [`model::config_error`], [`model::unknown`]: the id alphabet, the config error, closed-set parse errors.
//!   - [`model::party`], [`model::actor`]: settlement parties and event actors, parsed and displayed once.
//!   - [`model::transaction`], [`model::bill`], [`model::card`], [`model::wallet`], [`model::link`]: the records and results of each kind of transaction, the one event constructor.
//!   - [`model::chain`], [`model::recon`], [`model::event`]: audit chain entries, acknowledgement files and reports, stored event names.
//! - [`config`]: the whole TOML configuration, assembled from the domains' sections and checked once at load.
//! - [`bill`]: bill collection: slip barcodes and biller profiles, the biller registry, the `[[biller]]` sections,
//!   the bill service (InquireBill, PayBill, CancelBill, `GetBillPayment`) for batch and online billers, the
//!   online billers' connectors and the notice store-and-forward worker.
//! - [`cards`]: card payments: the `[card]` section, the card service (Authorize, Capture, Void,
//!   Refund, `GetTransaction`), its ISO 8583 requests and outcome state machine, the card
//!   store-and-forward worker.
//! - [`wallet`]: e-wallets: the wallet operators' section, the wallet service (`TopUp`, `Pay`,
//!   `Refund`, `GetBalance`, `GetWalletTransaction`, `LinkCard`, `UnlinkCard`), the card top-up and
//!   auto-reload saga with its recovery, the wallet store-and-forward worker.
//! - [`clearing`]: clearing: a day's close and files, signatures, verification, settlement instructions, reconciliation, the scheduled close, and its application service.
//! - [`audit`]: the audit chain: sealing, verification, page tokens, signing keys, the `[audit]` section, and the audit application service.
//! - [`ports`]: the traits the core needs from outside: the database ([`ports::db`]), the encoding of stored answers ([`ports::answers`]), the wallet operator and biller connectors ([`ports::partners`]).
//! - [`instance`]: this gateway among several on one database: its id, its leases on shared work, the leader election.
//! - [`worker`]: the run loop and retry backoff the background workers share.
//! - [`metrics`]: the store-and-forward backlog gauges and their worker, the audit seal lag.

pub mod audit;
pub mod bill;
pub mod cards;
pub mod clearing;
pub mod config;
pub mod instance;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod wallet;
pub mod worker;
