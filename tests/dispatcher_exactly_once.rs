//! The dispatcher's promise with real processes and a real broker: the labeled sample
//! streams onto `petitions.inbound` (`petition-gateway import`, the live intake path)
//! while dispatcher processes are killed with SIGKILL, one of them in the middle of a
//! transaction, and restarted. Afterwards every petition is in exactly one case, every
//! case is on exactly one department or triage topic once, and the cases equal those of
//! an uninterrupted run, of two instances sharing the work, and of `replay`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rand::Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 4;

fn sample_path() -> PathBuf {
    petition_gateway::sample::sample_path()
}

/// Import needs every channel's connector to map the sample; the poll channels'
/// base URLs are never used by `import`.
fn import_config(prefix: &str) -> TestConfig {
    let unused = "http://127.0.0.1:9".to_string();
    let cfg = config_on_prefix(
        prefix,
        false,
        tempfile::tempdir().unwrap(),
        &[
            Connector::shipped("hotline"),
            Connector::shipped("city-app"),
            Connector::shipped("community-app"),
            Connector::shipped("open311"),
            Connector::shipped("leader-board").with("base", unused.clone()),
            Connector::shipped("supervision").with("base", unused),
        ],
    );
    with_partitions(&cfg, PARTITIONS);
    patient(&cfg);
    cfg
}

/// A dispatcher process: the gateway with one push connector and no pollers.
fn dispatcher_config(prefix: &str) -> TestConfig {
    let cfg = config_on_prefix(
        prefix,
        true,
        tempfile::tempdir().unwrap(),
        &[Connector::shipped("hotline")],
    );
    with_partitions(&cfg, PARTITIONS);
    patient(&cfg);
    cfg
}

/// The shared test config gives Kafka 3 s to acknowledge; with several debug processes
/// and the broker on two cores, a record can take longer, and a transaction that times
/// out is only redone (slowly), an import that times out stops.
fn patient(cfg: &TestConfig) {
    let text = std::fs::read_to_string(&cfg.file).unwrap();
    assert!(text.contains("message_timeout_ms = 3000\n"));
    let text = text.replace(
        "message_timeout_ms = 3000\n",
        "message_timeout_ms = 30000\n",
    );
    let text = text.replace(
        "[dispatcher]\n",
        "[dispatcher]\ntransaction_timeout_ms = 60000\n",
    );
    std::fs::write(&cfg.file, text).unwrap();
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .unwrap()
}

/// A child process killed when the test ends, passed or not.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dispatcher(cfg: &TestConfig, instance: &str, fault: Option<&str>) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_petition-gateway"));
    cmd.args(["run", "--config"])
        .arg(&cfg.file)
        .env("RUST_LOG", "info,rdkafka=warn")
        .env("GATEWAY__DISPATCHER__INSTANCE_ID", instance)
        .stdout(Stdio::null())
        .stderr(log_file(cfg.dir.path(), instance));
    if let Some(n) = fault {
        cmd.env("GATEWAY_FAULT_CRASH_BEFORE_COMMIT", n);
    }
    Proc(cmd.spawn().unwrap())
}

fn import(cfg: &TestConfig, rate: Option<u32>) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_petition-gateway"));
    cmd.args(["import", "--config"])
        .arg(&cfg.file)
        .arg(sample_path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file(cfg.dir.path(), "import"));
    if let Some(r) = rate {
        cmd.arg("--rate").arg(r.to_string());
    }
    Proc(cmd.spawn().unwrap())
}

fn stop(child: Proc) {
    drop(child);
}

fn wait_success(mut child: Proc, what: &str) {
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{what} failed: {status}");
}

