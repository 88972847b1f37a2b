//! The suite's view of the gateway: a mutual-TLS channel per identity (each
//! request goes over the channel of the terminal it names), request contexts with
//! fresh idempotency keys, valid slips, cards and requests to start cases
//! from, and the RPCs of `BillPaymentService` and `PaymentService` with a
//! bounded retry when the gateway sheds load.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};
use posgate_proto::v1 as pb;
use posgate_proto::v1::bill_payment_service_client::BillPaymentServiceClient;
use posgate_proto::v1::payment_service_client::PaymentServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Response, Status};
use tonic_types::StatusExt as _;

use crate::card;
use crate::money;
use crate::slip::{JpSlip, TwSlip, roc_yymm};
use crate::target::{ClientCert, Target, terminal_spiffe_id};

/// How long connecting may take before the suite gives up on the target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of one call; every RPC under test answers in milliseconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// `RESOURCE_EXHAUSTED` answers retried per call. A deployment with default
/// rate limits (20/s per terminal, burst 40) sheds some of the suite's
/// bursts; a rate-limited request stored nothing, so retrying it is safe.
const MAX_SHED_RETRIES: u32 = 20;
/// Wait after a shed answer without RetryInfo, and the most any retry waits.
const DEFAULT_SHED_DELAY: Duration = Duration::from_millis(100);
const MAX_SHED_DELAY: Duration = Duration::from_secs(2);
/// Days ahead of today the suite's valid slips fall due, far enough that no
/// store time zone or business-day cutoff makes them late.
pub const DUE_IN_DAYS: i64 = 30;
/// Days before today the suite's past-due slips fell due.
pub const PAST_DUE_DAYS: i64 = 30;
/// Amount ranges of generated slips, inside the example billers' limits
/// (TW NT$1–20,000, JP ¥1–300,000) so any sane deployment accepts them.
const TW_AMOUNT_WHOLE_MIN: u64 = 100;
const TW_AMOUNT_WHOLE_SPAN: u64 = 9_900;
const JP_AMOUNT_YEN_MIN: u64 = 100;
const JP_AMOUNT_YEN_SPAN: u64 = 99_900;

/// The header a gateway sets on a replayed answer.
pub const REPLAY_HEADER: &str = "posgate-idempotent-replay";

/// The shared state every case runs with.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub target: Target,
    /// The channel of the suite's own terminal (`store_id`/`terminal_id`).
    main: Channel,
    /// A channel per client certificate of the target, by SPIFFE id.
    channels: HashMap<String, Channel>,
}

