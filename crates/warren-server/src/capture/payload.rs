//! Finding the JSON inside a capture request: the `data` parameter or the
//! body, form fields, base64, gzip and lz-string, as the PostHog SDKs send
//! them. Every decoder is bounded by the route's size limit.

use std::io::Read;

use axum::http::{header, HeaderMap};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};
use bytes::Bytes;
use flate2::read::MultiGzDecoder;

use super::lz64;
use crate::ApiError;

/// Standard base64 that accepts input with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Lz64,
    Base64,
}

impl Compression {
    /// Unknown hints (`identity`, `br`, …) are ignored: gzip is recognised
    /// by its magic bytes and base64 by its alphabet whatever they say.
    fn parse(hint: &str) -> Self {
        match hint.trim().to_ascii_lowercase().as_str() {
            "gzip" | "gzip-js" => Self::Gzip,
            "lz64" | "lz-string" => Self::Lz64,
            "base64" | "b64" => Self::Base64,
            _ => Self::None,
        }
    }
}

/// The parts of the query string capture reads.
#[derive(Debug, Default)]
pub struct CaptureQuery {
    pub data: Option<String>,
    pub compression: Option<String>,
    /// `_`: the client's send time in epoch milliseconds.
    pub sent_at_ms: Option<i64>,
    pub beacon: bool,
}

impl CaptureQuery {
    pub fn parse(query: Option<&str>) -> Self {
        let mut out = Self::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "data" if !value.is_empty() => out.data = Some(value.into_owned()),
                "compression" if !value.is_empty() => out.compression = Some(value.into_owned()),
                "_" => out.sent_at_ms = value.parse().ok(),
                "beacon" => out.beacon = value == "1" || value == "true",
                _ => {}
            }
        }
        out
    }
}

/// Memory a decoder is about to use, asked for before it uses it, so the
/// request's share of the memory budget covers decoding too.
pub type Reserve<'a> = &'a mut dyn FnMut(usize) -> Result<(), ApiError>;

/// Worst-case bytes the lz-string decoder uses per input byte: every 3 bits
/// can be a code, each code adds up to two 16-byte dictionary entries.
const LZ64_BYTES_PER_INPUT_BYTE: usize = 64;

/// The decoded JSON of a capture request, and how many objects it holds.
pub struct Decoded {
    pub json: Bytes,
    pub objects: usize,
}

/// Finds and decodes the JSON of a capture request.
pub fn decode(
    query: &CaptureQuery,
    headers: &HeaderMap,
    body: &Bytes,
    legacy_route: bool,
    limit: usize,
    reserve: Reserve<'_>,
) -> Result<Decoded, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let is_json = |bytes: &[u8]| matches!(bytes.trim_ascii_start().first(), Some(b'{' | b'['));

    let mut form_compression = None;
    let payload: Bytes = if let Some(data) = &query.data {
        reserve(data.len())?;
        restore_plus(data.clone()).into()
    } else if is_form && !is_json(body) {
        reserve(body.len())?;
        let mut data = None;
        for (key, value) in form_urlencoded::parse(body) {
            match key.as_ref() {
                "data" => data = Some(value.into_owned()),
                "compression" => form_compression = Some(value.into_owned()),
                _ => {}
            }
        }
        restore_plus(data.unwrap_or_default()).into()
    } else {
        // Also a JSON body sent with a form content type, as `curl -d` does.
        body.clone()
    };
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::EmptyPayload);
    }

    let header_encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    let hint = query.compression.as_deref().or(form_compression.as_deref()).or(header_encoding);
    let compression = hint.map(Compression::parse).unwrap_or(Compression::None);

    let mut json = if is_gzip(&payload) {
        gunzip(&payload, limit, reserve)?
    } else {
        match compression {
            Compression::Gzip => {
                return Err(ApiError::InvalidCompression("gzip announced but the data is not gzip".into()));
            }
            Compression::Lz64 => {
                reserve(payload.len().saturating_mul(LZ64_BYTES_PER_INPUT_BYTE))?;
                lz64_decode(&payload, limit)?
            }
            Compression::Base64 => unbase64(&payload, limit, reserve)?,
            // Unannounced base64 is decoded only when it really is base64.
            Compression::None if looks_like_base64(&payload) => match unbase64(&payload, limit, reserve) {
                Ok(decoded) => decoded,
                Err(ApiError::Overloaded) => return Err(ApiError::Overloaded),
                Err(_) => payload,
            },
            Compression::None => payload,
        }
    };
    if legacy_route && looks_like_base64(&json) {
        match unbase64(&json, limit, reserve) {
            Ok(again) => json = again,
            Err(ApiError::Overloaded) => return Err(ApiError::Overloaded),
            Err(_) => {}
        }
    }
    if json.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let objects = check_nesting(&json)?;
    Ok(Decoded { json, objects })
}

