//! `scripts/kafka produce` and `consume`, the tools the README gives for
//! feeding and reading topics by hand: tombstones, headers, and a quiet end
//! when fewer records arrive than asked for.

mod support;

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use support::kafka::{bootstrap, create_topic, scripts_kafka_with_input};

fn run(args: &[&str], input: &str) -> (String, String) {
    let out = scripts_kafka_with_input(args, input);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "scripts/kafka {args:?}: {stderr}");
    (stdout, stderr)
}

/// A record as read back: key, value (`None`: a tombstone), headers.
type Read = (String, Option<String>, Vec<(String, String)>);

/// The first `n` records of partition 0.
fn records(topic: &str, n: usize) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", "weir-test-scripts")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n && std::time::Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_string(), value.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
            m.payload().map(|p| String::from_utf8_lossy(p).to_string()),
            headers,
        ));
    }
    out
}

#[test]
fn produce_sends_tombstones_and_headers_and_consume_ends_quietly() {
    let topic = support::unique("scripts-kafka");
    create_topic(&topic, 1);
    run(&["produce", &topic], "k1\thello\nk2\t<null>\n");
    run(
        &["produce", &topic, "--headers"],
        "trace:7,who:me\tk3\thi\n",
    );

    let got = records(&topic, 3);
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        got,
        vec![
            ("k1".into(), Some("hello".into()), vec![]),
            ("k2".into(), None, vec![]),
            (
                "k3".into(),
                Some("hi".into()),
                vec![pair("trace", "7"), pair("who", "me")]
            ),
        ]
    );

    let (stdout, stderr) = run(
        &["consume", &topic, "--max", "5", "--timeout-ms", "3000"],
        "",
    );
    assert_eq!(stdout, "k1\thello\nk2\t<null>\nk3\thi\n");
    assert!(
        stderr.contains(&format!("consume: 3 of 5 record(s) from {topic}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("ERROR") && !stderr.contains("Exception"),
        "{stderr}"
    );
    let (stdout, _) = run(&["consume", &topic, "--max", "3", "--headers"], "");
    assert!(stdout.ends_with("trace:7,who:me\tk3\thi\n"), "{stdout}");
}
