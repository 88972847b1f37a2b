//! The wallet scenarios: `topup` (a cash `WalletService.TopUp` of the
//! operator's top-up unit) and `wallet` (a `WalletService.Pay` of one major
//! unit), on one wallet card number (`--wallet-card`, by default the first
//! wallet of `config/wallet-sim.example.toml`), at the first wallet operator
//! enabled for the store. A DECLINED answer (balance short, limit reached)
//! is a valid answer, counted apart; anything else but COMPLETED is a failure.

use posgate_proto::v1::{
    CashFunding, Money, PayRequest, RequestContext, TopUpRequest, WalletRef, WalletTransaction,
    WalletTransactionStatus, top_up_request, wallet_ref,
};

use super::{Failure, Rng};
use posgate_core::config::Config;

/// Start of every `pos_reference` the load sends.
const POS_REFERENCE_PREFIX: &str = "LOAD-";

/// What a store's virtual terminals top up and pay with.
#[derive(Debug, Clone)]
pub(super) struct WalletRoute {
    operator_id: String,
    currency_code: &'static str,
    top_up_minor: i64,
    pay_minor: i64,
    card_number: String,
}

/// The wallet route of `store_id`: the first operator enabled there.
pub(super) fn wallet_route(
    config: &Config,
    store_id: &str,
    card_number: &str,
) -> Option<WalletRoute> {
    let operator = config
        .wallet_operators
        .iter()
        .find(|operator| operator.enabled_for(store_id))?;
    Some(WalletRoute {
        operator_id: operator.id.clone(),
        currency_code: operator.currency.code,
        top_up_minor: operator.top_up_unit_minor,
        pay_minor: i64::try_from(operator.currency.minor_per_major()).ok()?,
        card_number: card_number.to_owned(),
    })
}

impl WalletRoute {
    fn wallet(&self) -> WalletRef {
        WalletRef {
            wallet_operator_id: self.operator_id.clone(),
            id: Some(wallet_ref::Id::CardNumber(self.card_number.clone())),
        }
    }

    fn money(&self, amount_minor: i64) -> Money {
        Money {
            amount_minor,
            currency: self.currency_code.to_owned(),
        }
    }

    pub(super) fn top_up_request(&self, context: RequestContext) -> TopUpRequest {
        TopUpRequest {
            context: Some(context),
            wallet: Some(self.wallet()),
            amount: Some(self.money(self.top_up_minor)),
            funding: Some(top_up_request::Funding::Cash(CashFunding {})),
        }
    }

    pub(super) fn pay_request(&self, context: RequestContext, rng: &mut Rng) -> PayRequest {
        PayRequest {
            context: Some(context),
            wallet: Some(self.wallet()),
            amount: Some(self.money(self.pay_minor)),
            pos_reference: format!("{POS_REFERENCE_PREFIX}{}", rng.digits(12)),
        }
    }
}

/// What the operator made of a wallet call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WalletAnswer {
    Completed,
    Declined,
}

/// Classifies a wallet answer; any shape but COMPLETED or DECLINED is malformed.
pub(super) fn classify(transaction: Option<&WalletTransaction>) -> Result<WalletAnswer, Failure> {
    match transaction.map(WalletTransaction::status) {
        Some(WalletTransactionStatus::Completed) => Ok(WalletAnswer::Completed),
        Some(WalletTransactionStatus::Declined) => Ok(WalletAnswer::Declined),
        _ => Err(Failure::BadAnswer),
    }
}