/// Form and query decoding turn an unescaped `+` into a space; base64 and
/// lz64 text never hold spaces, so they are turned back.
fn restore_plus(data: String) -> String {
    if data.trim_start().starts_with(['{', '[']) {
        data
    } else {
        data.replace(' ', "+")
    }
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Base64, and gzip inside it when there is.
fn unbase64(bytes: &[u8], limit: usize, reserve: Reserve<'_>) -> Result<Bytes, ApiError> {
    reserve(bytes.len())?;
    let compact: Vec<u8> = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let decoded =
        BASE64.decode(compact).map_err(|e| ApiError::InvalidCompression(format!("invalid base64: {e}")))?;
    if is_gzip(&decoded) {
        gunzip(&decoded, limit, reserve)
    } else {
        Ok(decoded.into())
    }
}

/// Deepest JSON nesting accepted; what lies deeper is an attack, and would
/// exceed the parsers' recursion limits downstream.
const MAX_NESTING: usize = 100;

/// Refuses JSON nested deeper than [`MAX_NESTING`], in one pass over the
/// bytes (the raw-value parse that follows does not bound depth itself), and
/// counts the objects, which is what parsing allocates per.
fn check_nesting(json: &[u8]) -> Result<usize, ApiError> {
    let mut depth = 0usize;
    let mut objects = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                objects += usize::from(byte == b'{');
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(ApiError::InvalidPayload(format!(
                        "JSON nested deeper than {MAX_NESTING} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(objects)
}

/// Strict base64: only the alphabet, padding and line breaks, and not JSON.
fn looks_like_base64(bytes: &[u8]) -> bool {
    let trimmed = bytes.trim_ascii();
    !trimmed.is_empty()
        && trimmed
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'))
}

/// Output is reserved a chunk at a time, so a small body that inflates
/// cannot take memory the budget has not granted.
const GUNZIP_CHUNK: usize = 1 << 20;

fn gunzip(bytes: &[u8], limit: usize, reserve: Reserve<'_>) -> Result<Bytes, ApiError> {
    let mut decoder = MultiGzDecoder::new(bytes);
    let mut out = Vec::new();
    loop {
        // One byte past the limit tells "exactly at" from "over".
        let room = (limit + 1).saturating_sub(out.len()).min(GUNZIP_CHUNK);
        if room == 0 {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        reserve(room)?;
        let read = (&mut decoder)
            .take(room as u64)
            .read_to_end(&mut out)
            .map_err(|e| ApiError::InvalidCompression(format!("invalid gzip: {e}")))?;
        if read == 0 {
            return Ok(out.into());
        }
    }
}

fn lz64_decode(bytes: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::InvalidCompression("lz64 data is not text".into()))?;
    let units = lz64::decompress(text.trim(), limit).map_err(|e| match e {
        lz64::Lz64Error::TooLarge => ApiError::PayloadTooLarge { limit },
        lz64::Lz64Error::Invalid => ApiError::InvalidCompression("invalid lz64 data".into()),
    })?;
    if units.is_empty() {
        return Err(ApiError::InvalidCompression("lz64 data decodes to nothing".into()));
    }
    Ok(String::from_utf16_lossy(&units).into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).expect("in-memory write");
        encoder.finish().expect("in-memory write")
    }

    fn run(query: &str, content_type: Option<&str>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        run_with(query, content_type, None, body)
    }

    fn run_with(
        query: &str,
        content_type: Option<&str>,
        encoding: Option<&str>,
        body: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        let mut headers = HeaderMap::new();
        if let Some(content_type) = content_type {
            headers.insert(header::CONTENT_TYPE, content_type.parse().expect("header"));
        }
        if let Some(encoding) = encoding {
            headers.insert(header::CONTENT_ENCODING, encoding.parse().expect("header"));
        }
        let mut unlimited = |_| Ok(());
        let body = Bytes::copy_from_slice(body);
        decode(&CaptureQuery::parse(Some(query)), &headers, &body, true, 1 << 20, &mut unlimited)
            .map(|decoded| decoded.json.to_vec())
    }

    #[test]
    fn every_encoding_yields_the_json() {
        let json = br#"[{"event":"e","distinct_id":"d"}]"#;
        let b64 = BASE64.encode(json);
        let lz = lz_str::compress_to_base64(std::str::from_utf8(json).expect("utf8"));
        assert_eq!(run("", None, json).expect("plain"), json);
        assert_eq!(run("compression=gzip-js", None, &gzip(json)).expect("gzip"), json);
        assert_eq!(run("", None, &gzip(json)).expect("gzip by magic"), json);
        assert_eq!(run("compression=lz64", None, lz.as_bytes()).expect("lz64"), json);
        assert_eq!(run("", None, b64.as_bytes()).expect("base64 body"), json);
        let form = format!("data={}&compression=lz64", lz.replace('+', "%2B"));
        assert_eq!(run("", Some("application/x-www-form-urlencoded"), form.as_bytes()).expect("form"), json);
        let form_spaces = format!("data={}", b64.replace('+', " "));
        assert_eq!(
            run("", Some("application/x-www-form-urlencoded"), form_spaces.as_bytes()).expect("form"),
            json
        );
        let query = format!("data={}", b64.replace('+', "%2B"));
        assert_eq!(run(&query, None, b"").expect("data param"), json);
        let unescaped = format!("data={b64}");
        assert_eq!(run(&unescaped, None, b"").expect("unescaped + in data"), json);
        let gzip_in_base64 = BASE64.encode(gzip(json));
        assert_eq!(run("compression=base64", None, gzip_in_base64.as_bytes()).expect("b64(gzip)"), json);
    }

    #[test]
    fn bombs_and_lies_are_refused() {
        let bomb = gzip(&vec![b'a'; 2 << 20]);
        assert!(matches!(run("", None, &bomb), Err(ApiError::PayloadTooLarge { .. })));
        assert!(matches!(run("compression=gzip", None, b"{}"), Err(ApiError::InvalidCompression(_))));
        assert_eq!(run_with("", None, Some("identity"), b"{}").expect("unknown hints are ignored"), b"{}");
        assert_eq!(run_with("", None, Some("x-gzip"), &gzip(b"{}")).expect("gzip by its bytes"), b"{}");
        assert!(matches!(run("", None, b""), Err(ApiError::EmptyPayload)));
        let deep = format!("{}{}", "[".repeat(101), "]".repeat(101));
        assert!(matches!(run("", None, deep.as_bytes()), Err(ApiError::InvalidPayload(_))));
        let shallow_with_brackets = format!(r#"[{{"s":"{}\"{}"}}]"#, "[".repeat(500), "{".repeat(500));
        assert!(run("", None, shallow_with_brackets.as_bytes()).is_ok(), "brackets in strings do not count");
        assert_eq!(run("", None, b"42").expect("not base64 after all"), b"42");
        let truncated = gzip(b"[{\"event\":\"e\"}]");
        assert!(matches!(
            run("", None, &truncated[..truncated.len() / 2]),
            Err(ApiError::InvalidCompression(_))
        ));
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn inflating_bodies_reserve_as_they_grow() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut encoder, &vec![b' '; 5 << 20]).expect("in-memory");
        let body = Bytes::from(encoder.finish().expect("in-memory"));
        let mut reserved = 0usize;
        let mut budget_of_3_mib = |bytes: usize| {
            reserved += bytes;
            if reserved > 3 << 20 {
                Err(ApiError::Overloaded)
            } else {
                Ok(())
            }
        };
        let result =
            decode(&CaptureQuery::default(), &HeaderMap::new(), &body, false, 20 << 20, &mut budget_of_3_mib);
        assert!(matches!(result, Err(ApiError::Overloaded)), "stopped when the budget ran out");
    }
}