/// Petition id → case id and case id → department, from `replay` on the same sample.
fn replay_cases() -> (HashMap<String, String>, HashMap<String, String>) {
    let cfg = import_config(&unique_prefix("replay"));
    let out = Command::new(env!("CARGO_BIN_EXE_petition-gateway"))
        .args(["replay", "--config"])
        .arg(&cfg.file)
        .arg(sample_path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut case_of = HashMap::new();
    let mut department = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let petition = v["petition_id"].as_str().unwrap().to_string();
        let case = v["case_id"].as_str().unwrap().to_string();
        if petition == case {
            department.insert(case.clone(), v["department"].as_str().unwrap().to_string());
        }
        case_of.insert(petition, case);
    }
    (case_of, department)
}

fn departments(log: &CaseLog) -> HashMap<String, String> {
    log.cases
        .iter()
        .map(|(id, c)| (id.clone(), c["department"].as_str().unwrap().to_string()))
        .collect()
}

/// Reads everything the run produced and checks the exactly-once properties.
/// Waits generously: debug builds of several dispatchers, importers and the broker share
/// two cores while both tests run. A shortfall after that is a lost record, not a slow one.
async fn finished_run(prefix: &str, petitions: usize) -> CaseLog {
    let started = Instant::now();
    let limit = Duration::from_secs(360);
    let log = read_case_log_within(prefix, petitions, Duration::from_secs(3), limit).await;
    assert_eq!(
        log.reports.len(),
        petitions,
        "petitions in no case after {:?}",
        started.elapsed()
    );
    let expected = log.department_records();
    let out = read_topics_within(
        &output_topics(prefix),
        |records| records.len() >= expected,
        Duration::from_secs(3),
        limit,
    )
    .await;
    eprintln!(
        "{prefix}: all cases read back after {:?}",
        started.elapsed()
    );
    assert_each_case_dispatched_once(prefix, &out, &log);
    log
}

/// Data records on the topic including those of aborted transactions.
fn count_uncommitted(topic: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique_prefix("counter"))
        .set("isolation.level", "read_uncommitted")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut count = 0;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(_)) => {
                count += 1;
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("counting {topic}: {e}"),
            None => {}
        }
    }
    count
}

