//! The bounded situations the cluster model explores.

#[cfg(feature = "planted-bugs")]
use mqtt_cluster::ClusterBug;

#[derive(Debug, Clone)]
pub struct ClusterScenario {
    pub name: &'static str,
    /// Clock steps each node may take (a node needs 2 to campaign; a leader 1 per heartbeat and, with
    /// check-quorum, 2 without a quorum's word to step down).
    pub ticks: [u8; 3],
    /// Links the network may cut (each may heal later).
    pub cuts: u8,
    /// Messages the client publishes.
    pub messages: u8,
    /// Connections the client may open (one per leader it follows).
    pub connects: u8,
    #[cfg(feature = "planted-bugs")]
    pub planted: Option<ClusterBug>,
}

impl ClusterScenario {
    const fn new(name: &'static str, ticks: [u8; 3], cuts: u8, messages: u8, connects: u8) -> ClusterScenario {
        ClusterScenario {
            name,
            ticks,
            cuts,
            messages,
            connects,
            #[cfg(feature = "planted-bugs")]
            planted: None,
        }
    }
}

/// A scenario from `T1,T2,T3,LOSSES,MESSAGES,CONNECTS` (for exploring bounds from the command line).
pub fn custom(bounds: &str) -> Option<ClusterScenario> {
    let n: Vec<u8> = bounds
        .split(',')
        .map(|x| x.trim().parse().ok())
        .collect::<Option<_>>()?;
    let [t1, t2, t3, cuts, messages, connects] = n[..] else {
        return None;
    };
    Some(ClusterScenario::new(
        "cluster-custom",
        [t1, t2, t3],
        cuts,
        messages,
        connects,
    ))
}

/// What CI runs (about 40,000 states): a leader elected, a message acknowledged, and links cut so that the leader
/// may be deposed (by a higher term once a link heals) while its entry is uncommitted.
pub fn ci() -> Vec<ClusterScenario> {
    vec![ClusterScenario::new("cluster-leader-change", [2, 2, 2], 2, 1, 2)]
}

/// Longer bounds, for `cargo run -p verify --release` without `--ci`: also a leader that steps down by itself
/// (check-quorum) after two ticks cut off.
pub fn full() -> Vec<ClusterScenario> {
    vec![
        ClusterScenario::new("cluster-leader-change", [2, 2, 2], 2, 1, 2),
        ClusterScenario::new("cluster-check-quorum", [4, 3, 0], 2, 1, 2),
    ]
}

/// The scenario that exposes `ClusterBug::ReleaseBeforeCommit`: one leader, one message.
#[cfg(feature = "planted-bugs")]
pub fn planted_release_before_commit() -> ClusterScenario {
    ClusterScenario {
        planted: Some(ClusterBug::ReleaseBeforeCommit),
        ..ClusterScenario::new("planted-release-before-commit", [2, 0, 0], 0, 1, 1)
    }
}
