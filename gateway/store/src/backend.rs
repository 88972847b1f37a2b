//! [`Backend`]: the two sqlx databases the store runs on. The statements
//! are written once, as functions generic over the backend; each function's
//! `where` clause names the sqlx bounds it needs (the Rust types it binds
//! and decodes), which both [`sqlx::Sqlite`] and [`sqlx::Postgres`] meet.

/// A sqlx database the store runs on: [`sqlx::Sqlite`] or [`sqlx::Postgres`].
pub(crate) trait Backend: sqlx::Database {}

impl Backend for sqlx::Sqlite {}

impl Backend for sqlx::Postgres {}
