//! Coverage is counted from what happened, so it never claims a feature the seed's options rule out, and it does
//! claim the common ones.

use sim::coverage::{Feature, Table};

#[test]
fn coverage_follows_what_happened_not_what_was_drawn() {
    let mut table = Table::default();
    for seed in 1..=40 {
        let report = sim::run(seed, &sim::RunConfig::new(false, Some(600))).expect("clean seeds pass");
        let (options, covered) = (&report.options, report.coverage);
        if !options.shared {
            assert!(!covered.has(Feature::SharedDelivered), "seed {seed}");
        }
        if !options.wills {
            assert!(!covered.has(Feature::WillPublished), "seed {seed}");
        }
        if !options.persistence {
            assert!(!covered.has(Feature::FaultBrokerCrash), "seed {seed}");
            assert!(!covered.has(Feature::FaultDiskFull), "seed {seed}");
        }
        if options.cut_rate == 0.0 {
            assert!(!covered.has(Feature::FaultCut), "seed {seed}");
        }
        table.add(covered);
    }
    assert_eq!(table.seeds, 40);
    assert!(table.counts[Feature::Qos1Delivered as usize] > 30);
    assert!(!table.missing().contains(&Feature::SessionResumed));
}