impl Ctx {
    /// Opens the channel to the target (TLS for `https://`, trusting only the given CA).
    ///
    /// # Errors
    ///
    /// When the address or CA is unusable or the gateway cannot be reached.
    pub async fn connect(target: &Target) -> anyhow::Result<Self> {
        target.validate()?;
        let endpoint = Endpoint::from_shared(target.addr.clone())
            .with_context(|| format!("address {:?}", target.addr))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let tls = target.ca_pem.as_ref().map(|ca_pem| {
            let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
            match &target.domain {
                Some(domain) => tls.domain_name(domain.clone()),
                None => tls,
            }
        });
        let endpoint_as = |cert: Option<&ClientCert>| -> anyhow::Result<Endpoint> {
            match (&tls, cert) {
                (Some(tls), Some(cert)) => endpoint
                    .clone()
                    .tls_config(
                        tls.clone()
                            .identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem)),
                    )
                    .context("TLS settings"),
                (Some(tls), None) => endpoint
                    .clone()
                    .tls_config(tls.clone())
                    .context("TLS settings"),
                (None, _) => Ok(endpoint.clone()),
            }
        };
        let own = terminal_spiffe_id(&target.store_id, &target.terminal_id);
        let main = endpoint_as(target.client_cert(&own))?
            .connect()
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        let mut channels = HashMap::new();
        for cert in &target.client_certs {
            let channel = if cert.spiffe_id == own {
                main.clone()
            } else {
                endpoint_as(Some(cert))?.connect_lazy()
            };
            channels.insert(cert.spiffe_id.clone(), channel);
        }
        Ok(Self {
            target: target.clone(),
            main,
            channels,
        })
    }

    /// The channel of the suite's own terminal, whatever a request claims.
    #[must_use]
    pub fn main_channel(&self) -> Channel {
        self.main.clone()
    }

    /// The channel presenting the certificate of `spiffe_id`, if the target has one.
    #[must_use]
    pub fn channel_as(&self, spiffe_id: &str) -> Option<Channel> {
        self.channels.get(spiffe_id).cloned()
    }

    /// A `WalletService` client on the channel of the terminal `context` names.
    #[must_use]
    pub fn wallets_for(
        &self,
        context: Option<&pb::RequestContext>,
    ) -> pb::wallet_service_client::WalletServiceClient<Channel> {
        pb::wallet_service_client::WalletServiceClient::new(self.channel_for(context))
    }

    /// The channel of the terminal a request's context names, as a till
    /// would send it; the suite's own channel when the target has no
    /// certificate for that terminal (malformed ids, for instance).
    fn channel_for(&self, context: Option<&pb::RequestContext>) -> Channel {
        context
            .and_then(|c| {
                self.channels
                    .get(&terminal_spiffe_id(&c.store_id, &c.terminal_id))
            })
            .unwrap_or(&self.main)
            .clone()
    }

    /// A fresh idempotency key (a UUID).
    #[must_use]
    pub fn new_key() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// A context for `store_id` and `terminal_id` with a fresh key, stamped now.
    #[must_use]
    pub fn context_at(&self, store_id: &str, terminal_id: &str) -> pb::RequestContext {
        pb::RequestContext {
            store_id: store_id.to_owned(),
            terminal_id: terminal_id.to_owned(),
            client_request_id: Self::new_key(),
            pos_timestamp: Some(now_timestamp()),
            operator_id: self.target.operator_id.clone(),
        }
    }

    /// A context at the Taiwanese store, from the suite's terminal.
    #[must_use]
    pub fn tw_context(&self) -> pb::RequestContext {
        self.context_at(&self.target.store_id, &self.target.terminal_id)
    }

    /// A context at the Japanese store, from the suite's terminal.
    #[must_use]
    pub fn jp_context(&self) -> pb::RequestContext {
        self.context_at(&self.target.jp_store_id, &self.target.terminal_id)
    }

    /// A valid Taiwanese slip of the target's biller falling due `due_in_days` from today.
    #[must_use]
    pub fn tw_slip(&self, due_in_days: i64) -> TwSlip {
        let random = random_u64();
        let due_date = today() + chrono::Duration::days(due_in_days);
        TwSlip {
            agency_code: self.target.tw_agency_code.clone(),
            bill_number: format!("CONF{:012X}", random & 0xFFFF_FFFF_FFFF),
            due_date,
            period: roc_yymm(due_date),
            amount_whole: TW_AMOUNT_WHOLE_MIN + (random >> 48) % TW_AMOUNT_WHOLE_SPAN,
        }
    }

    /// A valid Japanese slip of the target's biller falling due `due_in_days` from today.
    #[must_use]
    pub fn jp_slip(&self, due_in_days: i64) -> JpSlip {
        let random = random_u64();
        JpSlip {
            company_code: self.target.jp_company_code.clone(),
            free_field: format!("{random:021}"),
            reissue_count: 0,
            due_date: today() + chrono::Duration::days(due_in_days),
            stamp_duty: false,
            amount_yen: JP_AMOUNT_YEN_MIN + random % JP_AMOUNT_YEN_SPAN,
        }
    }

    /// What the POS collects for a Taiwanese slip.
    #[must_use]
    pub fn tw_amount(&self, slip: &TwSlip) -> pb::Money {
        pb::Money {
            amount_minor: money::whole_to_minor(slip.amount_whole, &self.target.tw_currency)
                .expect("validated currency and a 9-digit amount fit"),
            currency: self.target.tw_currency.clone(),
        }
    }

    /// What the POS collects for a Japanese slip.
    #[must_use]
    pub fn jp_amount(slip: &JpSlip) -> pb::Money {
        pb::Money {
            amount_minor: i64::try_from(slip.amount_yen).expect("6 digits fit"),
            currency: "JPY".to_owned(),
        }
    }

    /// A valid PayBill for a fresh Taiwanese slip with a fresh key.
    #[must_use]
    pub fn tw_pay_request(&self) -> pb::PayBillRequest {
        let slip = self.tw_slip(DUE_IN_DAYS);
        pb::PayBillRequest {
            context: Some(self.tw_context()),
            slip: Some(pb::BillSlip {
                barcodes: slip.barcodes().to_vec(),
                biller_id: String::new(),
            }),
            amount: Some(self.tw_amount(&slip)),
        }
    }

    /// A valid PayBill for a fresh Japanese slip with a fresh key.
    #[must_use]
    pub fn jp_pay_request(&self) -> pb::PayBillRequest {
        let slip = self.jp_slip(DUE_IN_DAYS);
        pb::PayBillRequest {
            context: Some(self.jp_context()),
            slip: Some(pb::BillSlip {
                barcodes: vec![slip.barcode()],
                biller_id: String::new(),
            }),
            amount: Some(Self::jp_amount(&slip)),
        }
    }

    /// A CancelBill of `transaction_id` at the Taiwanese store with a fresh key.
    #[must_use]
    pub fn tw_cancel_request(&self, transaction_id: &str) -> pb::CancelBillRequest {
        pb::CancelBillRequest {
            context: Some(self.tw_context()),
            transaction_id: transaction_id.to_owned(),
            reason: "conformance test: customer changed mind".to_owned(),
        }
    }

    /// A GetBillPayment by transaction id at the Taiwanese store.
    #[must_use]
    pub fn tw_get_by_id(&self, transaction_id: &str) -> pb::GetBillPaymentRequest {
        pb::GetBillPaymentRequest {
            context: Some(self.tw_context()),
            lookup: Some(pb::get_bill_payment_request::Lookup::TransactionId(
                transaction_id.to_owned(),
            )),
        }
    }

    /// A GetBillPayment for the payment `context`'s terminal made with `context`'s key.
    #[must_use]
    pub fn get_by_paid_key(context: &pb::RequestContext) -> pb::GetBillPaymentRequest {
        pb::GetBillPaymentRequest {
            context: Some(pb::RequestContext {
                client_request_id: Self::new_key(),
                pos_timestamp: Some(now_timestamp()),
                ..context.clone()
            }),
            lookup: Some(pb::get_bill_payment_request::Lookup::PaidClientRequestId(
                context.client_request_id.clone(),
            )),
        }
    }

    pub async fn inquire(
        &self,
        request: &pb::InquireBillRequest,
    ) -> Result<Response<pb::InquireBillResponse>, Status> {
        retry_shed(|| {
            let mut client =
                BillPaymentServiceClient::new(self.channel_for(request.context.as_ref()));
            let request = request.clone();
            async move { client.inquire_bill(request).await }
        })
        .await
    }

    pub async fn pay(
        &self,
        request: &pb::PayBillRequest,
    ) -> Result<Response<pb::PayBillResponse>, Status> {
        retry_shed(|| {
            let mut client =
                BillPaymentServiceClient::new(self.channel_for(request.context.as_ref()));
            let request = request.clone();
            async move { client.pay_bill(request).await }
        })
        .await
    }

    pub async fn cancel(
        &self,
        request: &pb::CancelBillRequest,
    ) -> Result<Response<pb::CancelBillResponse>, Status> {
        retry_shed(|| {
            let mut client =
                BillPaymentServiceClient::new(self.channel_for(request.context.as_ref()));
            let request = request.clone();
            async move { client.cancel_bill(request).await }
        })
        .await
    }

    pub async fn get(
        &self,
        request: &pb::GetBillPaymentRequest,
    ) -> Result<Response<pb::GetBillPaymentResponse>, Status> {
        retry_shed(|| {
            let mut client =
                BillPaymentServiceClient::new(self.channel_for(request.context.as_ref()));
            let request = request.clone();
            async move { client.get_bill_payment(request).await }
        })
        .await
    }
}

