//! The partner connectors: `posgate-partners`' signed HTTP API clients built
//! from config and put behind the core's ports
//! ([`posgate_core::ports::partners`]). The only place in the gateway that
//! names those clients; the services hold `Arc<dyn WalletOperator>` and
//! `Arc<dyn Biller>`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use posgate_core::bill::config::{BillerConfig, OnlineBillerConfig};
use posgate_core::bill::online::{OnlineBiller, OnlineBillers};
use posgate_core::ports::partners::{Biller, WalletOperator};
use posgate_core::wallet::config::WalletOperatorConfig;
use posgate_core::wallet::{Operator, Wallets};
use posgate_hsm::Hsm;
use posgate_partners::bill::BillCallError;
use posgate_partners::bill::api::{
    Bill, BillCancelRequest, BillCancelResult, BillInquiryRequest, BillPaymentNotice,
    BillPaymentResult,
};
use posgate_partners::bill::client::BillerClient;
use posgate_partners::http::{
    BreakerState, ClientSettings, PartnerClient, Signer, TlsFiles, Verifier,
};
use posgate_partners::wallet::WalletCallError;
use posgate_partners::wallet::api::{
    PaymentRequest, RefundRequest, ReversalResult, TopUpRequest, TransactionStatus, WalletBalance,
    WalletRef, WalletResult,
};
use posgate_partners::wallet::client::WalletOperatorClient;

/// Builds a client per wallet operator (connections open lazily). Fails on
/// unreadable TLS files.
pub fn wallets(configs: &[WalletOperatorConfig], hsm: &Arc<dyn Hsm>) -> Result<Wallets, String> {
    let mut operators = BTreeMap::new();
    for config in configs {
        operators.insert(
            config.id.clone(),
            Arc::new(Operator {
                config: config.clone(),
                client: wallet_operator(config, hsm)?,
            }),
        );
    }
    Ok(Wallets {
        operators,
        hsm: Arc::clone(hsm),
    })
}

/// Builds the client of one wallet operator (connections open lazily).
/// Fails on unreadable TLS files.
pub fn wallet_operator(
    config: &WalletOperatorConfig,
    hsm: &Arc<dyn Hsm>,
) -> Result<Arc<dyn WalletOperator>, String> {
    let tls = TlsFiles {
        ca_cert: config.ca_cert.clone(),
        cert: config.client_cert.clone(),
        key: config.client_key.clone(),
    };
    let mut settings = ClientSettings::new(config.party(), config.url.clone(), tls);
    settings.request_timeout = config.request_timeout;
    settings.max_attempts = config.max_attempts;
    let signer = Signer::new(
        Arc::clone(hsm),
        config.signing_key.clone(),
        config.key_id.clone(),
    );
    let verifier = Verifier::new(HashMap::from([(
        config.operator_key_id.clone(),
        config.operator_public_key,
    )]));
    let client = PartnerClient::new(settings, signer, Arc::new(verifier))
        .map_err(|error| format!("wallet operator {}: {error}", config.id))?;
    Ok(Arc::new(WalletOperatorConnector(
        WalletOperatorClient::new(client),
    )))
}

/// The online billers of the configuration, each with its connector
/// (connections open lazily). Fails on unreadable TLS files.
pub fn online_billers(
    billers: &[BillerConfig],
    hsm: &Arc<dyn Hsm>,
) -> Result<OnlineBillers, String> {
    let mut online = Vec::new();
    for biller in billers {
        let Some(config) = &biller.online else {
            continue;
        };
        online.push(OnlineBiller {
            id: biller.id.clone(),
            config: config.clone(),
            client: self::biller(&biller.id, config, hsm)?,
        });
    }
    Ok(OnlineBillers::new(online))
}

/// Builds the client of one online biller (connections open lazily).
/// Fails on unreadable TLS files.
pub fn biller(
    biller_id: &str,
    config: &OnlineBillerConfig,
    hsm: &Arc<dyn Hsm>,
) -> Result<Arc<dyn Biller>, String> {
    let tls = TlsFiles {
        ca_cert: config.ca_cert.clone(),
        cert: config.client_cert.clone(),
        key: config.client_key.clone(),
    };
    let mut settings = ClientSettings::new(
        posgate_core::model::Party::Biller(biller_id.to_owned()).to_string(),
        config.url.clone(),
        tls,
    );
    settings.request_timeout = config.request_timeout;
    settings.max_attempts = config.max_attempts;
    let signer = Signer::new(
        Arc::clone(hsm),
        config.signing_key.clone(),
        config.key_id.clone(),
    );
    let verifier = Verifier::new(HashMap::from([(
        config.biller_key_id.clone(),
        config.biller_public_key,
    )]));
    let client = PartnerClient::new(settings, signer, Arc::new(verifier))
        .map_err(|error| format!("online biller {biller_id}: {error}"))?;
    Ok(Arc::new(BillerConnector(BillerClient::new(client))))
}

/// A wallet operator reached through [`WalletOperatorClient`].
#[derive(Debug)]
pub struct WalletOperatorConnector(pub WalletOperatorClient);

#[async_trait]
impl WalletOperator for WalletOperatorConnector {
    async fn top_up(&self, request: &TopUpRequest) -> Result<WalletResult, WalletCallError> {
        self.0.top_up(request).await
    }

    async fn pay(&self, request: &PaymentRequest) -> Result<WalletResult, WalletCallError> {
        self.0.pay(request).await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<WalletResult, WalletCallError> {
        self.0.refund(request).await
    }

    async fn reverse(
        &self,
        original_transaction_id: &str,
    ) -> Result<ReversalResult, WalletCallError> {
        self.0.reverse(original_transaction_id).await
    }

    async fn balance(&self, wallet: &WalletRef) -> Result<WalletBalance, WalletCallError> {
        self.0.balance(wallet).await
    }

    async fn status(
        &self,
        transaction_id: &str,
    ) -> Result<Option<TransactionStatus>, WalletCallError> {
        self.0.status(transaction_id).await
    }

    fn longest_call(&self) -> Duration {
        self.0.partner().longest_call()
    }

    fn breaker_state(&self) -> BreakerState {
        self.0.partner().breaker_state()
    }
}

/// An online biller reached through [`BillerClient`].
#[derive(Debug)]
pub struct BillerConnector(pub BillerClient);

#[async_trait]
impl Biller for BillerConnector {
    async fn inquire(&self, request: &BillInquiryRequest) -> Result<Option<Bill>, BillCallError> {
        self.0.inquire(request).await
    }

    async fn notify(&self, notice: &BillPaymentNotice) -> Result<BillPaymentResult, BillCallError> {
        self.0.notify(notice).await
    }

    async fn cancel(&self, request: &BillCancelRequest) -> Result<BillCancelResult, BillCallError> {
        self.0.cancel(request).await
    }

    async fn status(
        &self,
        transaction_id: &str,
    ) -> Result<Option<TransactionStatus>, BillCallError> {
        self.0.status(transaction_id).await
    }

    fn longest_call(&self) -> Duration {
        self.0.partner().longest_call()
    }

    fn breaker_state(&self) -> BreakerState {
        self.0.partner().breaker_state()
    }
}
