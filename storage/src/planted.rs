//! Known storage bugs that can be switched on with the `planted-bugs` feature, so that the vopr's self-test proves
//! the simulator's disk faults and durability checks catch them.

/// A bug to plant in the storage code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// The group commit writes its records but skips the fdatasync, so acknowledgements leave before their records
    /// are durable: a power cut loses acknowledged state.
    SyncSkippedBeforeAck,
    /// A snapshot is renamed into place (and the directory synced) before its contents are synced: a power cut
    /// leaves a damaged snapshot where a good one was promised.
    SnapshotRenamedBeforeSync,
    /// Recovery skips a damaged frame in the middle of the log and replays what follows, instead of refusing to
    /// start: what the damaged record said is silently lost.
    RecoverySkipsDamagedFrame,
}
