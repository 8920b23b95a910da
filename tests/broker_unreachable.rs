//! `petition-gateway run` with no broker at its bootstrap servers: one log line that names
//! them and says how to start the local broker, `/readyz` saying why it is not ready, and
//! none of librdkafka's connection errors (every client used to repeat them twice a second).
//! Runs the real binary; needs no broker (it must find none).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kills the gateway when the test ends, also when it fails.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on: bound once by us, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn lines_with(lines: &Mutex<Vec<String>>, needle: &str) -> Vec<String> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

#[tokio::test]
async fn no_broker_is_one_clear_line_and_a_reason_on_readyz() {
    let bootstrap = format!("127.0.0.1:{}", closed_port());
    let repo = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new(env!("CARGO_BIN_EXE_petition-gateway"))
        .args(["run", "--config", &format!("{repo}/config/gateway.toml")])
        .env("GATEWAY__KAFKA__BOOTSTRAP_SERVERS", &bootstrap)
        .env("GATEWAY__HTTP__LISTEN", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _gateway = Gateway(child);
    let lines = Arc::new(Mutex::new(Vec::new()));
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        if let Some(line) = lines_with(&lines, "listening").first() {
            let addr = line.split("addr=").nth(1).unwrap();
            break addr.split_whitespace().next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "never listened: {lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // /readyz: not ready, and why.
    let client = reqwest::Client::new();
    let (status, body) = loop {
        let answer = client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap();
        if body.contains("cannot reach Kafka") {
            break (status, body);
        }
        assert!(Instant::now() < deadline, "/readyz said {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&bootstrap), "{body}");
    assert!(body.contains("scripts/kafka start"), "{body}");
    assert!(body.contains("connection refused"), "{body}");

    // Long enough for librdkafka's clients to have retried several times each.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let naming = lines_with(&lines, &bootstrap);
    assert_eq!(naming.len(), 1, "one line names the servers: {naming:#?}");
    assert!(naming[0].contains("WARN"), "{}", naming[0]);
    assert!(naming[0].contains("scripts/kafka start"), "{}", naming[0]);
    for noise in [
        "ERROR",
        "BrokerTransportFailure",
        "AllBrokersDown",
        "librdkafka",
    ] {
        assert!(
            lines_with(&lines, noise).is_empty(),
            "{noise} in the log: {:#?}",
            lines.lock().unwrap()
        );
    }
}
