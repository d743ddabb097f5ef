//! The provided buffers receives land in: a ring the kernel takes them from, topped up from a stack of the most
//! recently freed (see `RING_START`).

use io_uring::{types, IoUring};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

/// Provided receive buffers: how many and how large. A connection holds them from their completion until the
/// read turn that reads them (at most `RECV_MAX` of them), so this bounds the input waiting in the driver (8 MiB,
/// resident once used); when all are taken, receives end with ENOBUFS and are re-armed once buffers come back.
/// Many and small: thousands of quiet clients each hold one for a PUBLISH of a few dozen bytes.
pub(super) const RECV_BUFS: u16 = 4096;
pub(super) const RECV_BUF_SIZE: usize = 2 * 1024;
/// How many free buffers the kernel's ring holds at first (512 KiB); doubled, up to all of them, each time a receive
/// finds it empty. The rest wait in a stack, the most recently returned on top: a ring of every free buffer hands
/// them out first in, first out, so every receive wrote into memory not touched for 8 MiB (a fan-out of 64 B
/// messages spent 4 % of the broker's time in the kernel's copy into them, under 1 % for epoll's one read buffer).
const RING_START: usize = 256;
pub(super) const BUF_GROUP: u16 = 0;

/// Provided buffers for receives, in a ring the kernel takes them from.
pub(super) struct BufRing {
    /// `RECV_BUFS` entries of `io_uring_buf`, page-aligned (mmap); the kernel reads it.
    entries: *mut types::BufRingEntry,
    map_len: usize,
    tail: u16,
    data: Vec<u8>,
    /// Which buffer each ring entry holds, and where each buffer was last put: a bundle's completion names only
    /// its first buffer, the others are the entries after it.
    entry_bid: Vec<u16>,
    bid_entry: Vec<u16>,
    /// Free buffers not in the ring, the most recently returned last.
    free: Vec<u16>,
    /// Buffers in the ring (offered, not yet taken by a receive), and how many it may hold (`RING_START`).
    in_ring: usize,
    target: usize,
}

// SAFETY: the mapping is owned by this struct and only touched through `&mut self` (and by the kernel).
unsafe impl Send for BufRing {}

impl BufRing {
    pub(super) fn new(ring: &IoUring) -> io::Result<BufRing> {
        let map_len = usize::from(RECV_BUFS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut bufs = BufRing {
            entries: ptr.cast(),
            map_len,
            tail: 0,
            data: vec![0; usize::from(RECV_BUFS) * RECV_BUF_SIZE],
            entry_bid: vec![0; usize::from(RECV_BUFS)],
            bid_entry: vec![0; usize::from(RECV_BUFS)],
            free: (0..RECV_BUFS).rev().collect(),
            in_ring: 0,
            target: RING_START,
        };
        // SAFETY: the mapping lives as long as `bufs`, which the ring's owner drops after the ring (field order).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ptr as u64, RECV_BUFS, BUF_GROUP, 0)?;
        }
        bufs.refill();
        bufs.publish();
        Ok(bufs)
    }

    /// Buffer `bid` is free again (offered to the kernel by the next `refill`).
    pub(super) fn give(&mut self, bid: u16) {
        self.free.push(bid);
    }

    /// Top the ring up to its target from the most recently freed buffers; whether it took any (then `publish`).
    pub(super) fn refill(&mut self) -> bool {
        let mut offered = false;
        while self.in_ring < self.target {
            let Some(bid) = self.free.pop() else {
                break;
            };
            self.offer(bid);
            offered = true;
        }
        offered
    }

    /// A receive found the ring empty: let it hold more.
    pub(super) fn starved(&mut self) {
        self.target = (self.target * 2).min(usize::from(RECV_BUFS));
    }

    /// Put buffer `bid` in the ring (seen by the kernel once published).
    fn offer(&mut self, bid: u16) {
        self.in_ring += 1;
        let index = usize::from(self.tail & (RECV_BUFS - 1));
        let addr = self.data[usize::from(bid) * RECV_BUF_SIZE..].as_ptr() as u64;
        // SAFETY: `index` < RECV_BUFS, inside the mapping.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr);
        entry.set_len(RECV_BUF_SIZE as u32);
        entry.set_bid(bid);
        self.entry_bid[index] = bid;
        self.bid_entry[usize::from(bid)] = index as u16;
        self.tail = self.tail.wrapping_add(1);
    }

    /// The buffers a bundled receive of `len` bytes starting with buffer `first` filled (and took out of the
    /// ring), in order, with how much of each: the kernel takes consecutive ring entries and fills each before the
    /// next.
    pub(super) fn bundle(&mut self, first: u16, len: usize) -> Vec<(u16, usize)> {
        let start = self.bid_entry[usize::from(first)];
        let count = len.div_ceil(RECV_BUF_SIZE);
        self.in_ring = self.in_ring.saturating_sub(count);
        (0..count)
            .map(|i| {
                let index = usize::from(start.wrapping_add(i as u16) & (RECV_BUFS - 1));
                (self.entry_bid[index], (len - i * RECV_BUF_SIZE).min(RECV_BUF_SIZE))
            })
            .collect()
    }

    pub(super) fn publish(&self) {
        // The ring's tail overlays the reserved field of entry 0 (struct io_uring_buf_ring), 14 bytes in.
        // SAFETY: inside the mapping, 2-aligned; the kernel reads it with acquire semantics.
        let tail = unsafe { &*(self.entries.cast::<u8>().add(14).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }

    pub(super) fn buf(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * RECV_BUF_SIZE;
        &self.data[start..start + len.min(RECV_BUF_SIZE)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // Closing the ring's descriptor cancels its receives asynchronously: the kernel may still write into these
        // buffers after the ring is dropped. They are left to the process's exit (a driver is dropped once, when
        // the broker stops) rather than freed under the kernel's hands.
        std::mem::forget(std::mem::take(&mut self.data));
        let _ = self.map_len;
    }
}
