//! GPT-2's byte-to-character table: byte-level BPE vocabularies spell every byte as one
//! printable character (bytes that are printable Latin-1 stand for themselves, the others are
//! moved to U+0100 and up in byte order), so a token string maps back to the bytes it covers.

use std::collections::HashMap;
use std::sync::OnceLock;

struct Table {
    to_char: [char; 256],
    to_byte: HashMap<char, u8>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let mut to_char = ['\0'; 256];
        let mut next = 256u32;
        for b in 0..=255u8 {
            to_char[usize::from(b)] = if printable(b) {
                char::from(b)
            } else {
                // 256 + at most 68 moved bytes: always a valid scalar value.
                let c = char::from_u32(next).unwrap_or(char::REPLACEMENT_CHARACTER);
                next += 1;
                c
            };
        }
        let to_byte = (0..=255u8).map(|b| (to_char[usize::from(b)], b)).collect();
        Table { to_char, to_byte }
    })
}

/// The byte-level spelling of `text`'s UTF-8 bytes.
pub(crate) fn encode(text: &str) -> String {
    let t = table();
    text.bytes().map(|b| t.to_char[usize::from(b)]).collect()
}

/// The bytes a byte-level token string stands for, or `None` when a character is outside
/// the table (an added token stored as plain text).
pub(crate) fn decode(token: &str) -> Option<Vec<u8>> {
    let t = table();
    token.chars().map(|c| t.to_byte.get(&c).copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let spelled: String = all
            .iter()
            .map(|&b| table().to_char[usize::from(b)])
            .collect();
        assert_eq!(decode(&spelled).as_deref(), Some(&all[..]));
        assert_eq!(encode(" "), "\u{120}"); // the famous "Ġ"
        assert_eq!(encode("\n"), "\u{10a}"); // "Ċ"
        assert_eq!(decode("h\u{e9}"), Some(vec![b'h', 0xe9]));
        assert_eq!(decode("\u{4e00}"), None);
    }
}
