//! The load generator against a real Mosquitto: QoS 1 runs must lose nothing, or the tool's numbers mean nothing.
//! Skipped (with a message) where Mosquitto is not installed; CI installs it.

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::Duration;

struct Mosquitto(Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_mosquitto() -> Option<(Mosquitto, u16)> {
    let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = Command::new(binary).args(["-p", &port.to_string()]).spawn().ok()?;
    std::thread::sleep(Duration::from_millis(500));
    Some((Mosquitto(child), port))
}

fn bench(port: u16, workload: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mqtt-bench"))
        .args([
            "--broker",
            &format!("127.0.0.1:{port}"),
            "--workload",
            workload,
            "--clients",
            "3",
            "--qos",
            "1",
        ])
        // A paced rate: at full speed Mosquitto drops past its default queue of 1,000 messages, by design.
        .args(["--duration", "1", "--rate", "500", "--json"])
        .output()
        .expect("mqtt-bench runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn qos1_fan_in_and_fan_out_lose_nothing_against_mosquitto() {
    let Some((_broker, port)) = start_mosquitto() else {
        eprintln!("mosquitto is not installed: skipping");
        return;
    };
    for workload in ["fan-in", "fan-out"] {
        let json = bench(port, workload);
        assert!(json.contains("\"lost\":0,"), "{workload}: {json}");
        assert!(!json.contains("\"received\":0,"), "{workload}: {json}");
    }
}
