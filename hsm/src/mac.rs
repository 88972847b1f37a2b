//! MAC algorithms: ISO 9797-1 MAC algorithm 3 (the "retail MAC" of ISO 8583
//! links) and AES-CMAC (RFC 4493), with ISO 9797-1 padding methods 1 and 2.
//!
//! The functions over clear keys are crate-private: only the software backend
//! calls them. The PKCS#11 backend composes the same retail MAC from token
//! operations, using [`pad`] and [`split_last_block`] from here.

use aes::Aes256;
use cmac::{Cmac, Mac as _};
use des::Des;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use serde::{Deserialize, Serialize};

/// DES block size in bytes.
pub const DES_BLOCK_BYTES: usize = 8;

/// The largest message one MAC call covers. ISO 8583 messages are a few kilobytes;
/// the bound keeps a hostile length from turning into a large allocation.
pub const MAX_MAC_INPUT_BYTES: usize = 1 << 20;

/// The shortest MAC a verifier accepts: ISO 8583 links commonly send the
/// leftmost 4 bytes; anything shorter is too easy to guess.
pub const MIN_MAC_BYTES: usize = 4;

/// Padding per ISO 9797-1, as agreed per link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MacPadding {
    /// Method 1: zero bytes up to a block boundary (none if already aligned;
    /// one zero block for empty input).
    Method1,
    /// Method 2: one `0x80` byte, then zero bytes up to a block boundary.
    Method2,
}

/// Which MAC to compute. The key's type must match: TDES for the retail MAC,
/// AES for CMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MacAlgorithm {
    /// ISO 9797-1 MAC algorithm 3 with DES: CBC under K1, final block through
    /// DES-decrypt K2 and DES-encrypt K1. 8-byte MAC.
    RetailMac(MacPadding),
    /// AES-CMAC per RFC 4493 (ISO 9797-1 algorithm 5). 16-byte MAC.
    AesCmac,
}

impl MacAlgorithm {
    /// Length of the full MAC in bytes.
    #[must_use]
    pub fn mac_len_bytes(self) -> usize {
        match self {
            Self::RetailMac(_) => 8,
            Self::AesCmac => 16,
        }
    }
}

/// Pads `data` to whole DES blocks.
#[must_use]
pub fn pad(data: &[u8], padding: MacPadding) -> Vec<u8> {
    let mut padded = Vec::with_capacity(data.len() + DES_BLOCK_BYTES);
    padded.extend_from_slice(data);
    match padding {
        MacPadding::Method1 => {
            if padded.is_empty() {
                padded.resize(DES_BLOCK_BYTES, 0);
            }
        }
        MacPadding::Method2 => padded.push(0x80),
    }
    let remainder = padded.len() % DES_BLOCK_BYTES;
    if remainder != 0 {
        padded.resize(padded.len() + DES_BLOCK_BYTES - remainder, 0);
    }
    padded
}

/// Splits padded data into the blocks chained under K1 alone and the last block.
///
/// Retail MAC = TDES-EDE(K1K2, `H` xor last block), where `H` is the DES-CBC
/// MAC under K1 of the blocks before the last (zero if there are none): the
/// decrypt-K2/encrypt-K1 output step folded into one two-key TDES encryption.
#[must_use]
pub fn split_last_block(padded: &[u8]) -> (&[u8], [u8; DES_BLOCK_BYTES]) {
    assert!(
        !padded.is_empty() && padded.len().is_multiple_of(DES_BLOCK_BYTES),
        "padding always yields whole, non-empty blocks"
    );
    let (head, last) = padded.split_at(padded.len() - DES_BLOCK_BYTES);
    let mut last_block = [0_u8; DES_BLOCK_BYTES];
    last_block.copy_from_slice(last);
    (head, last_block)
}

/// ISO 9797-1 MAC algorithm 3 over clear K1 || K2.
pub(crate) fn retail_mac(key: &[u8; 16], data: &[u8], padding: MacPadding) -> [u8; 8] {
    let k1 = Des::new_from_slice(&key[..8]).expect("DES takes 8-byte keys");
    let k2 = Des::new_from_slice(&key[8..]).expect("DES takes 8-byte keys");
    let padded = pad(data, padding);
    let mut chain = GenericArray::from([0_u8; 8]);
    for block in padded.chunks_exact(DES_BLOCK_BYTES) {
        for (chain_byte, data_byte) in chain.iter_mut().zip(block) {
            *chain_byte ^= data_byte;
        }
        k1.encrypt_block(&mut chain);
    }
    k2.decrypt_block(&mut chain);
    k1.encrypt_block(&mut chain);
    chain.into()
}

/// AES-CMAC (RFC 4493) under a clear AES-256 key.
pub(crate) fn aes_cmac(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
    let mut mac =
        <Cmac<Aes256> as KeyInit>::new_from_slice(key).expect("AES-256 takes 32-byte keys");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Compares a presented (possibly truncated) MAC with the full computed one
/// in constant time. Presented MACs shorter than [`MIN_MAC_BYTES`] never match.
#[must_use]
pub fn mac_matches(computed_full: &[u8], presented: &[u8]) -> bool {
    if presented.len() < MIN_MAC_BYTES || presented.len() > computed_full.len() {
        return false;
    }
    constant_time_eq(&computed_full[..presented.len()], presented)
}

/// Equality that takes the same time wherever the first difference is.
#[must_use]
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let difference = left
        .iter()
        .zip(right)
        .fold(0_u8, |accumulated, (l, r)| accumulated | (l ^ r));
    difference == 0
}