/// A card read by chip: PAN and expiry from the chip, no PIN.
#[must_use]
pub fn chip_card(pan: &str, expiry: &str) -> pb::CardInput {
    pb::CardInput {
        entry_mode: pb::CardEntryMode::Chip.into(),
        account: Some(pb::card_input::Account::PanAndExpiry(pb::PanAndExpiry {
            pan: pan.to_owned(),
            expiry: expiry.to_owned(),
        })),
        ..pb::CardInput::default()
    }
}

impl Ctx {
    /// Money in the card currency of the suite's store (the Taiwanese store's currency).
    #[must_use]
    pub fn card_money(&self, amount_minor: i64) -> pb::Money {
        pb::Money {
            amount_minor,
            currency: self.target.tw_currency.clone(),
        }
    }

    /// A valid Authorize at the suite's store and terminal with a fresh key:
    /// `pan` read by chip (live expiry, no PIN).
    #[must_use]
    pub fn authorize_request(
        &self,
        pan: &str,
        amount_minor: i64,
        mode: pb::CaptureMode,
    ) -> pb::AuthorizeRequest {
        pb::AuthorizeRequest {
            context: Some(self.tw_context()),
            card: Some(chip_card(pan, card::EXPIRY)),
            amount: Some(self.card_money(amount_minor)),
            capture_mode: mode.into(),
            pos_reference: format!("CONF-{}", &Self::new_key()[24..]),
        }
    }

