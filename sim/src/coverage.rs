//! What a run really exercised, counted from what happened (packets the clients received, the broker's events,
//! the faults injected), not from the options drawn: a seed whose options allow shared subscriptions but in which
//! no shared subscription ever delivered does not count for them. The vopr sums this over seeds into its coverage
//! table, and `--require-coverage` fails naming any row that no seed reached.

use std::fmt;

macro_rules! features {
    ($($(#[$doc:meta])* $name:ident => $text:literal,)*) => {
        /// One row of the coverage table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Feature {
            $($(#[$doc])* $name,)*
        }

        impl Feature {
            /// Every row, in table order.
            pub const ALL: &'static [Feature] = &[$(Feature::$name,)*];

            /// The row's text.
            pub fn text(self) -> &'static str {
                match self {
                    $(Feature::$name => $text,)*
                }
            }
        }
    };
}

features! {
    Qos0Delivered => "a QoS 0 message delivered",
    Qos1Delivered => "a QoS 1 message delivered",
    Qos2Delivered => "a QoS 2 message delivered",
    RetainedOnSubscribe => "a retained message sent on subscribe",
    RetainedExpiredBeforeSubscribe => "a retained message expired before a SUBSCRIBE matched it",
    SharedDelivered => "a shared subscription delivered",
    WillPublished => "a will published at once",
    WillAfterDelay => "a will published after its delay",
    WillCancelled => "a delayed will cancelled by the session resuming",
    WillOwedAfterDelay => "a delayed will owed after its delay, its client away",
    WillQos0 => "a will of QoS 0 delivered",
    WillQos2 => "a will of QoS 2 delivered",
    WillRetained => "a will with Retain delivered",
    DisconnectWithWill => "a DISCONNECT with Will Message (0x04)",
    TakeoverWithWill => "a takeover of a connection with a will",
    ManyClients => "more than 32 clients connected in one run",
    SubscriptionIdDelivered => "a Subscription Identifier delivered",
    SessionExpired => "a session expired while offline",
    ExpirySetByDisconnect => "a Session Expiry Interval set by DISCONNECT",
    RetainUnavailable => "Retain Available 0 in CONNACK",
    RetainRefused => "a retained PUBLISH while retain is unavailable",
    AssignedClientId => "a client identifier assigned by the broker",
    SessionResumed => "a session resumed (Session Present 1)",
    Redelivered => "a message resent with DUP",
    ExpiryDelivered => "a message with an expiry interval delivered",
    ExpiringOwed => "a QoS 1/2 message with an expiry delivered in the liveness phase",
    ExpiringInOrder => "a message with an expiry held in order behind an earlier one of its publisher",
    PublishesCoalesced => "PUBLISHes sent back to back in one segment",
    ClientTopicAlias => "a client's PUBLISH by Topic Alias",
    SubscribeRefused => "a subscription refused in SUBACK",
    PublishRefused => "a PUBLISH refused in PUBACK/PUBREC",
    PublisherHeld => "a publisher held by flow control",
    MessagesDropped => "a message dropped by the broker (stats)",
    DeferredVerdict => "a CONNECT waiting for a deferred verdict",
    KeepAliveTimeout => "a connection closed by keep alive",
    ServerDisconnect => "a DISCONNECT from the broker",
    MaxQosInConnack => "Maximum QoS below 2 in CONNACK",
    MaxQosGrantedLower => "a subscription granted below its QoS by Maximum QoS",
    MaxQosRefused => "a PUBLISH or will above Maximum QoS refused with 0x9B",
    PublishRateRefused => "a PUBLISH over the publish rate refused with 0x97",
    PublishRateFlood => "a publish flood disconnected with 0x96",
    EnhancedAuth => "a CONNECT completed by an enhanced AUTH exchange",
    EnhancedAuthRefused => "an enhanced AUTH exchange refused with CONNACK 0x87",
    EnhancedAuthBadMethod => "an unknown Authentication Method refused with 0x8C",
    Reauthenticated => "a re-authentication (AUTH 0x19) ended with AUTH 0x00",
    ReauthRefused => "a failed re-authentication ended with DISCONNECT 0x87",
    IdentityAuthenticated => "a CONNECT authenticated as its verified name",
    IdentityMissingRefused => "a CONNECT without a verified name refused 0x87 (3.1.1: 5)",
    IdentityUnknownRefused => "a verified name of no user refused 0x86 (3.1.1: 4)",
    IdentityIgnoredElsewhere => "a verified name ignored by a listener not using it",
    IdentityAuthorised => "a SUBACK authorising as the name authenticated",
    SysChecked => "$SYS statistics checked against the world's counts",
    MaxQos0InConnack => "Maximum QoS 0 in CONNACK",
    ConnectRateRefused => "a CONNECT over the connect rate refused with 0x9F",
    FaultCut => "fault: a connection cut mid-packet",
    FaultClientCrash => "fault: a client crash",
    FaultSlowReader => "fault: a client that stops reading",
    FaultTimeJump => "fault: the clock jumps",
    FaultMisbehaving => "fault: a misbehaving client",
    FaultTakeover => "fault: a takeover of a half-open connection",
    FaultBrokerCrash => "fault: a broker crash and restart",
    FaultTornCommit => "fault: a broker crash during a commit",
    FaultDiskFull => "fault: a full disk",
    RestartClockBack => "fault: the broker restarted on a clock set back",
    RestartClockForward => "fault: the broker restarted on a clock set forward",
}

/// The rows a run reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage(u128);

impl Coverage {
    pub fn hit(&mut self, feature: Feature) {
        self.0 |= 1 << feature as u32;
    }

    pub fn has(self, feature: Feature) -> bool {
        self.0 & (1 << feature as u32) != 0
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reached: Vec<&str> = Feature::ALL
            .iter()
            .filter(|feature| self.has(**feature))
            .map(|feature| feature.text())
            .collect();
        write!(f, "{}", reached.join("; "))
    }
}

/// The table over many seeds: in how many each row happened.
#[derive(Debug, Clone)]
pub struct Table {
    pub seeds: u64,
    pub counts: Vec<u64>,
}

impl Default for Table {
    fn default() -> Table {
        Table {
            seeds: 0,
            counts: vec![0; Feature::ALL.len()],
        }
    }
}

impl Table {
    pub fn add(&mut self, coverage: Coverage) {
        self.seeds += 1;
        for (count, feature) in self.counts.iter_mut().zip(Feature::ALL) {
            *count += u64::from(coverage.has(*feature));
        }
    }

    /// Rows no seed reached.
    pub fn missing(&self) -> Vec<Feature> {
        Feature::ALL
            .iter()
            .zip(&self.counts)
            .filter(|(_, count)| **count == 0)
            .map(|(feature, _)| *feature)
            .collect()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "coverage: in how many of {} passing seeds each happened", self.seeds)?;
        for (feature, count) in Feature::ALL.iter().zip(&self.counts) {
            let share = *count as f64 * 100.0 / self.seeds.max(1) as f64;
            writeln!(f, "  {:<56} {count:>7} {share:>5.1}%", feature.text())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_counts_seeds_per_row_and_names_missing_ones() {
        let mut one = Coverage::default();
        one.hit(Feature::Qos1Delivered);
        one.hit(Feature::Qos1Delivered);
        one.hit(Feature::FaultDiskFull);
        let mut table = Table::default();
        table.add(one);
        table.add(Coverage::default());
        assert_eq!(table.seeds, 2);
        assert_eq!(table.counts[Feature::Qos1Delivered as usize], 1);
        assert_eq!(table.counts[Feature::FaultDiskFull as usize], 1);
        let missing = table.missing();
        assert!(missing.contains(&Feature::Qos0Delivered));
        assert!(!missing.contains(&Feature::Qos1Delivered));
        assert_eq!(missing.len(), Feature::ALL.len() - 2);
        assert!(Feature::ALL.len() <= 128, "Coverage is a 128-bit set");
    }
}
