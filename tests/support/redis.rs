//! A real `redis-server` on a random loopback port, started and stopped by the test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process with nothing persisted; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    /// Starts one, or prints why not and returns `None` when `redis-server` is not installed
    /// (CI installs it, so there these tests always run).
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            missing_tool("redis-server", "apt-get install redis-server");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { child: None, port };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Runs a `redis-cli` command against it: what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// Stops the server (as an outage would); `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(redis_server(self.port, &[]));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test cannot run for want of `what`: it prints why and is skipped, except in CI (the `CI`
/// variable set, as `.ci/run` sets it), where every tool is installed and a skip would hide a
/// test that never ran: there it fails, naming the command that installs the tool.
pub fn missing_tool(what: &str, install: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is missing, and CI must run every test: {install}"
    );
    eprintln!("SKIPPED: {what} is not installed ({install})");
}

/// Whether `redis-server` and `redis-cli` are installed (see [`missing_tool`]).
pub fn tools_installed() -> bool {
    let installed = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    let both = installed("redis-server") && installed("redis-cli");
    if !both {
        missing_tool(
            "redis-server or redis-cli",
            "apt-get install redis-server redis-tools",
        );
    }
    both
}

/// A `redis-server` on loopback `port`, persisting nothing, with `extra` arguments.
fn redis_server(port: u16, extra: &[&str]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A loopback port whose cluster bus port (+10 000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A Redis Cluster of three primaries and three replicas on loopback (`redis-server
/// --cluster-enabled yes` × 6, `redis-cli --cluster create`), nodes declared failed after five
/// seconds (shorter, a loaded two-core machine sees nodes fail that did not, and a primary
/// wrongly replaced loses the writes it took meanwhile); killed when dropped.
pub struct RedisCluster {
    nodes: Vec<(u16, Option<Child>)>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    /// Starts one, or prints why not and returns `None` when `redis-server` or `redis-cli` is
    /// not installed.
    pub fn start() -> Option<Self> {
        if !tools_installed() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "zt-cluster-{}-{}",
            std::process::id(),
            cluster_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = cluster_port();
            let config = format!("nodes-{port}.conf");
            let child = redis_server(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "5000",
                    // A replica's first sync starts at once, not after the default 5 s wait
                    // for other replicas.
                    "--repl-diskless-sync-delay",
                    "0",
                    "--cluster-config-file",
                    &config,
                    "--dir",
                    dir.to_str().unwrap(),
                ],
            );
            nodes.push((port, Some(child)));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (port, _) in &nodes {
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Self { nodes, dir };
        cluster.wait_until_ok();
        // Replicas attach after the slots are served: wait for three primaries, each with its
        // replica in sync.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let primaries = cluster.primaries();
            let synced = primaries.len() == 3
                && primaries.iter().all(|port| {
                    cli(*port, &["info", "replication"]).contains("connected_slaves:1")
                });
            if synced {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the replicas never attached:\n{}",
                cli(cluster.nodes[0].0, &["cluster", "nodes"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(cluster)
    }

    /// Waits (up to 30 s) until every live node reports the cluster healthy.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in self.live() {
            while !cli(port, &["cluster", "info"]).contains("cluster_state:ok") {
                assert!(
                    Instant::now() < deadline,
                    "the cluster never became healthy"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn live(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|(_, child)| child.is_some())
            .map(|(port, _)| *port)
            .collect()
    }

    /// `redis-cluster://` naming every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis-cluster://{}", nodes.join(","))
    }

    /// The ports of the live primaries.
    pub fn primaries(&self) -> Vec<u16> {
        let Some(&any) = self.live().first() else {
            return Vec::new();
        };
        let live = self.live();
        cli(any, &["cluster", "nodes"])
            .lines()
            .filter(|line| line.contains("master") && !line.contains("fail"))
            .filter_map(|line| {
                let address = line.split_whitespace().nth(1)?;
                let port = address.split(['@', ':']).nth(1)?.parse().ok()?;
                live.contains(&port).then_some(port)
            })
            .collect()
    }

    /// Waits (up to 10 s) until every replica of the primary on `port` has every write it
    /// acknowledged (their replication offsets equal its own).
    pub fn wait_for_replication(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = cli(port, &["info", "replication"]);
            let own = info
                .lines()
                .find_map(|l| l.strip_prefix("master_repl_offset:"))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned();
            let replicas: Vec<&str> = info
                .lines()
                .filter(|l| l.starts_with("slave"))
                .filter_map(|l| l.split(',').find_map(|f| f.strip_prefix("offset=")))
                .collect();
            if !replicas.is_empty() && replicas.iter().all(|offset| *offset == own) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas never caught up: {info}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many keys the node on `port` holds.
    pub fn keys_on(&self, port: u16) -> usize {
        cli(port, &["dbsize"]).trim().parse().unwrap_or(0)
    }

    /// Kills the node on `port`, as a crash would.
    pub fn kill(&mut self, port: u16) {
        for (p, child) in &mut self.nodes {
            if *p == port
                && let Some(mut child) = child.take()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary, its replica and three Sentinels watching them as `zt` (`redis-server
/// --sentinel`), on loopback; the primary is declared down after one second.
pub struct RedisSentinels {
    primary: Option<Child>,
    replica: Child,
    sentinels: Vec<Child>,
    pub primary_port: u16,
    pub replica_port: u16,
    sentinel_ports: Vec<u16>,
    dir: std::path::PathBuf,
}

impl RedisSentinels {
    pub fn start() -> Option<Self> {
        if !tools_installed() {
            return None;
        }
        let port = || {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (primary_port, replica_port) = (port(), port());
        let dir =
            std::env::temp_dir().join(format!("zt-sentinel-{}-{primary_port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The replica's full sync writes an RDB file: into the scratch directory, not the
        // current one. The sync starts at once, not after the default 5 s wait for more
        // replicas.
        let scratch = [
            "--dir",
            dir.to_str().unwrap(),
            "--repl-diskless-sync-delay",
            "0",
        ];
        let primary = redis_server(primary_port, &scratch);
        let replica = redis_server(
            replica_port,
            &[
                &scratch[..],
                &["--replicaof", "127.0.0.1", &primary_port.to_string()],
            ]
            .concat(),
        );
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        for _ in 0..3 {
            let port = port();
            let config = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\nsentinel monitor zt 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds zt 1000\nsentinel failover-timeout zt 3000\n"
                ),
            )
            .unwrap();
            sentinels.push(
                Command::new("redis-server")
                    .arg(&config)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            sentinel_ports.push(port);
        }
        let set = Self {
            primary: Some(primary),
            replica,
            sentinels,
            primary_port,
            replica_port,
            sentinel_ports,
            dir,
        };
        // The replica in sync (its link up, not just connected), and every Sentinel aware of it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cli(replica_port, &["info", "replication"]).contains("master_link_status:up")
            || set.sentinel_ports.iter().any(|p| {
                !cli(*p, &["sentinel", "replicas", "zt"]).contains(&replica_port.to_string())
            })
        {
            assert!(
                Instant::now() < deadline,
                "the Sentinels never saw the replica"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(set)
    }

    /// `redis-sentinel://` with the three Sentinels, service `zt`.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis-sentinel://{}/zt", sentinels.join(","))
    }

    /// The port of the primary the Sentinels name now.
    pub fn named_primary(&self) -> Option<u16> {
        let answer = cli(
            self.sentinel_ports[0],
            &["sentinel", "get-master-addr-by-name", "zt"],
        );
        answer.lines().nth(1)?.trim().parse().ok()
    }

    /// Kills the primary, as a crash would.
    pub fn kill_primary(&mut self) {
        if let Some(mut child) = self.primary.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        self.kill_primary();
        for child in self.sentinels.iter_mut().chain([&mut self.replica]) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
