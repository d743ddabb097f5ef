//! Subscription tree benchmark: matches per second with 100,000 subscriptions of a realistic mix, and memory per
//! subscription measured with a counting global allocator.
//!
//! Run with `cargo bench -p mqtt-core --bench topic`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mqtt_core::packet::SubscriptionOptions;
use mqtt_core::topic::{RetainedTree, Subscription, SubscriptionTree, TopicMatch};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Counts live heap bytes so memory per subscription can be measured without external tools.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` unchanged and only updates counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SUBSCRIPTIONS: usize = 100_000;

fn sub(id: u32) -> Subscription {
    Subscription {
        options: SubscriptionOptions::default(),
        identifier: Some(id),
    }
}

/// 100,000 subscriptions: mostly one device or site per filter, a few fan-in dashboards and a few `#`-heavy ones.
fn filters() -> Vec<(String, Option<&'static str>)> {
    let mut f: Vec<(String, Option<&'static str>)> = Vec::with_capacity(SUBSCRIPTIONS);
    for id in 0..50_000 {
        f.push((format!("devices/{id}/telemetry"), None));
    }
    for id in 0..20_000 {
        f.push((format!("devices/{id}/cmd/+"), None));
    }
    for n in 0..10_000 {
        f.push((format!("site/{n}/#"), None));
    }
    for n in 0..19_800 {
        f.push((format!("site/{}/floor/{}/+/temp", n % 10_000, n / 10_000), None));
    }
    // Dashboards and ingesters watching everyone.
    for _ in 0..100 {
        f.push(("devices/+/status".to_owned(), None));
    }
    for _ in 0..20 {
        f.push(("devices/+/telemetry".to_owned(), Some("ingest")));
    }
    for _ in 0..50 {
        f.push(("site/+/floor/#".to_owned(), None));
    }
    for _ in 0..20 {
        f.push(("#".to_owned(), None));
    }
    for _ in 0..10 {
        f.push(("$SYS/#".to_owned(), None));
    }
    assert_eq!(f.len(), SUBSCRIPTIONS);
    f
}

fn build(filters: &[(String, Option<&'static str>)]) -> SubscriptionTree<u32> {
    let mut key_rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let mut tree = SubscriptionTree::new(mqtt_core::hash::HashKeys::draw(&mut key_rng));
    for (key, (filter, group)) in filters.iter().enumerate() {
        let key = key as u32;
        tree.insert(filter, *group, key, sub(key));
    }
    tree
}

/// A deterministic mix of typical topics.
fn topics() -> Vec<String> {
    (0..1_000u32)
        .map(|i| match i % 4 {
            0 => format!("devices/{}/telemetry", (i * 7919) % 50_000),
            1 => format!("devices/{}/status", (i * 104_729) % 50_000),
            2 => format!("site/{}/floor/1/room{}/temp", (i * 31) % 10_000, i % 7),
            _ => format!("devices/{}/cmd/reboot", (i * 13) % 20_000),
        })
        .collect()
}

fn report_memory() {
    let filters = filters();
    let before = LIVE.load(Ordering::Relaxed);
    let allocs_before = ALLOCATIONS.load(Ordering::Relaxed);
    let tree = build(&filters);
    let after = LIVE.load(Ordering::Relaxed);
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs_before;
    let bytes = after.saturating_sub(before);
    println!(
        "topic tree memory: {} subscriptions, {} bytes live ({:.1} bytes/subscription), {} allocations while building",
        tree.len(),
        bytes,
        bytes as f64 / SUBSCRIPTIONS as f64,
        allocs
    );
    drop(tree);
    let freed = LIVE.load(Ordering::Relaxed);
    println!(
        "topic tree memory after drop: {} bytes still live (should be ~0)",
        freed.saturating_sub(before)
    );

    let mut tree = build(&filters);
    for (key, (filter, group)) in filters.iter().enumerate() {
        tree.remove(filter, *group, key as u32);
    }
    println!(
        "topic tree memory after removing every subscription: {} bytes still live",
        LIVE.load(Ordering::Relaxed).saturating_sub(before)
    );
}

fn report_throughput(tree: &mut SubscriptionTree<u32>, topics: &[String]) {
    let mut out: Vec<TopicMatch<u32>> = Vec::with_capacity(1024);
    let rounds = 200;
    let mut matched = 0usize;
    let allocs_before = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    for _ in 0..rounds {
        for t in topics {
            out.clear();
            tree.match_topic(t, |k| k % 2 == 0, &mut out);
            matched += out.len();
        }
    }
    let elapsed = start.elapsed();
    let n = rounds * topics.len();
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs_before;
    println!(
        "topic tree matching: {n} topics in {:.3} s = {:.0} matches/s ({:.0} ns/topic, {:.1} subscriptions delivered \
         per topic, {allocs} allocations)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / n as f64,
        matched as f64 / n as f64
    );
}

fn bench(c: &mut Criterion) {
    report_memory();
    let mut tree = build(&filters());
    let topics = topics();
    report_throughput(&mut tree, &topics);

    let mut group = c.benchmark_group("topic_tree_100k");
    group.throughput(Throughput::Elements(topics.len() as u64));
    let mut out: Vec<TopicMatch<u32>> = Vec::with_capacity(1024);
    group.bench_function("match_typical_topics", |b| {
        b.iter(|| {
            for t in &topics {
                out.clear();
                tree.match_topic(black_box(t), |_| true, &mut out);
                black_box(&out);
            }
        })
    });
    group.finish();

    let mut retained = RetainedTree::new();
    for (i, (filter, _)) in filters().iter().enumerate() {
        // Retained topics shaped like the subscriptions, wildcards replaced by a concrete level.
        let topic = filter.replace('+', "x").replace("/#", "/last").replace('#', "all");
        retained.insert(&topic, i);
    }
    let mut group = c.benchmark_group("retained_100k");
    group.bench_function("for_each_match_site_n_hash", |b| {
        b.iter(|| {
            let mut n = 0usize;
            retained.for_each_match(black_box("site/42/#"), |_, _| n += 1);
            n
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
