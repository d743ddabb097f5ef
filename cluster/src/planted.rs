//! Known cluster bugs behind the `planted-bugs` feature, switched on one at a time (process-wide) by the simulator
//! to prove that it finds each. Without the feature every switch is off and compiles away.

#[cfg(feature = "planted-bugs")]
mod switch {
    use std::sync::atomic::{AtomicU8, Ordering};

    /// Which bug is planted.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ClusterBug {
        /// Client outputs go out when their entry is proposed, not when it is committed.
        ReleaseBeforeCommit,
        /// At restart, recovered entries the snapshot already holds are applied again on top of it.
        ReapplyAfterSnapshot,
        /// check-quorum off: a leader cut off from its quorum keeps leading and serving.
        KeepServingWithoutQuorum,
    }

    static PLANTED: AtomicU8 = AtomicU8::new(0);

    /// Plants `bug` (or none) for every node of this process. The simulator runs one seed at a time per thread
    /// and the vopr plants bugs only in its self-test, one bug per process run.
    pub fn plant(bug: Option<ClusterBug>) {
        let code = match bug {
            None => 0,
            Some(ClusterBug::ReleaseBeforeCommit) => 1,
            Some(ClusterBug::ReapplyAfterSnapshot) => 2,
            Some(ClusterBug::KeepServingWithoutQuorum) => 3,
        };
        PLANTED.store(code, Ordering::Relaxed);
    }

    pub(crate) fn is(code: u8) -> bool {
        PLANTED.load(Ordering::Relaxed) == code
    }
}

#[cfg(feature = "planted-bugs")]
pub use switch::{plant, ClusterBug};

#[cfg(feature = "planted-bugs")]
pub(crate) fn release_before_commit() -> bool {
    switch::is(1)
}

#[cfg(feature = "planted-bugs")]
pub(crate) fn reapply_after_snapshot() -> bool {
    switch::is(2)
}

#[cfg(feature = "planted-bugs")]
pub(crate) fn keep_serving_without_quorum() -> bool {
    switch::is(3)
}

#[cfg(not(feature = "planted-bugs"))]
pub(crate) fn release_before_commit() -> bool {
    false
}

#[cfg(not(feature = "planted-bugs"))]
pub(crate) fn reapply_after_snapshot() -> bool {
    false
}

#[cfg(not(feature = "planted-bugs"))]
pub(crate) fn keep_serving_without_quorum() -> bool {
    false
}
