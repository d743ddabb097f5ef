//! `use_identity_as_username`: the client certificate's Common Name becomes the CONNECT's User Name.
//!
//! The core authenticates what the CONNECT says, so the driver rewrites the first packet before the core sees it:
//! the User Name is replaced by the certificate's name and the Password dropped (the certificate is the
//! credential; the authenticator trusts user names on such listeners). The core stays unaware of TLS, and what it
//! receives is still a valid CONNECT, so its behaviour stays a function of its input.
//!
//! A client must not get its own User Name past this: anything but a CONNECT as the first packet closes the
//! connection. A CONNECT this decoder cannot decode is passed on unchanged, because the core uses the same decoder
//! with the same size limit and will refuse it too (with the CONNACK the client is owed) without authenticating it.

use bytes::BytesMut;
use mqtt_core::codec::{encode, Decoder, EncodeError};
use mqtt_core::packet::Packet;

#[derive(Debug)]
pub enum IdentityError {
    /// The verified client certificate has no subject Common Name to use.
    NoCommonName,
    /// The first packet was not a CONNECT [MQTT-3.1.0-1].
    NotConnect,
    /// The rewritten CONNECT could not be encoded (a name too long for a UTF-8 string field).
    Encode(EncodeError),
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityError::NoCommonName => write!(f, "client certificate has no subject Common Name"),
            IdentityError::NotConnect => write!(f, "first packet is not CONNECT"),
            IdentityError::Encode(e) => write!(f, "cannot re-encode CONNECT: {e:?}"),
        }
    }
}

/// Rewrites the first packet of a connection; passes everything after it through.
pub struct ConnectRewrite {
    username: Option<String>,
    decoder: Decoder,
    /// Everything received until the CONNECT is complete (the decoder keeps its own copy, and what follows the
    /// CONNECT must be passed on as received).
    seen: Vec<u8>,
    done: bool,
}

impl ConnectRewrite {
    pub fn new(max_packet_size: usize) -> ConnectRewrite {
        ConnectRewrite {
            username: None,
            decoder: Decoder::new(None, max_packet_size),
            seen: Vec::new(),
            done: false,
        }
    }

    /// The name from the certificate, known once the TLS handshake is done.
    pub fn set_username(&mut self, username: String) {
        self.username = Some(username);
    }

    pub fn has_username(&self) -> bool {
        self.username.is_some()
    }

    /// Turn received MQTT bytes into the bytes the core gets, appended to `out`.
    pub fn apply(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), IdentityError> {
        if self.done {
            out.extend_from_slice(data);
            return Ok(());
        }
        let Some(username) = self.username.clone() else {
            // MQTT bytes before the handshake finished cannot happen: TLS delivers nothing before that.
            return Err(IdentityError::NoCommonName);
        };
        self.seen.extend_from_slice(data);
        self.decoder.feed(data);
        match self.decoder.next_packet() {
            Ok(None) => Ok(()),
            Ok(Some(Packet::Connect(mut connect))) => {
                connect.username = Some(username);
                connect.password = None;
                let version = connect.protocol;
                let mut encoded = BytesMut::new();
                encode(&Packet::Connect(connect), version, &mut encoded).map_err(IdentityError::Encode)?;
                out.extend_from_slice(&encoded);
                let rest = self.seen.len() - self.decoder.buffered().min(self.seen.len());
                out.extend_from_slice(&self.seen[rest..]);
                self.finish();
                Ok(())
            }
            Ok(Some(_)) => Err(IdentityError::NotConnect),
            Err(_) => {
                out.append(&mut self.seen);
                self.finish();
                Ok(())
            }
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.seen = Vec::new();
        self.decoder = Decoder::new(None, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_core::packet::{Connect, ProtocolVersion};

    fn connect_bytes(username: Option<&str>, password: Option<&[u8]>, version: ProtocolVersion) -> Vec<u8> {
        let connect = Connect {
            protocol: version,
            client_id: "dev-1".into(),
            clean_start: true,
            keep_alive: 30,
            properties: Default::default(),
            will: None,
            username: username.map(str::to_string),
            password: password.map(bytes::Bytes::copy_from_slice),
        };
        let mut out = BytesMut::new();
        encode(&Packet::Connect(Box::new(connect)), version, &mut out).expect("encode");
        out.to_vec()
    }

    fn decode_connect(bytes: &[u8]) -> (Box<Connect>, usize) {
        let mut decoder = Decoder::new(None, 1 << 20);
        decoder.feed(bytes);
        match decoder.next_packet() {
            Ok(Some(Packet::Connect(c))) => (c, decoder.buffered()),
            other => panic!("not a CONNECT: {other:?}"),
        }
    }

    #[test]
    fn the_certificate_name_replaces_user_name_and_password_in_any_chunking() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut input = connect_bytes(Some("mallory"), Some(b"guess"), version);
            let pingreq = [0xC0, 0x00];
            input.extend_from_slice(&pingreq);
            let mut rewrite = ConnectRewrite::new(1 << 20);
            rewrite.set_username("alice".into());
            let mut out = Vec::new();
            for chunk in input.chunks(3) {
                rewrite.apply(chunk, &mut out).expect("rewrite");
            }
            let (connect, rest) = decode_connect(&out);
            assert_eq!(connect.username.as_deref(), Some("alice"));
            assert_eq!(connect.password, None);
            assert_eq!(connect.client_id, "dev-1");
            // What followed the CONNECT is passed on unchanged.
            assert_eq!(rest, 2);
            assert_eq!(&out[out.len() - 2..], &pingreq);
        }
    }

    #[test]
    fn a_first_packet_other_than_connect_never_reaches_the_core_as_a_connect() {
        // A PINGREQ first: undecodable before a CONNECT set the version, so it goes on unchanged and the core,
        // whose decoder fails the same way, closes the connection [MQTT-3.1.0-1].
        let mut rewrite = ConnectRewrite::new(1 << 20);
        rewrite.set_username("alice".into());
        let mut out = Vec::new();
        match rewrite.apply(&[0xC0, 0x00], &mut out) {
            Ok(()) => assert_eq!(out, [0xC0, 0x00]),
            Err(e) => assert!(matches!(e, IdentityError::NotConnect)),
        }
        let mut core = Decoder::new(None, 1 << 20);
        core.feed(&out);
        assert!(core.next_packet().is_err());
    }

    #[test]
    fn an_undecodable_connect_is_passed_on_for_the_core_to_refuse() {
        let mut rewrite = ConnectRewrite::new(1 << 20);
        rewrite.set_username("alice".into());
        // Protocol level 9 does not exist.
        let bad = [0x10, 0x0A, 0x00, 0x04, b'M', b'Q', b'T', b'T', 9, 0x02, 0x00, 0x1E];
        let mut out = Vec::new();
        rewrite.apply(&bad, &mut out).expect("passed on");
        assert_eq!(out, bad);
    }
}