    /// A SALE as `authorize_request`, from the PIN terminal with `pin`
    /// encrypted under its PIN key.
    ///
    /// # Errors
    ///
    /// When the configured PIN key cannot encrypt (malformed).
    pub fn pin_sale_request(
        &self,
        pan: &str,
        pin: &str,
        amount_minor: i64,
    ) -> anyhow::Result<pb::AuthorizeRequest> {
        let mut request = self.authorize_request(pan, amount_minor, pb::CaptureMode::Sale);
        request.context =
            Some(self.context_at(&self.target.store_id, &self.target.pin_terminal_id));
        request.card.as_mut().expect("a card").pin = Some(self.pin_block(pan, pin)?);
        Ok(request)
    }

    /// `pin` for `pan` as the PIN pad of the PIN terminal sends it.
    ///
    /// # Errors
    ///
    /// When the configured PIN key cannot encrypt (malformed).
    pub fn pin_block(&self, pan: &str, pin: &str) -> anyhow::Result<pb::PinBlock> {
        Ok(pb::PinBlock {
            format: pb::PinBlockFormat::Iso0.into(),
            block_hex: card::iso0_pin_block_hex(pin, pan, &self.target.pin_key_hex)?,
            key_id: self.target.pin_key_id.clone(),
            ksn_hex: String::new(),
        })
    }

    /// A Capture of `transaction_id` for `amount_minor` with a fresh key.
    #[must_use]
    pub fn capture_request(&self, transaction_id: &str, amount_minor: i64) -> pb::CaptureRequest {
        pb::CaptureRequest {
            context: Some(self.tw_context()),
            transaction_id: transaction_id.to_owned(),
            amount: Some(self.card_money(amount_minor)),
        }
    }

    /// A Void of `transaction_id` with a fresh key.
    #[must_use]
    pub fn void_request(&self, transaction_id: &str) -> pb::VoidRequest {
        pb::VoidRequest {
            context: Some(self.tw_context()),
            transaction_id: transaction_id.to_owned(),
            reason: "conformance test: customer changed mind".to_owned(),
        }
    }

    /// A Refund of `amount_minor` of `transaction_id` with a fresh key, no card.
    #[must_use]
    pub fn refund_request(&self, transaction_id: &str, amount_minor: i64) -> pb::CardRefundRequest {
        pb::CardRefundRequest {
            context: Some(self.tw_context()),
            original_transaction_id: transaction_id.to_owned(),
            amount: Some(self.card_money(amount_minor)),
            reason: "conformance test: item returned".to_owned(),
            card: None,
        }
    }

