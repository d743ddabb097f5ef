//! What the operator asks of a running broker: signals (SIGHUP reloads passwords, ACLs and certificates; SIGINT and
//! SIGTERM shut down gracefully with 0x8B) and the HTTP endpoint for health and metrics.

use super::*;

impl<C: Core> Driver<C> {
    /// Serve `/metrics` and `/health` on `address` (see `crate::http`); returns the address bound.
    pub fn serve_http(&mut self, address: SocketAddr) -> Result<SocketAddr, DriverError> {
        let labels = self
            .listeners
            .iter()
            .zip(&self.listener_settings)
            .map(|(bound, settings)| ListenerLabel {
                address: bound.local.to_string(),
                transport: settings.protocol.as_str(),
            })
            .collect();
        let mut metrics = Metrics::new(labels);
        if self.broker.cluster_health().is_some() {
            metrics = metrics.with_cluster();
        }
        let shared = Arc::new(Shared::new(self.waker()?));
        let local = crate::http::start(address, metrics.registry(), Arc::clone(&shared))
            .map_err(|source| DriverError::Bind { address, source })?;
        self.metrics = Some(metrics);
        self.http = Some(shared);
        Ok(local)
    }

    /// The HTTP thread waits for fresh values: copy the core's counters in and say how the broker is.
    pub(super) fn answer_http(&mut self) {
        let (Some(http), Some(metrics)) = (&self.http, &self.metrics) else {
            return;
        };
        if !http.is_asked() {
            return;
        }
        metrics.refresh(&self.broker.stats(), &self.broker.gauges());
        if let Some(storage) = &self.storage {
            metrics.set_fsyncs(storage.fsyncs());
        }
        let cluster = self.broker.cluster_health();
        if let Some((node, held_qos0_dropped)) = cluster {
            metrics.refresh_cluster(&node, held_qos0_dropped);
        }
        http.answer(Health {
            cluster: cluster.map(|(node, _)| node),
            accepting: self.shutdown_deadline.is_none()
                && self.accept_backoff.ready(self.now)
                && !self.listeners.is_empty(),
            storage_writable: !self.storage.as_ref().is_some_and(Storage::is_suspended),
        });
    }

    /// Returns true when the process should exit immediately (a second stop signal).
    pub(super) fn handle_signals(&mut self) -> bool {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGHUP => {
                    match self.logger.map(Logger::reopen) {
                        Some(Err(e)) => log::error!("SIGHUP: {e}"),
                        Some(Ok(())) => log::info!("SIGHUP: log file reopened"),
                        None => {}
                    }
                    self.reload_auth();
                    self.reload_tls();
                }
                _ if self.shutdown_deadline.is_some() => return true,
                _ => self.begin_shutdown(),
            }
        }
        false
    }

    /// Swaps in freshly loaded password and ACL files; connections stay up. A bad file keeps the old ones.
    pub(super) fn reload_auth(&mut self) {
        let Some(source) = &self.auth_source else {
            return;
        };
        // Jobs still queued against the old files are verified against them: a verdict that is a moment old.
        let queue = self.verifier.as_ref().map(Verifier::queue);
        match source.load().map(|a| match queue {
            Some(queue) => a.with_verifier(queue),
            None => a,
        }) {
            Ok(authenticator) => {
                self.broker.set_authenticator(Box::new(authenticator));
                log::info!("SIGHUP: password and ACL files reloaded");
            }
            Err(e) => log::error!("SIGHUP: keeping the previous password and ACL files: {e}"),
        }
    }

    /// Swaps in freshly read certificates and keys (a renewed certificate, say) for the connections accepted from
    /// now on; open connections keep the session they negotiated. A file that cannot be used keeps every
    /// listener's previous configuration.
    pub(super) fn reload_tls(&mut self) {
        if self.listener_settings.iter().all(|l| l.tls.is_none()) {
            return;
        }
        match crate::tls::load_listeners(&self.listener_settings) {
            Ok(configs) => {
                for (listener, tls) in self.listeners.iter_mut().zip(configs) {
                    listener.transport.tls = tls;
                }
                log::info!("SIGHUP: TLS certificates and keys reloaded");
            }
            Err(e) => log::error!("SIGHUP: keeping the previous TLS certificates: {e}"),
        }
    }

    pub(super) fn begin_shutdown(&mut self) {
        log::info!("shutting down: {} connection(s) open", self.conns.len());
        let deadline = self.now + SHUTDOWN_TIMEOUT;
        self.shutdown_deadline = Some(deadline);
        // Stop accepting: dropping the listeners closes their sockets, so new clients are refused at once.
        for (i, mut listener) in self.listeners.drain(..).enumerate() {
            match &mut self.io {
                Io::Epoll => {
                    let _ = self.poll.registry().deregister(&mut listener.socket);
                }
                Io::Uring(ring) => ring.close_listener(i),
            }
        }
        self.accept_backoff.clear();
        self.feed(Input::Shutdown);
        // The core closes every connection it knows; close the rest (not yet CONNECTed) the same way.
        let open: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Open)
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            self.start_close(id, deadline);
        }
        self.flush_dirty_and_settle();
    }
}
