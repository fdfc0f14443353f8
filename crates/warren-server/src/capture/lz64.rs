//! Decoding lz-string's `compressToBase64` output, with a bound on the size
//! of the result.
//!
//! Warren decodes this format itself rather than through the `lz-str` crate
//! because that crate cannot bound its output: lz-string dictionary entries
//! grow by one character per code, so a few kilobytes of input can expand
//! quadratically into gigabytes. Here dictionary entries are links to their
//! prefix (constant memory each) and decoding stops as soon as the output
//! passes the limit. The tests check it against the `lz-str` crate.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#[derive(Debug, PartialEq, Eq)]
pub enum Lz64Error {
    Invalid,
    TooLarge,
}

/// One dictionary entry: `prefix` entry followed by `last`.
#[derive(Clone, Copy)]
struct Entry {
    prefix: Option<u32>,
    last: u16,
    first: u16,
    len: u32,
}

/// Reads the base64 text as a stream of bits, most significant first.
struct Bits<'a> {
    input: &'a [u8],
    index: usize,
    value: u32,
    mask: u32,
}

impl<'a> Bits<'a> {
    fn new(input: &'a [u8]) -> Self {
        let mut bits = Self { input, index: 0, value: 0, mask: 0 };
        bits.advance();
        bits
    }

    fn advance(&mut self) {
        // Past the end, lz-string reads zero bits.
        self.value = self.input.get(self.index).map(|c| char_value(*c)).unwrap_or(0);
        self.index += 1;
        self.mask = 32;
    }

    fn read(&mut self, count: u32) -> u32 {
        let mut out = 0;
        for bit in 0..count {
            if self.value & self.mask != 0 {
                out |= 1 << bit;
            }
            self.mask >>= 1;
            if self.mask == 0 {
                self.advance();
            }
        }
        out
    }

    fn exhausted(&self) -> bool {
        self.index > self.input.len()
    }
}

/// Padding (`=`) and anything past the end read as zero bits, as in lz-string.
fn char_value(c: u8) -> u32 {
    ALPHABET.iter().position(|a| *a == c).map(|p| p as u32).unwrap_or(0)
}

/// Decodes to UTF-16 code units, failing once more than `limit` are produced.
pub fn decompress(input: &str, limit: usize) -> Result<Vec<u16>, Lz64Error> {
    let input = input.as_bytes();
    if input.is_empty() {
        return Ok(Vec::new());
    }
    if !input.iter().all(|c| ALPHABET.contains(c) || *c == b'=') {
        return Err(Lz64Error::Invalid);
    }
    let mut bits = Bits::new(input);
    // Codes 0, 1 and 2 are commands, so entries start at 3.
    let mut dictionary: Vec<Entry> = Vec::new();
    let index_of = |dictionary: &Vec<Entry>| dictionary.len() as u32 + 3;
    let mut width = 3u32;
    let mut enlarge_in = 4u32;
    let mut out: Vec<u16> = Vec::new();

    let literal = |bits: &mut Bits<'_>, code: u32| -> Option<u16> {
        match code {
            0 => Some(bits.read(8) as u16),
            1 => Some(bits.read(16) as u16),
            _ => None,
        }
    };
    let first_code = bits.read(2);
    let first_char = match literal(&mut bits, first_code) {
        Some(c) => c,
        None => return Ok(out),
    };
    dictionary.push(Entry { prefix: None, last: first_char, first: first_char, len: 1 });
    let mut previous = 3u32;
    out.push(first_char);

    loop {
        if bits.exhausted() {
            return Err(Lz64Error::Invalid);
        }
        let mut code = bits.read(width);
        match code {
            0 | 1 => {
                let c = literal(&mut bits, code).ok_or(Lz64Error::Invalid)?;
                dictionary.push(Entry { prefix: None, last: c, first: c, len: 1 });
                code = index_of(&dictionary) - 1;
                enlarge_in -= 1;
                if enlarge_in == 0 {
                    enlarge_in = 1 << width;
                    width += 1;
                }
            }
            2 => return Ok(out),
            _ => {}
        }
        if width > 31 {
            return Err(Lz64Error::Invalid);
        }
        let prev = dictionary[(previous - 3) as usize];
        let added_now = if code < index_of(&dictionary) {
            false
        } else if code == index_of(&dictionary) {
            // The entry being defined: previous + its own first character.
            dictionary.push(Entry {
                prefix: Some(previous),
                last: prev.first,
                first: prev.first,
                len: prev.len + 1,
            });
            true
        } else {
            return Err(Lz64Error::Invalid);
        };
        let entry = dictionary[(code - 3) as usize];
        if out.len() + entry.len as usize > limit {
            return Err(Lz64Error::TooLarge);
        }
        emit(&dictionary, code, &mut out);
        if !added_now {
            dictionary.push(Entry {
                prefix: Some(previous),
                last: entry.first,
                first: prev.first,
                len: prev.len + 1,
            });
        }
        enlarge_in -= 1;
        previous = code;
        if enlarge_in == 0 {
            enlarge_in = 1 << width;
            width += 1;
        }
    }
}

/// Appends the characters of entry `code` to `out`, walking its prefixes.
fn emit(dictionary: &[Entry], code: u32, out: &mut Vec<u16>) {
    let start = out.len();
    let mut next = Some(code);
    while let Some(code) = next {
        let entry = dictionary[(code - 3) as usize];
        out.push(entry.last);
        next = entry.prefix;
    }
    out[start..].reverse();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(input: &str) -> Option<String> {
        decompress(input, 1 << 20).ok().map(|units| String::from_utf16_lossy(&units))
    }

    #[test]
    fn decodes_known_strings() {
        for text in ["a", "aa", "ààà", "hello hello hello world", r#"[{"event":"$pageview"}]"#, ""] {
            let compressed = lz_str::compress_to_base64(text);
            assert_eq!(decode(&compressed).as_deref(), Some(text), "{text:?} via {compressed}");
        }
    }

    #[test]
    fn bounds_the_output() {
        let text = "x".repeat(10_000);
        let compressed = lz_str::compress_to_base64(&text);
        assert!(compressed.len() < 1_000, "repetition compresses well");
        assert_eq!(decompress(&compressed, 9_999), Err(Lz64Error::TooLarge));
        assert_eq!(decompress(&compressed, 10_000).map(|u| u.len()), Ok(10_000));
    }

    proptest! {
        #[test]
        fn matches_the_reference_encoder(text in "\\PC{0,300}") {
            let compressed = lz_str::compress_to_base64(&text);
            prop_assert_eq!(decode(&compressed), Some(text));
        }

        #[test]
        fn never_panics_on_arbitrary_input(input in "[A-Za-z0-9+/=]{0,400}") {
            let _ = decompress(&input, 10_000);
        }
    }
}
