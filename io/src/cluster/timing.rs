//! A commit's path in time, for measuring where it goes (issue #14): with `MQTT_CLUSTER_TIMING=path` in the
//! environment every node appends one line per step (wall-clock microseconds, the step, its numbers) to `path.<pid>`,
//! so the lines of three nodes on one machine can be lined up by entry index. Off (one relaxed load per step) when
//! the variable is unset.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// 0: not looked at yet, 1: off, 2: on.
static STATE: AtomicU8 = AtomicU8::new(0);
static SINK: Mutex<Option<BufWriter<File>>> = Mutex::new(None);

/// Whether steps are recorded.
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let on = std::env::var_os("MQTT_CLUSTER_TIMING").and_then(|path| {
                let path = format!("{}.{}", path.to_string_lossy(), std::process::id());
                File::create(path).ok()
            });
            let state = if let Some(file) = on {
                if let Ok(mut sink) = SINK.lock() {
                    *sink = Some(BufWriter::with_capacity(1 << 20, file));
                }
                2
            } else {
                1
            };
            STATE.store(state, Ordering::Relaxed);
            state == 2
        }
    }
}

/// Records `step` with its numbers, if enabled.
pub fn step(step: &str, a: u64, b: u64) {
    if !enabled() {
        return;
    }
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    if let Ok(mut sink) = SINK.lock() {
        if let Some(out) = sink.as_mut() {
            let _ = writeln!(out, "{us} {step} {a} {b}");
        }
    }
}

/// Writes out what is buffered (at the end of a run the buffer would otherwise be lost with the process).
pub fn flush() {
    if STATE.load(Ordering::Relaxed) == 2 {
        if let Ok(mut sink) = SINK.lock() {
            if let Some(out) = sink.as_mut() {
                let _ = out.flush();
            }
        }
    }
}
