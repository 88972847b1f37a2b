//! `posgate audit`: search, history, verify and export over AuditService
//! with an auditor's client certificate, and `bench`.
