use super::*;

/// A client frame: masked, as RFC 6455 section 5.3 requires of clients.
fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn decode_all(chunks: &[&[u8]]) -> (Vec<u8>, Vec<ControlFrame>) {
    let mut decoder = FrameDecoder::default();
    let mut app = Vec::new();
    let mut controls = Vec::new();
    for chunk in chunks {
        controls.extend(decoder.decode(chunk, &mut app).expect("valid frames"));
    }
    (app, controls)
}

#[test]
fn several_packets_in_one_frame_and_one_packet_across_frames_decode_the_same() {
    // [MQTT-6.0.0-2]: frame boundaries and packet boundaries are independent.
    let packets: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let one = client_frame(0x2, true, &packets);
    let mut split = client_frame(0x2, false, &packets[..100]);
    split.extend(client_frame(0x0, false, &packets[100..40_000]));
    split.extend(client_frame(0x0, true, &packets[40_000..]));
    assert_eq!(decode_all(&[&one]).0, packets);
    assert_eq!(decode_all(&[&split]).0, packets);
    // Any chunking, down to single bytes.
    let bytes: Vec<&[u8]> = split.chunks(1).collect();
    assert_eq!(decode_all(&bytes).0, packets);
    let odd: Vec<&[u8]> = split.chunks(7).collect();
    assert_eq!(decode_all(&odd).0, packets);
}

#[test]
fn ping_pong_and_close_are_reported_between_data() {
    let mut stream = client_frame(0x2, true, b"ab");
    stream.extend(client_frame(0x9, true, b"hi"));
    stream.extend(client_frame(0xA, true, b""));
    stream.extend(client_frame(0x2, true, b"cd"));
    stream.extend(client_frame(0x8, true, &[0x03, 0xE8]));
    stream.extend(client_frame(0x2, true, b"ignored after close"));
    let (app, controls) = decode_all(&[&stream]);
    assert_eq!(app, b"abcd");
    assert_eq!(
        controls,
        vec![
            ControlFrame::Ping(b"hi".to_vec()),
            ControlFrame::Pong,
            ControlFrame::Close(vec![0x03, 0xE8])
        ]
    );
}

#[test]
fn text_frames_are_refused() {
    // [MQTT-6.0.0-1]: MQTT travels in binary frames; anything else closes the connection.
    let mut decoder = FrameDecoder::default();
    let err = decoder.decode(&client_frame(0x1, true, b"{}"), &mut Vec::new());
    assert_eq!(err, Err(FrameError::Text));
    assert_eq!(FrameError::Text.close_code(), CloseCode::Unsupported);
}

#[test]
fn framing_violations_are_protocol_errors() {
    let unmasked = [0x82, 0x02, b'a', b'b'];
    let continuation_first = client_frame(0x0, true, b"x");
    let mut nested = client_frame(0x2, false, b"x");
    nested.extend(client_frame(0x2, true, b"y"));
    let big_ping = client_frame(0x9, true, &[0; 126]);
    let fragmented_ping = client_frame(0x9, false, b"");
    let mut rsv = client_frame(0x2, true, b"x");
    rsv[0] |= 0x40;
    for bad in [
        &unmasked[..],
        &continuation_first,
        &nested,
        &big_ping,
        &fragmented_ping,
        &rsv,
    ] {
        let result = FrameDecoder::default().decode(bad, &mut Vec::new());
        assert!(matches!(result, Err(FrameError::Protocol(_))), "{bad:?}: {result:?}");
    }
}

#[test]
fn server_frames_are_unmasked_binary_with_the_shortest_length() {
    assert_eq!(&binary_header(5)[..], &[0x82, 5]);
    assert_eq!(&binary_header(300)[..], &[0x82, 126, 0x01, 0x2C]);
    assert_eq!(&binary_header(70_000)[..2], &[0x82, 127]);
    assert_eq!(&pong(b"hi")[..], &[0x8A, 2, b'h', b'i']);
    assert_eq!(&close_with(CloseCode::Normal)[..], &[0x88, 2, 0x03, 0xE8]);
}
