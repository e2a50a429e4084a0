//! Randomness, hashing and constant-time comparison for tokens, keys and ids.
//!
//! Owns the OS CSPRNG access (getrandom(2)) and the SHA-256 hex form used for every stored
//! credential hash. Must not store or log anything.

use sha2::{Digest, Sha256};
use std::io;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Fills `buf` from the kernel CSPRNG; fails only if the kernel refuses.
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe the writable tail of `buf`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += n as usize;
    }
    Ok(())
}

/// `n` random bytes from the kernel CSPRNG.
pub fn random_bytes(n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    fill_random(&mut buf)?;
    Ok(buf)
}

/// `len` uniformly random base62 characters (rejection sampling, no modulo bias).
pub fn random_base62(len: usize) -> io::Result<String> {
    let mut out = String::with_capacity(len);
    let mut pool = [0u8; 64];
    while out.len() < len {
        fill_random(&mut pool)?;
        for &byte in &pool {
            // 248 = 62 * 4: values above it would favour the first characters.
            if byte < 248 && out.len() < len {
                out.push(BASE62[usize::from(byte % 62)] as char);
            }
        }
    }
    Ok(out)
}

/// A prefixed random id such as `req_1f2e3d4c5b6a`, 12 lowercase hex digits after the prefix.
pub fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    // An id is not a secret: if the kernel refuses randomness, a time-derived id is still unique enough.
    if fill_random(&mut bytes).is_err() {
        let now = crate::clock::now_ms().to_le_bytes();
        bytes.copy_from_slice(&now[..6]);
    }
    format!("{prefix}{}", hex(&bytes))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Decodes lowercase or uppercase hex; `None` on odd length or a non-hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The two base64 alphabets of RFC 4648.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base64 {
    /// `+` and `/` (§4): data URLs, MIME, key files.
    Standard,
    /// `-` and `_` (§5): URLs, JWTs, workspace ids.
    Url,
}

/// Whether `=` padding may end a base64 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No `=` at all (workspace ids: one encoding per byte string).
    Forbidden,
    /// With or without; when present it must complete the last group of four exactly.
    Optional,
}

/// Decodes base64 in `alphabet`: the one decoder for every base64 the gateway reads. `None` on a
/// character outside the alphabet, an impossible length, misplaced padding, or non-zero bits
/// after the last byte (so a byte string has a single accepted unpadded form).
pub fn base64_decode(text: &str, alphabet: Base64, padding: Padding) -> Option<Vec<u8>> {
    let (c62, c63) = match alphabet {
        Base64::Standard => (b'+', b'/'),
        Base64::Url => (b'-', b'_'),
    };
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            c if c == c62 => 62,
            c if c == c63 => 63,
            _ => return None,
        }))
    };
    let body = text.trim_end_matches('=');
    let pad = text.len() - body.len();
    if pad > 0 && (padding == Padding::Forbidden || pad > 2 || text.len() % 4 != 0) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for chunk in body.as_bytes().chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        let keep = chunk.len() - 1;
        if bytes[1 + keep..].iter().any(|b| *b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[1..1 + keep]);
    }
    Some(out)
}

/// Encodes `bytes` in `alphabet`: standard with `=` padding (data URLs, inline images), URL-safe
/// without (workspace ids: one encoding per byte string).
pub fn base64_encode(bytes: &[u8], alphabet: Base64) -> String {
    let letters: &[u8; 64] = match alphabet {
        Base64::Standard => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        Base64::Url => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    };
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut acc = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            acc |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(char::from(letters[((acc >> (18 - 6 * i)) & 63) as usize]));
        }
        if alphabet == Base64::Standard {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// SHA-256 of `data` as lowercase hex: the only form in which tokens and keys are stored.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// SHA-256 of `data` as raw bytes.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_base64_is_padded_and_decodes_back() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"\xfb\xff\xfe", "+//+"),
        ] {
            assert_eq!(base64_encode(bytes, Base64::Standard), text);
            assert_eq!(
                base64_decode(text, Base64::Standard, Padding::Optional).as_deref(),
                Some(bytes)
            );
        }
    }

    #[test]
    fn base62_has_requested_length_and_alphabet() {
        let token = random_base62(32).unwrap();
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|b| BASE62.contains(&b)));
        assert_ne!(token, random_base62(32).unwrap());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn base64_decodes_both_alphabets_with_and_without_padding() {
        use Base64::{Standard, Url};
        use Padding::{Forbidden, Optional};
        for (text, alphabet, padding, expected) in [
            ("aGVsbG8=", Standard, Optional, Some(&b"hello"[..])),
            ("aGVsbG8", Standard, Optional, Some(b"hello")),
            ("aGVsbG8h", Standard, Forbidden, Some(b"hello!")),
            ("", Url, Forbidden, Some(b"")),
            ("-_8", Url, Forbidden, Some(&[0xfb, 0xff])),
            ("+/8=", Standard, Optional, Some(&[0xfb, 0xff])),
            // Wrong alphabet, stray characters, whitespace.
            ("+/8", Url, Optional, None),
            ("-_8", Standard, Optional, None),
            ("a$==", Standard, Optional, None),
            ("aGVs bG8=", Standard, Optional, None),
            // Padding: forbidden, too much, not completing a group, in the middle.
            ("aGVsbG8=", Standard, Forbidden, None),
            ("aGk===", Standard, Optional, None),
            ("aGk==", Standard, Optional, None),
            ("aG=k", Standard, Optional, None),
            // One character cannot hold a byte; non-zero trailing bits are not canonical.
            ("a", Url, Forbidden, None),
            ("aGl", Standard, Optional, None),
            ("Zh", Url, Forbidden, None),
        ] {
            assert_eq!(
                base64_decode(text, alphabet, padding).as_deref(),
                expected,
                "{text:?} {alphabet:?} {padding:?}"
            );
        }
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
    }
}
