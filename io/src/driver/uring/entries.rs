//! The submission entries the ring issues, built from plain values: what a completion is for (its `user_data`),
//! bounded receives, and the chunks and vectors of one send. Kept apart from the ring so that the unsafe layout
//! tricks the crate has no setter for sit in one place.

use super::bufring::BUF_GROUP;
use super::{Outbox, RECV_MAX};
use bytes::Bytes;
use io_uring::{opcode, squeue, types};
use std::io;
use std::os::fd::RawFd;

/// `IORING_RECVSEND_BUNDLE` and `IORING_RECV_MULTISHOT` (linux/io_uring.h; the crate keeps its copies private): a
/// receive into several provided buffers, and one that stays armed.
pub(super) const RECVSEND_BUNDLE: u16 = 1 << 4;
pub(super) const RECV_MULTISHOT: u16 = 1 << 1;
/// Where `optlen` sits in a submission entry (struct io_uring_sqe): for a multishot receive, the most it takes in
/// all before it ends (Linux 6.17+; older kernels refuse the entry with EINVAL).
const SQE_OPTLEN_OFFSET: usize = 44;
/// Most chunks in one send (Linux's IOV_MAX). Higher than epoll's per-write limit because a connection has one
/// send per turn here, where epoll's writes loop until the socket is full: a subscriber of many small messages
/// would otherwise get 64 of them per turn.
pub(super) const MAX_SEND_IOV: usize = 1024;
/// Bytes one send aims for: the socket holds this much unsent (TCP_NOTSENT_LOWAT, `MAX_SOCKET_UNSENT`).
pub(super) const SEND_BYTES: usize = 256 * 1024;

// What a completion is for: the kind in the top byte of `user_data`, the connection id or listener index below.
pub(super) const KIND_SHIFT: u32 = 56;
pub(super) const KIND_ACCEPT: u64 = 1;
pub(super) const KIND_RECV: u64 = 2;
pub(super) const KIND_SEND: u64 = 3;
pub(super) const KIND_EPOLL: u64 = 4;
pub(super) const KIND_CANCEL: u64 = 5;
pub(super) const ID_MASK: u64 = (1 << KIND_SHIFT) - 1;

pub(super) fn user_data(kind: u64, id: u64) -> u64 {
    (kind << KIND_SHIFT) | (id & ID_MASK)
}

/// The vectors and header a `sendmsg` points at, owned by the send until its completion.
pub(super) type SendVectors = (Box<[libc::iovec]>, Box<libc::msghdr>);

/// The entry that sends `chunks` on `fd`: a plain `send` for one chunk (a quiet client's PUBACK: no vectors), else a
/// `sendmsg` over them, with the vectors it points at.
pub(super) fn send_entry(fd: RawFd, chunks: &[Bytes]) -> (squeue::Entry, Option<SendVectors>) {
    if let [one] = chunks {
        let entry = opcode::Send::new(types::Fd(fd), one.as_ptr(), one.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        return (entry, None);
    }
    let mut iov: Box<[libc::iovec]> = chunks
        .iter()
        .map(|c| libc::iovec {
            iov_base: c.as_ptr() as *mut libc::c_void,
            iov_len: c.len(),
        })
        .collect();
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    let entry = opcode::SendMsg::new(types::Fd(fd), &*msg)
        .flags(libc::MSG_NOSIGNAL as u32)
        .build();
    (entry, Some((iov, msg)))
}

/// The front of `wire` for one send: its chunks as they are, up to [`SEND_BYTES`], unless that takes more than
/// [`MAX_SEND_IOV`] of them (thousands of small PUBLISHes or PUBACKs for one subscriber): then they are copied into
/// one buffer, so that a send carries as much as epoll's write loop would in one turn.
pub(super) fn send_chunks(wire: &Outbox) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut bytes = 0;
    for chunk in wire.chunks() {
        if bytes >= SEND_BYTES {
            return chunks;
        }
        if chunks.len() == MAX_SEND_IOV {
            let mut joined = Vec::with_capacity(SEND_BYTES + 64 * 1024);
            for chunk in wire.chunks() {
                if joined.len() >= SEND_BYTES {
                    break;
                }
                joined.extend_from_slice(chunk);
            }
            return vec![Bytes::from(joined)];
        }
        bytes += chunk.len();
        chunks.push(chunk.clone());
    }
    chunks
}

/// A multishot receive of bundles that ends once it has taken `RECV_MAX` bytes in all: a quiet client's many small
/// packets cost one arming between reads of the driver, not one each, and what a client held back can have sent
/// into the driver is still one read buffer's worth.
pub(super) fn limited_multishot_recv(fd: RawFd) -> squeue::Entry {
    let entry = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), 0)
        .ioprio(RECVSEND_BUNDLE | RECV_MULTISHOT)
        .buf_group(BUF_GROUP)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT);
    // The crate has no setter for the limit. SAFETY: `Entry` is `repr(C)` over the 64-byte `io_uring_sqe`, plain
    // data whose `optlen` is the `u32` at byte 44 (a union with `file_index`, which a receive does not use).
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(entry) };
    raw[SQE_OPTLEN_OFFSET..SQE_OPTLEN_OFFSET + 4].copy_from_slice(&(RECV_MAX as u32).to_ne_bytes());
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(raw) }
}

/// Multishot receive needs Linux 6.0; older kernels run on epoll.
pub(super) fn check_kernel() -> io::Result<()> {
    // SAFETY: uname fills the struct it is given.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let release: String = name
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if major < 6 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("kernel {release} lacks multishot receive (Linux 6.0)"),
        ));
    }
    Ok(())
}
