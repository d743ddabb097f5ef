//! Known cluster bugs behind the `planted-bugs` feature, planted one per node configuration
//! (`NodeConfig::planted_bug`) by the simulator to prove that it finds each. Without the feature every check is
//! `false` and compiles away.

use crate::config::NodeConfig;

/// A known bug the simulator must find.
#[cfg(feature = "planted-bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterBug {
    /// Client outputs go out when their entry is proposed, not when it is committed.
    ReleaseBeforeCommit,
    /// At restart, recovered entries the snapshot already holds are applied again on top of it.
    ReapplyAfterSnapshot,
    /// check-quorum off: a leader cut off from its quorum keeps leading and serving.
    KeepServingWithoutQuorum,
    /// The leader hands a relayed connection's outputs to the relay at once, not when the records they follow are
    /// committed: a relayed publisher gets its PUBACK for a record a failover can still lose.
    RelayBeforeCommit,
}

#[cfg(feature = "planted-bugs")]
fn planted(config: &NodeConfig, bug: ClusterBug) -> bool {
    config.planted_bug == Some(bug)
}

#[cfg(feature = "planted-bugs")]
pub(crate) fn release_before_commit(config: &NodeConfig) -> bool {
    planted(config, ClusterBug::ReleaseBeforeCommit)
}

#[cfg(feature = "planted-bugs")]
pub(crate) fn reapply_after_snapshot(config: &NodeConfig) -> bool {
    planted(config, ClusterBug::ReapplyAfterSnapshot)
}

#[cfg(feature = "planted-bugs")]
pub(crate) fn keep_serving_without_quorum(config: &NodeConfig) -> bool {
    planted(config, ClusterBug::KeepServingWithoutQuorum)
}

#[cfg(feature = "planted-bugs")]
pub(crate) fn relay_before_commit(config: &NodeConfig) -> bool {
    planted(config, ClusterBug::RelayBeforeCommit)
}

#[cfg(not(feature = "planted-bugs"))]
pub(crate) fn relay_before_commit(_: &NodeConfig) -> bool {
    false
}

#[cfg(not(feature = "planted-bugs"))]
pub(crate) fn release_before_commit(_: &NodeConfig) -> bool {
    false
}

#[cfg(not(feature = "planted-bugs"))]
pub(crate) fn reapply_after_snapshot(_: &NodeConfig) -> bool {
    false
}

#[cfg(not(feature = "planted-bugs"))]
pub(crate) fn keep_serving_without_quorum(_: &NodeConfig) -> bool {
    false
}
