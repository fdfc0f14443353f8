//! Finding the JSON inside a capture request: the `data` parameter or the
//! body, form fields, base64, gzip and lz-string, as the PostHog SDKs send
//! them. Every decoder is bounded by the route's size limit.

use std::io::Read;

use axum::http::{header, HeaderMap};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};
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
    fn parse(hint: &str) -> Result<Self, ApiError> {
        match hint.trim().to_ascii_lowercase().as_str() {
            "" => Ok(Self::None),
            "gzip" | "gzip-js" => Ok(Self::Gzip),
            "lz64" | "lz-string" => Ok(Self::Lz64),
            "base64" | "b64" => Ok(Self::Base64),
            other => Err(ApiError::InvalidCompression(format!("unknown compression {other:?}"))),
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

/// Returns the decoded JSON bytes of a capture request.
pub fn decode(
    query: &CaptureQuery,
    headers: &HeaderMap,
    body: &[u8],
    legacy_route: bool,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));

    let mut form_compression = None;
    let payload: Vec<u8> = if let Some(data) = &query.data {
        data.clone().into_bytes()
    } else if is_form
        && !body.trim_ascii_start().starts_with(b"{")
        && !body.trim_ascii_start().starts_with(b"[")
    {
        let mut data = None;
        for (key, value) in form_urlencoded::parse(body) {
            match key.as_ref() {
                "data" => data = Some(value.into_owned()),
                "compression" => form_compression = Some(value.into_owned()),
                _ => {}
            }
        }
        let data = data.unwrap_or_default();
        // Form encoding turns an unescaped `+` into a space; base64 and
        // lz64 text never hold spaces.
        if !data.trim_start().starts_with(['{', '[']) {
            data.replace(' ', "+").into_bytes()
        } else {
            data.into_bytes()
        }
    } else {
        // Also a JSON body sent with a form content type, as `curl -d` does.
        body.to_vec()
    };
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::EmptyPayload);
    }

    let header_encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    let hint = query.compression.as_deref().or(form_compression.as_deref()).or(header_encoding);
    let compression = match hint {
        Some(hint) => Compression::parse(hint)?,
        None => Compression::None,
    };

    let mut decoded = if payload.starts_with(&[0x1f, 0x8b]) {
        gunzip(&payload, limit)?
    } else {
        match compression {
            Compression::Gzip => {
                return Err(ApiError::InvalidCompression("gzip announced but the data is not gzip".into()));
            }
            Compression::Lz64 => lz64_decode(&payload, limit)?,
            Compression::Base64 => base64_decode(&payload)?,
            // Unannounced base64 is decoded only when it really is base64.
            Compression::None if looks_like_base64(&payload) => base64_decode(&payload).unwrap_or(payload),
            Compression::None => payload,
        }
    };
    if legacy_route && looks_like_base64(&decoded) {
        if let Ok(again) = base64_decode(&decoded) {
            decoded = if again.starts_with(&[0x1f, 0x8b]) { gunzip(&again, limit)? } else { again };
        }
    }
    if decoded.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    check_nesting(&decoded)?;
    Ok(decoded)
}

/// Deepest JSON nesting accepted; what lies deeper is an attack, and would
/// exceed the parsers' recursion limits downstream.
const MAX_NESTING: usize = 100;

/// Refuses JSON nested deeper than [`MAX_NESTING`], in one pass over the
/// bytes: the raw-value parse that follows does not bound depth itself.
fn check_nesting(json: &[u8]) -> Result<(), ApiError> {
    let mut depth = 0usize;
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
    Ok(())
}

/// Strict base64: only the alphabet, padding and line breaks, and not JSON.
fn looks_like_base64(bytes: &[u8]) -> bool {
    let trimmed = bytes.trim_ascii();
    !trimmed.is_empty()
        && trimmed
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'))
}

fn base64_decode(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    let compact: Vec<u8> = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    BASE64.decode(compact).map_err(|e| ApiError::InvalidCompression(format!("invalid base64: {e}")))
}

fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
    // Read one byte past the limit to tell "exactly at" from "over".
    let read = MultiGzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::InvalidCompression(format!("invalid gzip: {e}")))?;
    if read > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(out)
}

fn lz64_decode(bytes: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::InvalidCompression("lz64 data is not text".into()))?;
    let units = lz64::decompress(text.trim(), limit).map_err(|e| match e {
        lz64::Lz64Error::TooLarge => ApiError::PayloadTooLarge { limit },
        lz64::Lz64Error::Invalid => ApiError::InvalidCompression("invalid lz64 data".into()),
    })?;
    if units.is_empty() {
        return Err(ApiError::InvalidCompression("lz64 data decodes to nothing".into()));
    }
    Ok(String::from_utf16_lossy(&units).into_bytes())
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
        let mut headers = HeaderMap::new();
        if let Some(content_type) = content_type {
            headers.insert(header::CONTENT_TYPE, content_type.parse().expect("header"));
        }
        decode(&CaptureQuery::parse(Some(query)), &headers, body, true, 1 << 20)
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
    }

    #[test]
    fn bombs_and_lies_are_refused() {
        let bomb = gzip(&vec![b'a'; 2 << 20]);
        assert!(matches!(run("", None, &bomb), Err(ApiError::PayloadTooLarge { .. })));
        assert!(matches!(run("compression=gzip", None, b"{}"), Err(ApiError::InvalidCompression(_))));
        assert!(matches!(run("compression=zstd", None, b"{}"), Err(ApiError::InvalidCompression(_))));
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
