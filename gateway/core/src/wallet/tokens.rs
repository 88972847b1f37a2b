//! Card-on-file tokens: a linked card's PAN and expiry enciphered in the
//! HSM, bound to its link; opened for one authorization at a time.

use posgate_hsm::{CardExpiry, Hsm, HsmError, KeyRef, Pan};
use zeroize::Zeroizing;

use crate::cards::card::{EntryMode, PresentedCard};
use crate::model::link::CardLink;

/// The additional data a card token is bound to: its link.
fn token_aad(link_id: &str) -> String {
    format!("posgate card link v1 {link_id}")
}

/// Enciphers the card's PAN and expiry in the HSM under `key_label`: the
/// card-on-file token of link `link_id`. Returns the token and key version.
pub async fn seal_card(
    hsm: &dyn Hsm,
    key_label: &str,
    link_id: &str,
    card: &PresentedCard,
) -> Result<(Vec<u8>, i64), HsmError> {
    let clear = Zeroizing::new(format!("{}={}", card.pan.digits(), card.expiry.to_yymm()));
    let tag = hsm
        .encrypt_data(
            &KeyRef::latest(key_label),
            clear.as_bytes(),
            token_aad(link_id).as_bytes(),
        )
        .await?;
    Ok((tag.bytes, i64::from(tag.key_version)))
}

/// The card of a link, deciphered in the HSM, for one authorization.
pub async fn open_card(hsm: &dyn Hsm, link: &CardLink) -> Result<PresentedCard, HsmError> {
    let version = u32::try_from(link.token_key_version)
        .map_err(|_| HsmError::InvalidInput("bad token key version".to_owned()))?;
    let clear = hsm
        .decrypt_data(
            &KeyRef::version(&link.token_key, version),
            link.token.expose(),
            token_aad(&link.link_id).as_bytes(),
        )
        .await?;
    let text = std::str::from_utf8(&clear)
        .map_err(|_| HsmError::InvalidInput("card token is not text".to_owned()))?;
    let (pan, expiry) = text
        .split_once('=')
        .ok_or_else(|| HsmError::InvalidInput("card token layout".to_owned()))?;
    Ok(PresentedCard {
        pan: Pan::parse(pan).map_err(|_| HsmError::InvalidInput("card token PAN".to_owned()))?,
        expiry: CardExpiry::parse(expiry)
            .map_err(|_| HsmError::InvalidInput("card token expiry".to_owned()))?,
        entry_mode: EntryMode::Keyed,
        track2: None,
        pin: None,
        icc_data: None,
        security_code: None,
        service_code: None,
    })
}
