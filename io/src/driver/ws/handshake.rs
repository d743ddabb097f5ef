//! The HTTP/1.1 upgrade request of a WebSocket connection (RFC 6455 section 4.2) and the broker's answer.
//!
//! MQTT over WebSockets asks for the subprotocol "mqtt" [MQTT-6.0.0-3], and the server answers with it
//! [MQTT-6.0.0-4]. MQTT 3.1 clients (and some older libraries) offer "mqttv3.1", which is accepted too.

use bytes::Bytes;
use tungstenite::handshake::derive_accept_key;

/// Larger upgrade requests are refused (browsers send well under 2 KiB).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Headers parsed at most; more is a 431.
const MAX_HEADERS: usize = 48;
/// Subprotocols accepted, in order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Why an upgrade request was refused; each becomes an HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request is not valid HTTP/1.1 (400).
    Malformed,
    /// The request line and headers exceed [`MAX_REQUEST`] or the header count (431).
    TooLarge,
    /// Not a GET (405).
    Method,
    /// Not the configured path (404).
    NotFound(String),
    /// A GET without the WebSocket upgrade headers (400, or 426 for a wrong version).
    NotWebSocket(&'static str),
    WrongVersion,
    /// Subprotocols offered, none of them MQTT's (400).
    Subprotocol,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed => write!(f, "malformed HTTP request"),
            Refusal::TooLarge => write!(f, "HTTP request too large"),
            Refusal::Method => write!(f, "method is not GET"),
            Refusal::NotFound(path) => write!(f, "no WebSocket endpoint at {path:?}"),
            Refusal::NotWebSocket(why) => write!(f, "not a WebSocket upgrade: {why}"),
            Refusal::WrongVersion => write!(f, "unsupported Sec-WebSocket-Version"),
            Refusal::Subprotocol => write!(f, "no MQTT subprotocol offered"),
        }
    }
}

impl Refusal {
    /// The HTTP response that tells the client.
    pub fn response(&self) -> Bytes {
        let (status, extra) = match self {
            Refusal::Malformed | Refusal::NotWebSocket(_) | Refusal::Subprotocol => ("400 Bad Request", ""),
            Refusal::TooLarge => ("431 Request Header Fields Too Large", ""),
            Refusal::Method => ("405 Method Not Allowed", "Allow: GET\r\n"),
            Refusal::NotFound(_) => ("404 Not Found", ""),
            Refusal::WrongVersion => ("426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n"),
        };
        Bytes::from(format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        ))
    }
}

/// A complete upgrade request, or how far there is to go.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not all headers yet.
    Partial,
    /// Accepted: the 101 response to send and how many bytes of the buffer the request took (frames may follow).
    Upgrade { response: Bytes, consumed: usize },
}