    /// A `GetTransaction` by id from `store_id` (the suite's terminal).
    #[must_use]
    pub fn get_transaction_request(
        &self,
        store_id: &str,
        transaction_id: &str,
    ) -> pb::GetTransactionRequest {
        pb::GetTransactionRequest {
            context: Some(self.context_at(store_id, &self.target.terminal_id)),
            lookup: Some(pb::get_transaction_request::Lookup::TransactionId(
                transaction_id.to_owned(),
            )),
        }
    }

    /// A `GetTransaction` for the transaction `context`'s call created.
    #[must_use]
    pub fn get_by_created_key(context: &pb::RequestContext) -> pb::GetTransactionRequest {
        pb::GetTransactionRequest {
            context: Some(pb::RequestContext {
                client_request_id: Self::new_key(),
                pos_timestamp: Some(now_timestamp()),
                ..context.clone()
            }),
            lookup: Some(pb::get_transaction_request::Lookup::CreatedClientRequestId(
                context.client_request_id.clone(),
            )),
        }
    }

    pub async fn authorize(
        &self,
        request: &pb::AuthorizeRequest,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        retry_shed(|| {
            let mut client = PaymentServiceClient::new(self.channel_for(request.context.as_ref()));
            let request = request.clone();
            async move { client.authorize(request).await }
        })
        .await
    }

    pub async fn capture(
        &self,
        request: &pb::CaptureRequest,
    ) -> Result<Response<pb::CaptureResponse>, Status> {
        retry_shed(|| {
            let mut client = PaymentServiceClient::new(self.channel_for(request.context.as_ref()));
            let request = request.clone();
            async move { client.capture(request).await }
        })
        .await
    }

    pub async fn void(
        &self,
        request: &pb::VoidRequest,
    ) -> Result<Response<pb::VoidResponse>, Status> {
        retry_shed(|| {
            let mut client = PaymentServiceClient::new(self.channel_for(request.context.as_ref()));
            let request = request.clone();
            async move { client.void(request).await }
        })
        .await
    }

    pub async fn refund(
        &self,
        request: &pb::CardRefundRequest,
    ) -> Result<Response<pb::CardRefundResponse>, Status> {
        retry_shed(|| {
            let mut client = PaymentServiceClient::new(self.channel_for(request.context.as_ref()));
            let request = request.clone();
            async move { client.refund(request).await }
        })
        .await
    }

    pub async fn get_transaction(
        &self,
        request: &pb::GetTransactionRequest,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        retry_shed(|| {
            let mut client = PaymentServiceClient::new(self.channel_for(request.context.as_ref()));
            let request = request.clone();
            async move { client.get_transaction(request).await }
        })
        .await
    }
}

/// Calls until the answer is not `RESOURCE_EXHAUSTED`, at most
/// [`MAX_SHED_RETRIES`] extra times, waiting as the gateway's RetryInfo asks.
async fn retry_shed<T, F, Fut>(mut call: F) -> Result<Response<T>, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let mut retries = 0;
    loop {
        match call().await {
            Err(status)
                if status.code() == Code::ResourceExhausted && retries < MAX_SHED_RETRIES =>
            {
                let delay = status
                    .get_error_details()
                    .retry_info()
                    .and_then(|info| info.retry_delay)
                    .unwrap_or(DEFAULT_SHED_DELAY)
                    .min(MAX_SHED_DELAY);
                tokio::time::sleep(delay).await;
                retries += 1;
            }
            answer => return answer,
        }
    }
}

/// Today's date in UTC; slips fall due far enough away that time zones do not matter.
#[must_use]
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// Now as a protobuf timestamp.
#[must_use]
pub fn now_timestamp() -> prost_types::Timestamp {
    timestamp_at(Utc::now())
}

/// An instant as a protobuf timestamp.
#[must_use]
pub fn timestamp_at(at: chrono::DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).expect("nanoseconds are below 1e9"),
    }
}

/// 62 random bits, from a v7 UUID's random part (no extra dependency).
fn random_u64() -> u64 {
    // The low 62 bits of a v7 UUID are random ("rand_b").
    let low = uuid::Uuid::now_v7().as_u128() & ((1 << 62) - 1);
    u64::try_from(low).expect("62 bits fit in u64")
}
