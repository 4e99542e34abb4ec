//! User codes of the device grant (RFC 8628 §6.1): short, typed by people,
//! so from an alphabet without vowels (no words) or look-alikes.

use crate::error::IdpError;

/// 20 consonants: no vowels, so no words; none that look alike.
const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// 8 letters: 20^8 ≈ 2^34.5 codes, against a few guesses a minute.
const LENGTH: usize = 8;

/// A new user code, shown as `WDJB-MJHT`.
pub fn new_user_code() -> Result<String, IdpError> {
    let mut code = String::with_capacity(LENGTH + 1);
    while code.len() < LENGTH + 1 {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| IdpError::Internal("no randomness".to_string()))?;
        // 240 is the largest multiple of 20 below 256: no letter is likelier.
        for b in bytes.into_iter().filter(|b| *b < 240) {
            if code.len() == LENGTH / 2 {
                code.push('-');
            }
            if code.len() == LENGTH + 1 {
                break;
            }
            code.push(ALPHABET[usize::from(b % 20)] as char);
        }
    }
    Ok(code)
}

/// A code as typed (any case, with or without dashes and spaces) in the
/// form it is hashed in, or `None` if it cannot be one.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == LENGTH && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_two_groups_of_four_from_the_alphabet() {
        let code = new_user_code().expect("random");
        assert_eq!(code.len(), 9, "{code}");
        assert_eq!(&code[4..5], "-", "{code}");
        assert!(normalize_user_code(&code).is_some(), "{code}");
        assert_ne!(new_user_code().expect("random"), code);
    }

    #[test]
    fn typing_ignores_case_and_dashes_but_not_other_letters() {
        let expected = Some("WDJBMJHT".to_string());
        for typed in ["WDJB-MJHT", "wdjb-mjht", "wdjbmjht", " WdJb MjHt "] {
            assert_eq!(normalize_user_code(typed), expected, "{typed:?}");
        }
        for bad in [
            "",
            "WDJB-MJH",
            "WDJB-MJHTX",
            "WDJB-MJHA",
            "WDJB_MJHT",
            "ŴDJB-MJHT",
        ] {
            assert_eq!(normalize_user_code(bad), None, "{bad:?}");
        }
    }
}
