//! The error every config section reports, assembled or not.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML for posgate: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config value {key}: {reason}")]
    Invalid { key: String, reason: String },
}
