//! `LinkCard` and `UnlinkCard`: a wallet's link to a co-brand card, which
//! its issuer verifies (a zero-amount account verification) and which keeps
//! the card only as an HSM token, for auto-reload.

use chrono::{DateTime, Utc};

use super::checks::CheckedWallet;
use super::error::WalletError;
use super::service::{WalletService, key_of, read_balance};
use super::tokens::seal_card;
use crate::cards::card::{PresentedCard, brand_name};
use crate::cards::{
    BankOutcome, CheckedCard, Draft, Outgoing, Payments, check_card, draft, send_financial, up_link,
};
use crate::model::RequestContext;
use crate::model::card::{CardRecord, CardRouteKind, CardType};
use crate::model::idempotency::{Answered, FingerprintBuilder};
use crate::model::link::{CardLink, LinkStatus};
use crate::model::transaction::TransactionStatus;
use crate::model::wallet::{LinkedCard, UnlinkedCard};
use crate::model::{IdempotencyKey, RequestFingerprint, StoredAnswer};
use crate::ports::db::{AnsweredKey, LinkWrite};

/// A `LinkCard` request, read and checked for shape and against the operator.
#[derive(Debug)]
pub struct LinkInput {
    pub context: RequestContext,
    pub wallet: CheckedWallet,
    pub card: PresentedCard,
    pub auto_reload: bool,
    /// The auto-reload step (0 when auto-reload is off).
    pub step_minor: i64,
}

/// An `UnlinkCard` request.
#[derive(Debug)]
pub struct UnlinkInput {
    pub context: RequestContext,
    pub wallet: CheckedWallet,
    pub reason: String,
}

fn already_linked() -> WalletError {
    WalletError::refused(
        "ALREADY_LINKED",
        "wallet",
        "the wallet already has a card link: UnlinkCard first",
    )
}

fn not_linked() -> WalletError {
    WalletError::refused("NOT_LINKED", "wallet", "the wallet has no active card link")
}

impl WalletService {
    /// `LinkCard`: the card must be a co-brand card the issuer verifies; the
    /// link keeps a token, never the PAN.
    // Checks, then the issuer, then the token and the row, in that order.
    #[allow(clippy::too_many_lines)]
    pub async fn link_card(&self, input: LinkInput) -> Result<Answered<LinkedCard>, WalletError> {
        let Some(payments) = self.payments.as_ref() else {
            return Err(WalletError::refused(
                "CARDS_NOT_CONFIGURED",
                "gateway",
                "this gateway takes no card payments (no [card] configuration)",
            ));
        };
        let now = self.now();
        let LinkInput {
            context,
            wallet,
            card,
            auto_reload,
            step_minor,
        } = input;
        let operator = &wallet.operator;
        let digest = payments.keyed_digest(&card.digest_parts()).await?;
        let fingerprint = FingerprintBuilder::new("WalletService/LinkCard")
            .value("wallet.wallet_operator_id", &operator.config.id)
            .value(
                "wallet.id",
                self.wallet_fingerprint(operator, &wallet.id).await?,
            )
            .value("card", hex::encode(digest))
            .value("auto_reload", format!("{auto_reload} {step_minor}"))
            .finish();
        let key = key_of(&context);
        if let Some(answer) = self.prior(&key, &fingerprint).await? {
            return Ok(Answered::Replayed(answer));
        }
        if auto_reload && operator.config.reload_steps_minor.is_empty() {
            return Err(WalletError::refused(
                "AUTO_RELOAD_NOT_OFFERED",
                "auto_reload.enabled",
                format!("{} does not offer auto-reload", operator.config.name),
            ));
        }
        let calendar = self.calendar(&context.store_id);
        let checked = check_card(payments, &context, &card, calendar.local_date(now)).await?;
        if checked.route.kind != CardRouteKind::CoBrandIssuer {
            return Err(WalletError::refused(
                "NOT_CO_BRAND_CARD",
                "card",
                "only the chain's co-brand cards can be linked to a wallet",
            ));
        }
        let balance = read_balance(operator, &wallet.wire, true).await?;
        let account_id = balance.wallet.account_id.clone();
        if self
            .db
            .active_link(&operator.config.id, &account_id)
            .await?
            .is_some()
        {
            return Err(already_linked());
        }
        let (brand, route_link) = (checked.brand, checked.route.link.clone());
        let (verification, approved) = self
            .verify_card(payments, &context, &wallet, &card, checked, now)
            .await?;
        let link_id = uuid::Uuid::now_v7().to_string();
        let (token, version) = if approved {
            seal_card(
                self.wallets.hsm.as_ref(),
                &operator.config.card_token_key,
                &link_id,
                &card,
            )
            .await?
        } else {
            (Vec::new(), 0)
        };
        let record = CardLink {
            link_id: link_id.clone(),
            status: if approved {
                LinkStatus::Active
            } else {
                LinkStatus::Declined
            },
            wallet_operator_id: operator.config.id.clone(),
            wallet_ref: account_id.clone(),
            account_id,
            display_id: balance.wallet.display_id.clone(),
            masked_pan: card.pan.masked(),
            pan_fingerprint: payments.fingerprint(&card.pan).await?,
            card_brand: brand_name(brand).to_owned(),
            card_link: route_link,
            token: posgate_hsm::Secret::new(token),
            token_key: operator.config.card_token_key.clone(),
            token_key_version: version,
            auto_reload,
            step_minor: if auto_reload { step_minor } else { 0 },
            currency: operator.config.currency.code.to_owned(),
            store_id: context.store_id.clone(),
            terminal_id: context.terminal_id.clone(),
            operator_id: context.operator_id.clone(),
            client_request_id: context.client_request_id.clone(),
            linked_at: now,
            unlinked_at: None,
            unlink_reason: None,
        };
        let linked = LinkedCard {
            link: record,
            operator_name: operator.config.name.clone(),
            verification,
            approved,
        };
        let answer = self.answered_key(&key, &fingerprint, self.answers.linked(&linked), now);
        match self.db.insert_link(&linked.link, &answer).await? {
            LinkWrite::Written => {
                tracing::info!(link_id = %linked.link.link_id, status = linked.link.status.as_str(), "wallet card link stored");
                Ok(Answered::New(linked))
            }
            LinkWrite::KeyTaken => self.taken_key(&key, &fingerprint).await,
            LinkWrite::Conflict => Err(already_linked()),
        }
    }

