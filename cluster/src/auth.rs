//! The authenticator every broker a leader builds shares: the leader rebuilds its broker at each leadership change
//! (`Broker::restore` from the image), and each rebuilt broker must check passwords and ACLs exactly as the one
//! before it, so the node holds one authenticator and hands each broker a handle to it.

use mqtt_core::broker::{AuthDecision, Authenticator, ClientIdentity, ConnectInfo};
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// A handle to one authenticator, shared by every broker of a node (and by clones of its `NodeConfig`). A node
/// and its brokers live on one thread (the driver's loop), as a broker's authenticator does.
#[derive(Clone)]
pub struct SharedAuthenticator(Rc<RefCell<Box<dyn Authenticator>>>);

impl SharedAuthenticator {
    pub fn new(authenticator: Box<dyn Authenticator>) -> SharedAuthenticator {
        SharedAuthenticator(Rc::new(RefCell::new(authenticator)))
    }

    /// Swaps in another authenticator (freshly loaded files, on SIGHUP) for every broker holding a handle.
    pub fn replace(&self, authenticator: Box<dyn Authenticator>) {
        *self.0.borrow_mut() = authenticator;
    }
}

impl fmt::Debug for SharedAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedAuthenticator")
    }
}

// Each call borrows for its own duration only, and an authenticator never calls back into the broker, so the
// borrows never overlap.
impl Authenticator for SharedAuthenticator {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        self.0.borrow_mut().authenticate(info)
    }

    fn continue_auth(&mut self, client_id: &str, method: &str, data: Option<&[u8]>) -> AuthDecision {
        self.0.borrow_mut().continue_auth(client_id, method, data)
    }

    fn authorize_publish(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        self.0.borrow().authorize_publish(client, topic)
    }

    fn authorize_subscribe(&self, client: ClientIdentity<'_>, filter: &str) -> bool {
        self.0.borrow().authorize_subscribe(client, filter)
    }

    fn authorize_read(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        self.0.borrow().authorize_read(client, topic)
    }

    fn restricts_reads(&self) -> bool {
        self.0.borrow().restricts_reads()
    }
}
