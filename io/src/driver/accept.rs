//! New connections: accepting (with back-off when descriptors run out), opening each with its transport, binding
//! the listeners and choosing the I/O driver.

use super::*;

impl<C: Core> Driver<C> {
    pub(super) fn accept(&mut self, index: usize) {
        while self.accept_backoff.ready(self.now) && self.shutdown_deadline.is_none() {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let accepted = match &mut self.io {
                Io::Epoll => listener.socket.accept(),
                Io::Uring(ring) => ring.accept(index),
            };
            match accepted {
                Ok((stream, peer)) => {
                    if self.fd_exhaustion_logged {
                        self.fd_exhaustion_logged = false;
                        log::info!("accepting connections again");
                    }
                    let transport = Transport::new(&listener.transport);
                    match transport {
                        Ok(transport) => self.open(stream, peer, index, transport),
                        Err(e) => log::error!("cannot start TLS for {peer}: {e}"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // The peer gave up between its SYN and our accept: nothing to do but take the next one.
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    if is_resource_exhaustion(&e) {
                        if !self.fd_exhaustion_logged {
                            self.fd_exhaustion_logged = true;
                            log::warn!("cannot accept connections: {e}; pausing accepts until descriptors free up");
                        }
                    } else {
                        log::error!("accept on {}: {e}", listener.local);
                    }
                    // Retrying at once would spin on the same error; the timer resumes accepting.
                    self.accept_backoff.pause(self.now);
                }
            }
        }
    }

    pub(super) fn open(&mut self, mut stream: TcpStream, peer: SocketAddr, listener: usize, transport: Transport) {
        let id = ConnectionId(self.next_conn);
        self.next_conn += 1;
        // MQTT is request/response with small packets: Nagle would add latency to every ack.
        let _ = stream.set_nodelay(true);
        limit_unsent(&stream);
        match &mut self.io {
            Io::Epoll => {
                if let Err(e) = self
                    .poll
                    .registry()
                    .register(&mut stream, token(id), Interest::READABLE)
                {
                    log::error!("cannot register connection from {peer}: {e}");
                    return;
                }
            }
            Io::Uring(ring) => ring.register(id, &stream),
        }
        log::debug!("conn {}: accepted from {peer}", id.0);
        self.conns.insert(id, Box::new(Conn::new(stream, transport)));
        if let Some(metrics) = &mut self.metrics {
            metrics.on_open(id, listener);
        }
        self.feed(Input::Opened {
            conn: id,
            peer,
            listener: ListenerId(listener),
        });
    }
}

/// Bytes a socket may hold that the kernel has not sent yet. Past this the socket reports itself full, so a slow
/// subscriber's backlog stays in the core, which bounds it (`max_outbuf_bytes`) and drops QoS 0 beyond it, instead
/// of in a send buffer that autotuning grows to megabytes, where every message waits its turn however stale.
pub(super) const MAX_SOCKET_UNSENT: libc::c_int = 256 * 1024;

#[cfg(target_os = "linux")]
pub(super) fn limit_unsent(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let value = MAX_SOCKET_UNSENT;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from the pointer to `value`, which lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        // Only latency under overload depends on it.
        log::debug!("TCP_NOTSENT_LOWAT: {}", io::Error::last_os_error());
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn limit_unsent(_stream: &TcpStream) {}

pub(super) fn bind_one(listener: &Listener, transport: TransportConfig) -> Result<BoundListener, DriverError> {
    let bind_err = |source| DriverError::Bind {
        address: listener.address,
        source,
    };
    let socket = TcpListener::bind(listener.address).map_err(bind_err)?;
    let local = socket.local_addr().map_err(bind_err)?;
    Ok(BoundListener {
        socket,
        local,
        transport,
    })
}

/// io_uring where asked or where a probe ring works (`auto`), else epoll; one log line says which and why.
pub(super) fn choose_io(
    choice: IoDriver,
    coalesce: Duration,
    listeners: &[BoundListener],
    poll: &Poll,
) -> Result<Io, DriverError> {
    if choice == IoDriver::Epoll {
        log::info!("io driver: epoll (configured)");
        return Ok(Io::Epoll);
    }
    let fds: Vec<_> = listeners.iter().map(|l| l.socket.as_raw_fd()).collect();
    match uring::Ring::new(&fds, poll.as_raw_fd(), coalesce) {
        Ok(ring) => {
            let why = match choice {
                IoDriver::Uring => "configured",
                _ => "the probe ring works",
            };
            let coalescing = match coalesce.as_micros() {
                0 => "off".to_string(),
                us => format!("{us} µs windows while many quiet clients send"),
            };
            log::info!(
                "io driver: io_uring ({why}; multishot accept, receives bounded to 64 KiB into provided buffers; \
                 coalescing {coalescing})"
            );
            Ok(Io::Uring(Box::new(ring)))
        }
        Err(e) if choice == IoDriver::Auto => {
            log::info!("io driver: epoll (io_uring unavailable: {e})");
            Ok(Io::Epoll)
        }
        Err(e) => Err(DriverError::Poll(io::Error::new(
            e.kind(),
            format!("io = \"uring\" but io_uring is unavailable: {e}"),
        ))),
    }
}

pub(super) fn set_nonblocking(stream: &TcpStream) {
    let fd = stream.as_raw_fd();
    // SAFETY: fcntl on a descriptor the stream owns; flags are read, then written back with O_NONBLOCK.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// Errors that mean "out of descriptors or kernel memory": they pass as connections close.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
