use super::*;

const UPGRADE: &str = "GET /mqtt HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                       Sec-WebSocket-Protocol: mqtt\r\n\r\n";

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn ws() -> WebSocket {
    WebSocket::new(Arc::from("/mqtt"))
}

#[test]
fn frames_pipelined_behind_the_upgrade_request_are_not_lost() {
    let mut ws = ws();
    let mut input = UPGRADE.as_bytes().to_vec();
    input.extend(masked(0x2, b"\x10\x00"));
    let (mut app, mut out) = (Vec::new(), Outbox::default());
    // Split inside the request, so the pipelined frame arrives with the request's last bytes.
    ws.receive(&input[..10], &mut app, &mut out).expect("partial");
    assert!(!ws.is_open());
    ws.receive(&input[10..], &mut app, &mut out).expect("upgrade");
    assert!(ws.is_open());
    assert_eq!(app, b"\x10\x00");
    assert!(out.concat().starts_with(b"HTTP/1.1 101 "));
}

#[test]
fn pings_are_answered_and_a_close_is_echoed() {
    let mut ws = ws();
    let (mut app, mut out) = (Vec::new(), Outbox::default());
    ws.receive(UPGRADE.as_bytes(), &mut app, &mut out).expect("upgrade");
    out.consume(out.len());
    ws.receive(&masked(0x9, b"p"), &mut app, &mut out).expect("ping");
    assert_eq!(out.concat(), [0x8A, 1, b'p']);
    out.consume(out.len());
    let closed = ws.receive(&masked(0x8, &[0x03, 0xE8, b'b', b'y', b'e']), &mut app, &mut out);
    assert_eq!(closed, Err(WsClose::PeerClosed));
    assert_eq!(out.concat(), [0x88, 2, 0x03, 0xE8]);
    // Nothing is framed after the close.
    ws.send(Bytes::from_static(b"late"), &mut out);
    assert_eq!(out.concat(), [0x88, 2, 0x03, 0xE8]);
}

#[test]
fn core_bytes_go_out_as_binary_frames_and_the_broker_closes_normally() {
    let mut ws = ws();
    let (mut app, mut out) = (Vec::new(), Outbox::default());
    ws.send(Bytes::from_static(b"too early"), &mut out);
    assert!(out.is_empty());
    ws.receive(UPGRADE.as_bytes(), &mut app, &mut out).expect("upgrade");
    out.consume(out.len());
    ws.send(Bytes::from_static(b"\x20\x02\x00\x00"), &mut out);
    ws.close(&mut out);
    assert_eq!(out.concat(), [0x82, 4, 0x20, 0x02, 0x00, 0x00, 0x88, 2, 0x03, 0xE8]);
}

#[test]
fn a_text_frame_gets_close_1003() {
    let mut ws = ws();
    let (mut app, mut out) = (Vec::new(), Outbox::default());
    ws.receive(UPGRADE.as_bytes(), &mut app, &mut out).expect("upgrade");
    out.consume(out.len());
    let result = ws.receive(&masked(0x1, b"hello"), &mut app, &mut out);
    assert_eq!(result, Err(WsClose::Frame(FrameError::Text)));
    assert_eq!(out.concat(), [0x88, 2, 0x03, 0xEB]);
}

#[test]
fn a_wrong_path_gets_404() {
    let mut ws = WebSocket::new(Arc::from("/ws"));
    let (mut app, mut out) = (Vec::new(), Outbox::default());
    let result = ws.receive(UPGRADE.as_bytes(), &mut app, &mut out);
    assert_eq!(result, Err(WsClose::Refused(Refusal::NotFound("/mqtt".into()))));
    assert!(out.concat().starts_with(b"HTTP/1.1 404 Not Found\r\n"));
}
