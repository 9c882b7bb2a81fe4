//! kcat (Debian's, built on librdkafka 2.0.2): an older client that must
//! work too. Metadata (-L), produce (-P), consume (-C) and offset query (-Q).

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protocol_tests::rdkafka::producer::FutureRecord;
use protocol_tests::{
    create_topic, find_on_path, now_millis, unique_name, BrokerProcess, OP_TIMEOUT,
};

const KCAT_TIMEOUT: Duration = Duration::from_secs(60);

fn kcat_bin() -> PathBuf {
    std::env::var_os("KCAT_BIN")
        .map(PathBuf::from)
        .or_else(|| find_on_path("kcat"))
        .or_else(|| find_on_path("kafkacat"))
        .unwrap_or_else(|| {
            panic!(
                "kcat is not installed (Debian package `kcat`); run \
                 scripts/install-test-tools.sh or set KCAT_BIN. This test never skips."
            )
        })
}

struct KcatOutput {
    ok: bool,
    stdout: String,
    stderr: String,
    what: String,
}

impl KcatOutput {
    fn expect_ok(self) -> Self {
        assert!(
            self.ok,
            "{} failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.stdout, self.stderr
        );
        self
    }
}

/// Runs kcat with a bounded time, stdin from `input`, output to files in the
/// broker's temp dir.
fn kcat(broker: &BrokerProcess, args: &[&str], input: Option<&[u8]>) -> KcatOutput {
    let n = unique_name("kcat");
    let out_path = broker.temp_dir().join(format!("{n}.out"));
    let err_path = broker.temp_dir().join(format!("{n}.err"));
    let mut cmd = Command::new(kcat_bin());
    cmd.arg("-b")
        .arg(broker.bootstrap())
        .arg("-m")
        .arg("15")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let what = format!("kcat -b {} {}", broker.bootstrap(), args.join(" "));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    if let Some(data) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(data).unwrap();
        // Dropping stdin closes it: kcat -P flushes and exits.
    }
    let deadline = Instant::now() + KCAT_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {KCAT_TIMEOUT:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    KcatOutput {
        ok: status.success(),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        what,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_metadata_produce_consume_query() {
    let _ = kcat_bin();
    let mut broker = BrokerProcess::start_default();
    let admin = broker.admin();
    let topic = unique_name("kcat");
    create_topic(&admin, &topic, 2, &[]).await.unwrap();

    // -L: the broker and the topic with its partitions.
    let out = kcat(&broker, &["-L"], None).expect_ok();
    let port = broker.kafka_addr().port();
    assert!(
        out.stdout.contains("1 brokers:"),
        "kcat -L: broker count\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("at 127.0.0.1:{port}")),
        "kcat -L: broker address\n{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("topic \"{topic}\" with 2 partitions:")),
        "kcat -L: topic\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("partition 0, leader") && out.stdout.contains("partition 1, leader"),
        "kcat -L: partitions\n{}",
        out.stdout
    );
    let out = kcat(&broker, &["-L", "-t", &topic], None).expect_ok();
    assert!(out
        .stdout
        .contains(&format!("topic \"{topic}\" with 2 partitions:")));

    // -P from stdin into partition 0, keys split on ':'.
    let lines: Vec<String> = (0..20)
        .map(|i| format!("key{i}:line {i} via kcat"))
        .collect();
    let input = lines.join("\n") + "\n";
    kcat(
        &broker,
        &["-P", "-t", &topic, "-p", "0", "-K", ":"],
        Some(input.as_bytes()),
    )
    .expect_ok();

    // -C from the beginning to the end.
    let out = kcat(
        &broker,
        &[
            "-C",
            "-t",
            &topic,
            "-p",
            "0",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%k|%s|%p|%o\\n",
        ],
        None,
    )
    .expect_ok();
    let got: Vec<&str> = out.stdout.lines().collect();
    let want: Vec<String> = (0..20)
        .map(|i| format!("key{i}|line {i} via kcat|0|{i}"))
        .collect();
    assert_eq!(got, want, "kcat -C output\n--- stderr ---\n{}", out.stderr);

    // Whole topic without -p: partition 1 is empty, EOF on both.
    let out = kcat(
        &broker,
        &["-C", "-t", &topic, "-e", "-o", "beginning"],
        None,
    )
    .expect_ok();
    assert_eq!(out.stdout.lines().count(), 20);

    // Relative offset from the end.
    let out = kcat(
        &broker,
        &[
            "-C", "-t", &topic, "-p", "0", "-e", "-o", "-3", "-f", "%o\\n",
        ],
        None,
    )
    .expect_ok();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec!["17", "18", "19"]
    );

    // -Q: offsets by timestamp, with records of known timestamps.
    let ts_topic = unique_name("kcat-ts");
    create_topic(&admin, &ts_topic, 1, &[]).await.unwrap();
    let t0 = now_millis() - 100_000;
    let producer = broker.producer(&[]);
    for i in 0..10i64 {
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&ts_topic)
                    .partition(0)
                    .payload(format!("t{i}").as_bytes())
                    .timestamp(t0 + i * 1000),
                OP_TIMEOUT,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
    for (ts, want) in [(t0 + 4500, 5), (t0, 0), (t0 + 9000, 9)] {
        let spec = format!("{ts_topic}:0:{ts}");
        let out = kcat(&broker, &["-Q", "-t", &spec], None).expect_ok();
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!("{ts_topic} [0] offset")))
            .unwrap_or_else(|| {
                panic!(
                    "kcat -Q {spec}: no result line\n{}\n{}",
                    out.stdout, out.stderr
                )
            });
        let off: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(off, want, "kcat -Q {spec}: {line}");
    }

    // Compressed produce from the old client, read back.
    let z_topic = unique_name("kcat-z");
    create_topic(&admin, &z_topic, 1, &[]).await.unwrap();
    let mut expected = Vec::new();
    for codec in ["gzip", "snappy", "lz4"] {
        let lines: Vec<String> = (0..10)
            .map(|i| format!("{codec} {i} {}", "z".repeat(50)))
            .collect();
        expected.extend(lines.iter().cloned());
        kcat(
            &broker,
            &["-P", "-t", &z_topic, "-p", "0", "-z", codec],
            Some((lines.join("\n") + "\n").as_bytes()),
        )
        .expect_ok();
    }
    let out = kcat(
        &broker,
        &["-C", "-t", &z_topic, "-e", "-o", "beginning"],
        None,
    )
    .expect_ok();
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected);
    broker.assert_alive();
}