/// Parse the buffered start of the connection as an upgrade request for `path`.
pub fn parse(buf: &[u8], path: &str) -> Result<Parsed, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST => return Err(Refusal::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooLarge),
        Err(_) => return Err(Refusal::Malformed),
    };
    if request.method != Some("GET") {
        return Err(Refusal::Method);
    }
    if request.version != Some(1) {
        return Err(Refusal::Malformed);
    }
    let target = request.path.unwrap_or("");
    // The query string (MQTT.js adds none, others add tokens) does not select the endpoint.
    let requested = target.split('?').next().unwrap_or("");
    if requested != path {
        return Err(Refusal::NotFound(requested.to_string()));
    }
    let header = |name: &str| -> Option<&str> {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("Upgrade", "websocket") {
        return Err(Refusal::NotWebSocket("no Upgrade: websocket"));
    }
    if !has_token("Connection", "upgrade") {
        return Err(Refusal::NotWebSocket("no Connection: Upgrade"));
    }
    if header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Err(Refusal::WrongVersion);
    }
    let Some(key) = header("Sec-WebSocket-Key").map(str::trim).filter(|k| !k.is_empty()) else {
        return Err(Refusal::NotWebSocket("no Sec-WebSocket-Key"));
    };
    let offered: Vec<&str> = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // A client that offers no subprotocol at all is let in without one (some embedded libraries do that); one that
    // offers only others is not speaking MQTT.
    let chosen = SUBPROTOCOLS.into_iter().find(|p| offered.contains(p));
    if chosen.is_none() && !offered.is_empty() {
        return Err(Refusal::Subprotocol);
    }
    let protocol_line = chosen.map_or(String::new(), |p| format!("Sec-WebSocket-Protocol: {p}\r\n"));
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{protocol_line}\r\n",
        derive_accept_key(key.as_bytes())
    );
    Ok(Parsed::Upgrade {
        response: Bytes::from(response),
        consumed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, protocol: Option<&str>) -> String {
        let protocol = protocol.map_or(String::new(), |p| format!("Sec-WebSocket-Protocol: {p}\r\n"));
        format!(
            "GET {path} HTTP/1.1\r\nHost: broker\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
        )
    }

    fn response_of(parsed: Parsed) -> String {
        match parsed {
            Parsed::Upgrade { response, .. } => String::from_utf8(response.to_vec()).expect("ASCII"),
            Parsed::Partial => panic!("partial"),
        }
    }

    #[test]
    fn upgrade_answers_with_the_rfc_accept_key_and_the_mqtt_subprotocol() {
        // [MQTT-6.0.0-4]: the subprotocol returned is "mqtt", preferred over "mqttv3.1".
        let text = request("/mqtt?token=1", Some("mqttv3.1, mqtt"));
        let response = response_of(parse(text.as_bytes(), "/mqtt").expect("accepted"));
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        // The example key and answer of RFC 6455 section 1.3.
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response.contains("Sec-WebSocket-Protocol: mqtt\r\n"));
    }

    #[test]
    fn mqtt31_subprotocol_is_accepted_and_no_subprotocol_is_tolerated() {
        let response = response_of(parse(request("/mqtt", Some("mqttv3.1")).as_bytes(), "/mqtt").expect("ok"));
        assert!(response.contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"));
        let response = response_of(parse(request("/mqtt", None).as_bytes(), "/mqtt").expect("ok"));
        assert!(!response.contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse(request("/other", Some("mqtt")).as_bytes(), "/mqtt"),
            Err(Refusal::NotFound("/other".into()))
        );
        assert_eq!(
            parse(request("/mqtt", Some("chat")).as_bytes(), "/mqtt"),
            Err(Refusal::Subprotocol)
        );
        let post = request("/mqtt", None).replacen("GET", "POST", 1);
        assert_eq!(parse(post.as_bytes(), "/mqtt"), Err(Refusal::Method));
        let old = request("/mqtt", None).replace("Version: 13", "Version: 8");
        assert_eq!(parse(old.as_bytes(), "/mqtt"), Err(Refusal::WrongVersion));
        let plain = "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(
            parse(plain.as_bytes(), "/mqtt"),
            Err(Refusal::NotWebSocket(_))
        ));
        assert_eq!(parse(b"\x10\x0c\x00\x04MQTT", "/mqtt"), Err(Refusal::Malformed));
        assert!(Refusal::NotFound("/x".into()).response().starts_with(b"HTTP/1.1 404 "));
    }

    #[test]
    fn partial_requests_wait_and_oversized_ones_are_refused() {
        let text = request("/mqtt", Some("mqtt"));
        assert_eq!(parse(&text.as_bytes()[..text.len() - 1], "/mqtt"), Ok(Parsed::Partial));
        let mut huge = b"GET /mqtt HTTP/1.1\r\nX-Pad: ".to_vec();
        huge.resize(MAX_REQUEST, b'a');
        assert_eq!(parse(&huge, "/mqtt"), Err(Refusal::TooLarge));
    }
}
