//! The authenticator every broker a leader builds shares: the leader rebuilds its broker at each leadership change
//! (`Broker::restore` from the image), and each rebuilt broker must check passwords and ACLs exactly as the one
//! before it, so the node holds one authenticator and hands each broker a handle to it.

use mqtt_core::broker::{AuthDecision, Authenticator, ClientIdentity, ConnectInfo};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

type Inner = Box<dyn Authenticator + Send>;

/// A handle to one authenticator, shared by every broker of a node (and by clones of its `NodeConfig`).
#[derive(Clone)]
pub struct SharedAuthenticator(Arc<Mutex<Inner>>);

impl SharedAuthenticator {
    pub fn new(authenticator: Inner) -> SharedAuthenticator {
        SharedAuthenticator(Arc::new(Mutex::new(authenticator)))
    }

    /// Swaps in another authenticator (freshly loaded files) for every broker holding a handle.
    pub fn replace(&self, authenticator: Inner) {
        *self.lock() = authenticator;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The node runs on one thread; a poisoned lock only means a panic elsewhere, and the value is still whole.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for SharedAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedAuthenticator")
    }
}

impl Authenticator for SharedAuthenticator {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        self.lock().authenticate(info)
    }

    fn continue_auth(&mut self, client_id: &str, method: &str, data: Option<&[u8]>) -> AuthDecision {
        self.lock().continue_auth(client_id, method, data)
    }

    fn authorize_publish(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        self.lock().authorize_publish(client, topic)
    }

    fn authorize_subscribe(&self, client: ClientIdentity<'_>, filter: &str) -> bool {
        self.lock().authorize_subscribe(client, filter)
    }

    fn authorize_read(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        self.lock().authorize_read(client, topic)
    }
}
