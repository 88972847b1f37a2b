//! `posgate keys`: key management for operators and key custodians.
//!
//! Every command goes through `posgate_hsm`'s public API, so nothing here
//! ever sees key material: `list` shows label, type, usage, version and KCV;
//! `public` prints the public halves of signing keys (what auditors and
//! partners verify checkpoints and clearing files with); `export` writes a
//! key wrapped under a ZMK/KEK with both KCVs.
//!
//! Backends: `--backend software` (default) opens the keystore file named by
//! `--keystore` / `POSGATE_HSM_KEYSTORE`, sealed under the master key from
//! `--master-key-file` or `POSGATE_HSM_MASTER_KEY`. `--backend pkcs11` reads
//! `POSGATE_PKCS11_MODULE`, `POSGATE_PKCS11_TOKEN` and `POSGATE_PKCS11_PIN`
//! (or `POSGATE_PKCS11_PIN_FILE`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use posgate_hsm::keys::KeyRef;
use posgate_hsm::keystore::MASTER_KEY_ENV;
use posgate_hsm::{
    Hsm, Kcv, KeySpec, KeyType, KeyUsage, MasterKey, Pkcs11Config, Pkcs11Hsm, SoftwareHsm,
    WrappedKey,
};

/// Arguments of `posgate keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// Which HSM holds the keys.
    #[arg(long, value_enum, default_value_t = Backend::Software, global = true)]
    backend: Backend,
    /// The software HSM's keystore file.
    #[arg(long, env = "POSGATE_HSM_KEYSTORE", global = true)]
    keystore: Option<PathBuf>,
    /// A file holding the keystore master key (64 hex digits); otherwise `POSGATE_HSM_MASTER_KEY`.
    #[arg(long, global = true)]
    master_key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Software,
    Pkcs11,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Create an empty keystore; with --master-key-file naming a new file, also create the master key there.
    Init,
    /// Create a keystore holding the published TEST keys of the demo and the
    /// example config (never for production), and write its master key to
    /// --master-key-file.
    InitTest,
    /// Generate version 1 of a new key.
    Generate {
        #[arg(long)]
        label: String,
        /// tdes2, aes256, ed25519, ecdsa-p256 or hmac-sha256.
        #[arg(long = "type")]
        key_type: String,
        /// mac, pin, kek, sign, hmac or data.
        #[arg(long)]
        usage: String,
    },
    /// List every key version: label, type, usage, version, KCV. Never material.
    List,
    /// Print the public keys of the signing keys (every kept version): key id
    /// (`label:version`, as in checkpoints' `key_id` and `.sig` files),
    /// algorithm, KCV, the raw key in hex and the `SubjectPublicKeyInfo` as PEM.
    Public {
        /// Only this key (e.g. `audit-sign` or `clearing-sign`).
        #[arg(long)]
        label: Option<String>,
    },
    /// Generate the next version of a key; older versions keep verifying.
    Rotate {
        #[arg(long)]
        label: String,
    },
    /// Write a key wrapped under a ZMK/KEK as JSON (stdout, or --out).
    Export {
        #[arg(long)]
        label: String,
        /// Label of the key-encryption key (a tdes2/kek ZMK or an aes256/kek).
        #[arg(long)]
        kek: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Import a wrapped key (the JSON `export` writes) under a ZMK/KEK.
    Import {
        #[arg(long)]
        label: String,
        #[arg(long)]
        kek: String,
        #[arg(long)]
        file: PathBuf,
    },
}