    /// `UnlinkCard`: ends the wallet's active card link.
    pub async fn unlink_card(
        &self,
        input: UnlinkInput,
    ) -> Result<Answered<UnlinkedCard>, WalletError> {
        let now = self.now();
        let UnlinkInput {
            context,
            wallet,
            reason,
        } = input;
        let operator = &wallet.operator;
        let fingerprint = FingerprintBuilder::new("WalletService/UnlinkCard")
            .value("wallet.wallet_operator_id", &operator.config.id)
            .value(
                "wallet.id",
                self.wallet_fingerprint(operator, &wallet.id).await?,
            )
            .value("reason", &reason)
            .finish();
        let key = key_of(&context);
        if let Some(answer) = self.prior(&key, &fingerprint).await? {
            return Ok(Answered::Replayed(answer));
        }
        let balance = read_balance(operator, &wallet.wire, false).await?;
        let mut link = self
            .db
            .active_link(&operator.config.id, &balance.wallet.account_id)
            .await?
            .ok_or_else(not_linked)?;
        link.status = LinkStatus::Unlinked;
        link.unlinked_at = Some(now);
        link.unlink_reason = Some(reason.clone());
        let unlinked = UnlinkedCard {
            link,
            operator_name: operator.config.name.clone(),
        };
        let answer = self.answered_key(&key, &fingerprint, self.answers.unlinked(&unlinked), now);
        match self
            .db
            .unlink(&unlinked.link.link_id, &reason, &answer)
            .await?
        {
            LinkWrite::Written => Ok(Answered::New(unlinked)),
            LinkWrite::KeyTaken => self.taken_key(&key, &fingerprint).await,
            LinkWrite::Conflict => Err(not_linked()),
        }
    }

    /// A key claimed with its answer at once (a link change).
    fn answered_key(
        &self,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        response: Vec<u8>,
        now: DateTime<Utc>,
    ) -> AnsweredKey {
        AnsweredKey {
            key: key.clone(),
            fingerprint: fingerprint.clone(),
            response,
            at: now,
            expires_at: now + self.retention,
        }
    }

    /// A concurrent duplicate took the key first: its answer, as a retry's.
    async fn taken_key<T>(
        &self,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<Answered<T>, WalletError> {
        let answer: StoredAnswer = self
            .prior(key, fingerprint)
            .await?
            .ok_or(WalletError::KeyReleased)?;
        Ok(Answered::Replayed(answer))
    }

    /// The zero-amount account verification of a co-brand card at its
    /// issuer: no hold and no money, so nothing to record or reverse.
    /// Returns the verification (for the answer) and whether the issuer
    /// approved.
    async fn verify_card(
        &self,
        payments: &Payments,
        context: &RequestContext,
        wallet: &CheckedWallet,
        card: &PresentedCard,
        checked: CheckedCard,
        now: DateTime<Utc>,
    ) -> Result<(CardRecord, bool), WalletError> {
        let calendar = self.calendar(&context.store_id);
        let (link, link_config) = up_link(payments, &checked.route.link)?;
        let stan = payments
            .next_stan(self.db.as_ref(), &checked.route.link, now)
            .await?;
        let id = uuid::Uuid::now_v7();
        let mut verification = draft(&Draft {
            context,
            id: &id,
            card_type: CardType::Authorization,
            stan,
            link_id: &checked.route.link,
            amount: 0,
            currency: wallet.operator.config.currency.code,
            business_date: calendar.business_date(now),
            now,
        });
        verification.status = TransactionStatus::InProgress;
        verification.masked_pan = card.pan.masked();
        brand_name(checked.brand).clone_into(&mut verification.card_brand);
        verification.route = checked.route.kind;
        card.entry_mode
            .as_str()
            .clone_into(&mut verification.entry_mode);
        verification.merchant_id = payments.config.merchant_id(&context.store_id);
        let outgoing = Outgoing {
            link,
            acquirer_id: &link_config.acquirer_id,
            pin_block: checked.pin_block,
            original: None,
        };
        let outcome = send_financial(
            self.store_config(&context.store_id),
            &verification,
            Some(card),
            &outgoing,
            now,
        )
        .await;
        let approved = match &outcome {
            BankOutcome::Answered(response) => {
                response
                    .response_code
                    .as_str()
                    .clone_into(&mut verification.response_code);
                verification.approval_code = response.approval_code.clone().unwrap_or_default();
                response.response_code.is_approved()
            }
            BankOutcome::Unknown(reason)
            | BankOutcome::NotSent(reason)
            | BankOutcome::NotBuilt(reason) => {
                tracing::warn!(link = %checked.route.link, %reason, "card verification got no answer; nothing linked");
                return Err(WalletError::partner_unavailable(checked.route.link.clone()));
            }
        };
        Ok((verification, approved))
    }
}
