//! Bill payments as the bill service returns them: the stored record with
//! the name of its biller (the POS shows both).

use super::transaction::TransactionRecord;

/// A bill payment: its record and its biller's display name (empty when
/// the biller is no longer configured).
#[derive(Debug, Clone)]
pub struct BillPayment {
    pub record: TransactionRecord,
    pub biller_name: String,
}
