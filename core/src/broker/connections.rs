//! The open connections by id. A lookup says what a missing id means, because the two cases call for opposite
//! treatment:
//!
//! - [`Connections::if_open`]: the id comes from outside the call (an input from the driver, a timer, a list of ids
//!   taken before connections were closed), or a call made since the caller last saw the connection may have
//!   closed it. Missing means it closed meanwhile: a stale id, legitimately ignored.
//! - [`Connections::expected`]: the caller knows the connection is open: it was just inserted or looked up, nothing
//!   since could close it, or a session is attached to it (`Session::connection` names only open connections:
//!   `end_connection` detaches the session as it removes the connection). Missing is a broken invariant: debug
//!   builds (the tests', the simulator's) stop there; release builds ignore the id as a stale one, which is what
//!   every such lookup did before it said which it was.

use super::connection::Connection;
use super::ConnectionId;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Connections(BTreeMap<ConnectionId, Box<Connection>>);

impl Connections {
    pub fn insert(&mut self, conn: ConnectionId, connection: Connection) {
        self.0.insert(conn, Box::new(connection));
    }

    pub fn remove(&mut self, conn: ConnectionId) -> Option<Box<Connection>> {
        self.0.remove(&conn)
    }

    pub fn contains(&self, conn: ConnectionId) -> bool {
        self.0.contains_key(&conn)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The ids open now, in order (a copy: the caller may close connections while it walks them).
    pub fn ids(&self) -> Vec<ConnectionId> {
        self.0.keys().copied().collect()
    }

    /// The connection, unless it closed meanwhile (see the module's doc).
    pub fn if_open(&self, conn: ConnectionId) -> Option<&Connection> {
        self.0.get(&conn).map(|c| &**c)
    }

    /// The connection, unless it closed meanwhile (see the module's doc).
    pub fn if_open_mut(&mut self, conn: ConnectionId) -> Option<&mut Connection> {
        self.0.get_mut(&conn).map(|c| &mut **c)
    }

    /// The connection, which the caller knows to be open (see the module's doc); `None` only in release builds,
    /// after a bug.
    #[track_caller]
    pub fn expected(&self, conn: ConnectionId) -> Option<&Connection> {
        let found = self.0.get(&conn).map(|c| &**c);
        debug_assert!(
            found.is_some(),
            "connection {} expected open: a broken invariant",
            conn.0
        );
        found
    }

    /// The connection, which the caller knows to be open (see the module's doc); `None` only in release builds,
    /// after a bug.
    #[track_caller]
    pub fn expected_mut(&mut self, conn: ConnectionId) -> Option<&mut Connection> {
        let found = self.0.get_mut(&conn).map(|c| &mut **c);
        debug_assert!(
            found.is_some(),
            "connection {} expected open: a broken invariant",
            conn.0
        );
        found
    }
}
