//! Schema migrations, embedded in the binary from `migrations/sqlite/` and
//! `migrations/postgres/`. Each applies once, in order, in its own
//! transaction, and is recorded in `posgate_migrations`. A database with a
//! migration this binary does not know is refused (it was migrated by a
//! newer posgate).

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "transactions",
        sql: include_str!("../../../migrations/sqlite/0001_transactions.sql"),
    },
    Migration {
        version: 2,
        name: "card_payments",
        sql: include_str!("../../../migrations/sqlite/0002_card_payments.sql"),
    },
    Migration {
        version: 3,
        name: "clearing",
        sql: include_str!("../../../migrations/sqlite/0003_clearing.sql"),
    },
    Migration {
        version: 4,
        name: "reconciliation",
        sql: include_str!("../../../migrations/sqlite/0004_reconciliation.sql"),
    },
    Migration {
        version: 5,
        name: "card_sweep_index",
        sql: include_str!("../../../migrations/sqlite/0005_card_sweep_index.sql"),
    },
    Migration {
        version: 6,
        name: "settlement_line_facts",
        sql: include_str!("../../../migrations/sqlite/0006_settlement_line_facts.sql"),
    },
    Migration {
        version: 7,
        name: "audit_chain",
        sql: include_str!("../../../migrations/sqlite/0007_audit_chain.sql"),
    },
    Migration {
        version: 8,
        name: "wallet",
        sql: include_str!("../../../migrations/sqlite/0008_wallet.sql"),
    },
    Migration {
        version: 10,
        name: "wallet_reload",
        sql: include_str!("../../../migrations/sqlite/0010_wallet_reload.sql"),
    },
    Migration {
        version: 11,
        name: "stan_counters",
        sql: include_str!("../../../migrations/sqlite/0011_stan_counters.sql"),
    },
    Migration {
        version: 12,
        name: "bill_slip_claims",
        sql: include_str!("../../../migrations/sqlite/0012_bill_slip_claims.sql"),
    },
    Migration {
        version: 13,
        name: "leases",
        sql: include_str!("../../../migrations/sqlite/0013_leases.sql"),
    },
];

pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "transactions",
        sql: include_str!("../../../migrations/postgres/0001_transactions.sql"),
    },
    Migration {
        version: 2,
        name: "card_payments",
        sql: include_str!("../../../migrations/postgres/0002_card_payments.sql"),
    },
    Migration {
        version: 3,
        name: "clearing",
        sql: include_str!("../../../migrations/postgres/0003_clearing.sql"),
    },
    Migration {
        version: 4,
        name: "reconciliation",
        sql: include_str!("../../../migrations/postgres/0004_reconciliation.sql"),
    },
    Migration {
        version: 5,
        name: "card_sweep_index",
        sql: include_str!("../../../migrations/postgres/0005_card_sweep_index.sql"),
    },
    Migration {
        version: 6,
        name: "settlement_line_facts",
        sql: include_str!("../../../migrations/postgres/0006_settlement_line_facts.sql"),
    },
    Migration {
        version: 7,
        name: "audit_chain",
        sql: include_str!("../../../migrations/postgres/0007_audit_chain.sql"),
    },
    Migration {
        version: 8,
        name: "wallet",
        sql: include_str!("../../../migrations/postgres/0008_wallet.sql"),
    },
    Migration {
        version: 10,
        name: "wallet_reload",
        sql: include_str!("../../../migrations/postgres/0010_wallet_reload.sql"),
    },
    Migration {
        version: 11,
        name: "stan_counters",
        sql: include_str!("../../../migrations/postgres/0011_stan_counters.sql"),
    },
    Migration {
        version: 12,
        name: "bill_slip_claims",
        sql: include_str!("../../../migrations/postgres/0012_bill_slip_claims.sql"),
    },
    Migration {
        version: 13,
        name: "leases",
        sql: include_str!("../../../migrations/postgres/0013_leases.sql"),
    },
];

pub const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS posgate_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";
pub const SELECT_APPLIED: &str = "SELECT version FROM posgate_migrations ORDER BY version";
pub const RECORD: &str =
    "INSERT INTO posgate_migrations (version, name, applied_at) VALUES ($1, $2, $3)";

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "database has schema version {found}, newer than this posgate knows ({known}); upgrade posgate"
    )]
    TooNew { found: i64, known: i64 },
}

/// The migrations still to apply, given the versions already applied.
pub fn pending(
    all: &'static [Migration],
    applied: &[i64],
) -> Result<Vec<Migration>, MigrationError> {
    let known = all.last().map_or(0, |migration| migration.version);
    if let Some(&found) = applied.iter().find(|&&version| version > known) {
        return Err(MigrationError::TooNew { found, known });
    }
    Ok(all
        .iter()
        .copied()
        .filter(|migration| !applied.contains(&migration.version))
        .collect())
}

impl From<MigrationError> for super::StoreError {
    fn from(error: MigrationError) -> Self {
        super::StoreError::Migration(Box::new(error))
    }
}
