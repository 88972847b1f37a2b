//! Key-wrapping formats over clear keys, for the software backend: TDES-ECB
//! of each half under a TDES ZMK, and RFC 3394 AES key wrap under an AES KEK.
//! The PKCS#11 backend produces the same bytes with token mechanisms.

use aes::Aes256;
use des::TdesEde2;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use zeroize::Zeroizing;

/// RFC 3394 default initial value.
const AES_KW_IV: [u8; 8] = [0xA6; 8];

/// Enciphers each 8-byte block of `data` under the TDES key (ECB).
pub(crate) fn tdes_ecb_encrypt(key: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let cipher = TdesEde2::new_from_slice(key).expect("two-key TDES takes 16 bytes");
    let mut out = data.to_vec();
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    out
}

/// Deciphers each 8-byte block of `data` under the TDES key (ECB).
pub(crate) fn tdes_ecb_decrypt(key: &[u8; 16], data: &[u8]) -> Zeroizing<Vec<u8>> {
    let cipher = TdesEde2::new_from_slice(key).expect("two-key TDES takes 16 bytes");
    let mut out = Zeroizing::new(data.to_vec());
    for block in out.chunks_exact_mut(8) {
        cipher.decrypt_block(GenericArray::from_mut_slice(block));
    }
    out
}

/// Enciphers one 16-byte block under the AES-256 key (ECB).
pub(crate) fn aes_ecb_encrypt_block(key: &[u8; 32], block: &mut [u8]) {
    let cipher = Aes256::new_from_slice(key).expect("AES-256 takes 32 bytes");
    cipher.encrypt_block(GenericArray::from_mut_slice(block));
}

/// Deciphers one 16-byte block under the AES-256 key (ECB).
pub(crate) fn aes_ecb_decrypt_block(key: &[u8; 32], block: &mut [u8]) {
    let cipher = Aes256::new_from_slice(key).expect("AES-256 takes 32 bytes");
    cipher.decrypt_block(GenericArray::from_mut_slice(block));
}

/// RFC 3394 key wrap of `plaintext` (a multiple of 8 bytes, at least 16).
pub(crate) fn aes_key_wrap(kek: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    assert!(
        plaintext.len() >= 16 && plaintext.len().is_multiple_of(8),
        "callers wrap 16- or 32-byte keys"
    );
    let cipher = Aes256::new_from_slice(kek).expect("AES-256 takes 32 bytes");
    let blocks = plaintext.len() / 8;
    let mut register = Zeroizing::new(plaintext.to_vec());
    let mut integrity = AES_KW_IV;
    let mut buffer = Zeroizing::new([0_u8; 16]);
    for round in 0..6 {
        for index in 0..blocks {
            buffer[..8].copy_from_slice(&integrity);
            buffer[8..].copy_from_slice(&register[index * 8..index * 8 + 8]);
            cipher.encrypt_block(GenericArray::from_mut_slice(&mut buffer[..]));
            let step = u64::try_from(blocks * round + index + 1).expect("small");
            integrity.copy_from_slice(&buffer[..8]);
            for (byte, step_byte) in integrity.iter_mut().zip(step.to_be_bytes()) {
                *byte ^= step_byte;
            }
            register[index * 8..index * 8 + 8].copy_from_slice(&buffer[8..]);
        }
    }
    let mut out = Vec::with_capacity(plaintext.len() + 8);
    out.extend_from_slice(&integrity);
    out.extend_from_slice(&register);
    out
}

/// RFC 3394 key unwrap; `None` if the integrity check fails.
pub(crate) fn aes_key_unwrap(kek: &[u8; 32], ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if ciphertext.len() < 24 || !ciphertext.len().is_multiple_of(8) {
        return None;
    }
    let cipher = Aes256::new_from_slice(kek).expect("AES-256 takes 32 bytes");
    let blocks = ciphertext.len() / 8 - 1;
    let mut integrity = [0_u8; 8];
    integrity.copy_from_slice(&ciphertext[..8]);
    let mut register = Zeroizing::new(ciphertext[8..].to_vec());
    let mut buffer = Zeroizing::new([0_u8; 16]);
    for round in (0..6).rev() {
        for index in (0..blocks).rev() {
            let step = u64::try_from(blocks * round + index + 1).expect("small");
            for (byte, step_byte) in integrity.iter_mut().zip(step.to_be_bytes()) {
                *byte ^= step_byte;
            }
            buffer[..8].copy_from_slice(&integrity);
            buffer[8..].copy_from_slice(&register[index * 8..index * 8 + 8]);
            cipher.decrypt_block(GenericArray::from_mut_slice(&mut buffer[..]));
            integrity.copy_from_slice(&buffer[..8]);
            register[index * 8..index * 8 + 8].copy_from_slice(&buffer[8..]);
        }
    }
    crate::mac::constant_time_eq(&integrity, &AES_KW_IV).then_some(register)
}