/// Runs `posgate keys`.
pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    if matches!(args.command, KeysCommand::Init) {
        return init(&args);
    }
    if matches!(args.command, KeysCommand::InitTest) {
        let keystore = keystore_path(&args)?;
        let master = args
            .master_key_file
            .as_deref()
            .context("init-test needs --master-key-file")?;
        create_parent_dir(keystore)?;
        create_parent_dir(master)?;
        posgate_sims::test_keys::write_test_keystore(keystore, master).await?;
        println!(
            "created {} with the published TEST keys (never use them in production)",
            keystore.display()
        );
        return Ok(());
    }
    let hsm = open(&args)?;
    match args.command {
        KeysCommand::Init | KeysCommand::InitTest => unreachable!("handled above"),
        KeysCommand::Generate {
            label,
            key_type,
            usage,
        } => {
            let spec = KeySpec::new(KeyType::parse(&key_type)?, KeyUsage::parse(&usage)?)?;
            let info = hsm.generate_key(&label, spec).await?;
            println!(
                "generated {} v{} ({}) KCV {}",
                info.label, info.version, info.spec, info.kcv
            );
        }
        KeysCommand::List => {
            println!("{:<40} {:<24} {:>7}  KCV", "LABEL", "TYPE/USAGE", "VERSION");
            for info in hsm.list_keys().await? {
                println!(
                    "{:<40} {:<24} {:>7}  {}",
                    info.label,
                    info.spec.to_string(),
                    info.version,
                    info.kcv
                );
            }
        }
        KeysCommand::Public { label } => {
            let versions =
                posgate_core::audit::signing_keys::versions(hsm.as_ref(), label.as_deref()).await?;
            if versions.is_empty() {
                bail!(
                    "no signing key{}",
                    label.map(|l| format!(" labelled {l}")).unwrap_or_default()
                );
            }
            for version in versions {
                println!(
                    "{} {} KCV {} public {}\n{}",
                    version.key_id(),
                    version.public.algorithm(),
                    version.public.kcv(),
                    hex::encode(version.public.as_bytes()),
                    version.public.spki_pem()
                );
            }
        }
        KeysCommand::Rotate { label } => {
            let info = hsm.rotate_key(&label).await?;
            println!(
                "rotated {} to v{} KCV {}",
                info.label, info.version, info.kcv
            );
        }
        KeysCommand::Export { label, kek, out } => {
            let wrapped = hsm
                .wrap_key(&KeyRef::latest(&label), &KeyRef::latest(&kek))
                .await?;
            let text = wrapped_to_json(&wrapped)?;
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => println!("{text}"),
            }
        }
        KeysCommand::Import { label, kek, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let wrapped = wrapped_from_json(&text)?;
            let info = hsm
                .unwrap_key(&label, &wrapped, &KeyRef::latest(&kek))
                .await?;
            println!(
                "imported {} v{} ({}) KCV {}",
                info.label, info.version, info.spec, info.kcv
            );
        }
    }
    Ok(())
}

fn keystore_path(args: &KeysArgs) -> anyhow::Result<&Path> {
    args.keystore
        .as_deref()
        .context("the software backend needs --keystore or POSGATE_HSM_KEYSTORE")
}

fn master_key(args: &KeysArgs) -> anyhow::Result<MasterKey> {
    Ok(match &args.master_key_file {
        Some(path) => MasterKey::from_file(path)?,
        None => MasterKey::from_env(MASTER_KEY_ENV)?,
    })
}

fn init(args: &KeysArgs) -> anyhow::Result<()> {
    if args.backend == Backend::Pkcs11 {
        bail!(
            "a PKCS#11 token is initialized with the vendor's tools; posgate only needs its label and PIN"
        );
    }
    let path = keystore_path(args)?;
    create_parent_dir(path)?;
    let master = match &args.master_key_file {
        Some(file) if !file.exists() => {
            create_parent_dir(file)?;
            let (master, text) = MasterKey::generate()?;
            write_private(file, &text)?;
            println!(
                "wrote a new master key to {} (back it up; without it the keystore is lost)",
                file.display()
            );
            master
        }
        _ => master_key(args)?,
    };
    SoftwareHsm::create(path, master)?;
    println!("created keystore {}", path.display());
    Ok(())
}

/// Creates the directory a file goes in, if missing (`keys/` on first use).
fn create_parent_dir(path: &Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .with_context(|| format!("creating directory {}", dir.display())),
        _ => Ok(()),
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn open(args: &KeysArgs) -> anyhow::Result<Arc<dyn Hsm>> {
    Ok(match args.backend {
        Backend::Software => Arc::new(SoftwareHsm::open(keystore_path(args)?, master_key(args)?)?),
        Backend::Pkcs11 => Arc::new(Pkcs11Hsm::connect(&Pkcs11Config::from_env()?)?),
    })
}

/// The exchange file: spec, both KCVs, ciphertext in hex.
fn wrapped_to_json(wrapped: &WrappedKey) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "format": "posgate-wrapped-key/1",
        "key_type": wrapped.spec.key_type().as_str(),
        "usage": wrapped.spec.usage().as_str(),
        "kcv": wrapped.kcv.to_string(),
        "kek_kcv": wrapped.kek_kcv.to_string(),
        "ciphertext": hex::encode_upper(&wrapped.ciphertext),
    }))?)
}

fn wrapped_from_json(text: &str) -> anyhow::Result<WrappedKey> {
    let value: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .with_context(|| format!("wrapped key file lacks {name:?}"))
    };
    if field("format")? != "posgate-wrapped-key/1" {
        bail!("unknown wrapped key format {:?}", field("format")?);
    }
    Ok(WrappedKey {
        spec: KeySpec::new(
            KeyType::parse(field("key_type")?)?,
            KeyUsage::parse(field("usage")?)?,
        )?,
        kcv: Kcv::parse(field("kcv")?)?,
        kek_kcv: Kcv::parse(field("kek_kcv")?)?,
        ciphertext: hex::decode(field("ciphertext")?).context("ciphertext is not hex")?,
    })
}
