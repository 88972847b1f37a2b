//! Typed calls to one online biller over the signed partner API. A payment
//! notice and a cancel use posgate's transaction id as their Idempotency-Key,
//! so a retry after a lost answer is applied once by the biller.

use super::BillCallError;
use super::api::{
    self, Bill, BillCancelRequest, BillCancelResult, BillInquiryRequest, BillInquiryResponse,
    BillPaymentNotice, BillPaymentResult,
};
use crate::api::TransactionStatus;
use crate::http::json;
use crate::http::signature::new_nonce;
use crate::http::{ApiCallError, PartnerClient};

/// One online biller.
#[derive(Debug)]
pub struct BillerClient {
    client: PartnerClient,
}

impl BillerClient {
    pub fn new(client: PartnerClient) -> Self {
        Self { client }
    }

    pub fn partner(&self) -> &PartnerClient {
        &self.client
    }

    /// Looks a bill up (a read: its Idempotency-Key is fresh per call);
    /// `None` when the biller does not know it.
    pub async fn inquire(
        &self,
        request: &BillInquiryRequest,
    ) -> Result<Option<Bill>, BillCallError> {
        let key = format!("inquiry:{}", new_nonce());
        match json::post::<_, BillInquiryResponse>(&self.client, api::INQUIRIES_PATH, &key, request)
            .await
        {
            Ok(response) => Ok(Some(response.bill)),
            Err(ApiCallError::Rejected { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Tells the biller a bill was paid; applied once per transaction id.
    pub async fn notify(
        &self,
        notice: &BillPaymentNotice,
    ) -> Result<BillPaymentResult, BillCallError> {
        json::post(
            &self.client,
            api::PAYMENTS_PATH,
            &notice.transaction_id,
            notice,
        )
        .await
    }

    /// Cancels a notice the same business day; applied once per transaction id.
    pub async fn cancel(
        &self,
        request: &BillCancelRequest,
    ) -> Result<BillCancelResult, BillCallError> {
        json::post(
            &self.client,
            api::CANCELLATIONS_PATH,
            &request.transaction_id,
            request,
        )
        .await
    }

    /// The biller's view of a notice or cancel; `None` when it never received it.
    pub async fn status(
        &self,
        transaction_id: &str,
    ) -> Result<Option<TransactionStatus>, BillCallError> {
        json::transaction_status(&self.client, transaction_id).await
    }
}