/// The end of an instance's log, without per-petition lines, for failure messages.
/// The whole logs are kept under `target/failed-test-logs/` to be read afterwards.
fn log_tail(dir: &Path, instance: &str) -> String {
    let kept = repo().join("target/failed-test-logs").join(
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let _ = std::fs::create_dir_all(&kept);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = std::fs::copy(entry.path(), kept.join(entry.file_name()));
    }
    let text = std::fs::read_to_string(dir.join(format!("{instance}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            !l.contains("resent petition")
                && !l.contains("case opened")
                && !l.contains("report merged")
        })
        .collect();
    // What the last incarnation did with each record: a resend treated as new would
    // show up as opened or merged here.
    let last = text.rsplit("joined its group").next().unwrap_or("");
    format!(
        "{}\nlast incarnation: {} resent, {} opened, {} merged\nwhole logs kept in {}",
        lines[lines.len().saturating_sub(40)..].join("\n"),
        last.matches("resent petition").count(),
        last.matches("case opened").count(),
        last.matches("report merged").count(),
        kept.display()
    )
}

fn count_in_log(dir: &Path, instance: &str, needle: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("{instance}.log")))
        .unwrap_or_default()
        .matches(needle)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_the_sample_streams_changes_no_case() {
    let (replayed, replayed_departments) = replay_cases();
    let petitions = replayed.len();

    // The uninterrupted run.
    let straight = unique_prefix("straight");
    let straight_dispatcher = dispatcher_config(&straight);
    let quiet = dispatcher(&straight_dispatcher, "straight", None);
    wait_success(import(&import_config(&straight), None), "import");
    let straight_log = finished_run(&straight, petitions).await;
    stop(quiet);

    // The crashing run: SIGKILL at random moments while the sample streams in, one
    // incarnation aborting itself with a transaction's records written but not
    // committed, then the whole sample sent again (resends must add nothing).
    let crashing = unique_prefix("crashing");
    let cfg = dispatcher_config(&crashing);
    let importer_cfg = import_config(&crashing);
    let mut importer = import(&importer_cfg, Some(250));
    let mut rng = rand::rng();
    let (mut kills, mut incarnations, mut self_aborted) = (0, 0, 0);
    let started = Instant::now();
    loop {
        incarnations += 1;
        let fault = (incarnations == 3).then_some("1");
        let mut child = dispatcher(&cfg, "crashing", fault);
        if fault.is_some() {
            // This one aborts itself inside its first transaction.
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(800..2500))).await;
        }
        match child.0.try_wait().unwrap() {
            Some(status) => {
                assert!(!status.success());
                self_aborted += 1;
            }
            None => {
                child.0.kill().unwrap(); // SIGKILL
                child.0.wait().unwrap();
                kills += 1;
            }
        }
        if importer.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the import never finished"
        );
    }
    assert!(importer.0.wait().unwrap().success(), "import failed");
    eprintln!("crash run: import done after {:?}", started.elapsed());
    wait_success(import(&importer_cfg, None), "second import");
    let last = dispatcher(&cfg, "crashing", None);
    // The second import is all resends: wait until the dispatcher went through them,
    // then check that they added nothing.
    let deadline = Instant::now() + Duration::from_secs(360);
    let resent = loop {
        let resent = count_in_log(
            cfg.dir.path(),
            "crashing",
            "resent petition already in a case",
        );
        if resent >= petitions || Instant::now() > deadline {
            break resent;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        resent >= petitions,
        "the second import was not recognised: {resent}; the dispatcher's log ends:\n{}",
        log_tail(cfg.dir.path(), "crashing")
    );
    let crashing_log = finished_run(&crashing, petitions).await;
    stop(last);
    eprintln!("crash run: {incarnations} incarnations, {kills} SIGKILLs, {self_aborted} aborted mid-transaction");
    assert!(kills >= 3, "too few kills to mean anything: {kills}");
    assert_eq!(self_aborted, 1, "the mid-transaction crash did not happen");

    // The aborted transaction's records reached the log: exactly once is not merely
    // "nothing was written", readers skip them.
    let uncommitted_view = count_uncommitted(&format!("{crashing}petitions.cases"));
    let committed = crashing_log.cases.len() + crashing_log.reports.len();
    assert!(
        uncommitted_view > committed,
        "no uncommitted record was ever written ({uncommitted_view} records in all, {committed} committed)"
    );

    assert_eq!(crashing_log.case_of(), straight_log.case_of());
    assert_eq!(departments(&crashing_log), departments(&straight_log));
    // And live equals replay: the same code decides in both.
    assert_eq!(straight_log.case_of(), replayed);
    assert_eq!(departments(&straight_log), replayed_departments);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_give_the_cases_of_one() {
    let (replayed, replayed_departments) = replay_cases();
    let prefix = unique_prefix("pair");
    let cfg = dispatcher_config(&prefix);
    let a = dispatcher(&cfg, "pair-a", None);
    let b = dispatcher(&cfg, "pair-b", None);
    // Both in the group before the petitions come, so both get work.
    tokio::time::sleep(Duration::from_secs(4)).await;
    wait_success(import(&import_config(&prefix), None), "import");
    let log = finished_run(&prefix, replayed.len()).await;
    stop(a);
    stop(b);
    assert_eq!(log.case_of(), replayed);
    assert_eq!(departments(&log), replayed_departments);
    let by = |instance: &str| {
        log.cases
            .values()
            .filter(|c| c["dispatcher"] == instance)
            .count()
    };
    let (opened_a, opened_b) = (by("pair-a"), by("pair-b"));
    eprintln!("two instances: {opened_a} + {opened_b} cases opened");
    assert!(
        opened_a > 0 && opened_b > 0,
        "one instance did all the work"
    );
    assert_eq!(opened_a + opened_b, log.cases.len());
}
