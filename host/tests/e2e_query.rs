//! Interactive queries on the real broker: three instances of word count,
//! each with `application.server` set to its admin address. Any instance
//! answers for any word (forwarding to the owner, or redirecting), a scan
//! through any instance returns every word once, and while a killed
//! instance's tasks move the answer is 503 or the right value, never a
//! wrong one; with `stale=ok` a standby answers meanwhile.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::kafka::{create_topic, latest};
use support::weir::{App, Weir};
use support::wordcount::{count, lines, send_lines, wait_for_counts, word_count_app};
use support::{eventually, guests, unique};

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `host` serving its admin API (and queries) on a port of its own.
fn start(app: &App, host: &str) -> (Weir, String) {
    let address = format!("127.0.0.1:{}", free_port());
    let mut weir = app.start_instance_with_env(
        host,
        Some(&guests::component("word-count")),
        &[
            ("WEIR_ADMIN_LISTEN", &address),
            ("WEIR_APPLICATION_SERVER", &address),
        ],
    );
    weir.wait_running();
    (weir, format!("http://{address}"))
}

/// GET without following redirects: (status, headers we look at, body).
fn query(url: &str) -> (u16, BTreeMap<String, String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let headers = ["x-weir-lag", "x-weir-partition", "location", "retry-after"]
        .iter()
        .filter_map(|h| {
            let v = response.headers().get(*h)?.to_str().ok()?;
            Some((h.to_string(), v.to_string()))
        })
        .collect();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn count_of(admin: &str, word: &str, extra: &str) -> (u16, BTreeMap<String, String>, Value) {
    query(&format!("{admin}/v1/stores/counts/keys/{word}?{extra}"))
}

/// Every entry of the store through `admin`, page by page.
fn scan(admin: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{admin}/v1/stores/counts/range?limit=5");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, _, page) = query(&url);
        assert_eq!(status, 200, "{url}: {page}");
        for entry in page["entries"].as_array().unwrap() {
            out.push((
                entry["key"].as_str().unwrap().to_string(),
                entry["value"].as_u64().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn app(input: &str, output: &str) -> App {
    let mut app = word_count_app(input, output);
    for (i, line) in [
        "num.standby.replicas = 1",
        "kafka.\"session.timeout.ms\" = 8000",
        "kafka.\"heartbeat.interval.ms\" = 1000",
    ]
    .into_iter()
    .enumerate()
    {
        app.extra.insert(i, line.to_string());
    }
    app
}

#[test]
fn any_instance_answers_for_any_key_and_never_with_a_wrong_value() {
    let (input, output) = (unique("iq-in"), unique("iq-out"));
    create_topic(&input, 4);
    let text = lines(51, 2000);
    let app = app(&input, &output);
    let instances: Vec<(Weir, String)> = ["weir-a", "weir-b", "weir-c"]
        .iter()
        .map(|h| start(&app, h))
        .collect();
    send_lines(&input, 0, &text);
    let expected = count(&text);
    wait_for_counts(&output, &expected);
    assert_eq!(latest(&output), expected);
    let admins: Vec<String> = instances.iter().map(|(_, a)| a.clone()).collect();
    // Every task placed and running (the host maps agree).
    eventually(
        Duration::from_secs(60),
        "every word answered everywhere",
        || {
            expected
                .keys()
                .all(|w| admins.iter().all(|a| count_of(a, w, "").0 == 200))
                .then_some(())
        },
    );

    for admin in &admins {
        for (word, n) in &expected {
            let (status, headers, value) = count_of(admin, word, "");
            assert_eq!(status, 200, "{word} via {admin}: {value}");
            assert_eq!(
                value.as_u64().unwrap().to_string(),
                *n,
                "{word} via {admin}"
            );
            assert!(headers.contains_key("x-weir-partition"));
        }
        let words: Vec<(String, u64)> = scan(admin);
        let scanned: BTreeMap<String, String> = words
            .iter()
            .map(|(w, n)| (w.clone(), n.to_string()))
            .collect();
        assert_eq!(scanned.len(), words.len(), "every word once via {admin}");
        assert_eq!(scanned, expected, "the whole store via {admin}");
    }

    // Metadata names the owner; asking a non-owner to redirect points there.
    let (status, _, stores) = query(&format!("{}/v1/stores", admins[0]));
    assert_eq!(status, 200);
    assert_eq!(stores["stores"][0]["name"], "counts");
    // Word count declares its store as `KvStore<String, u64>`: queries
    // answer words and plain numbers without being told formats.
    assert_eq!(stores["stores"][0]["key_format"], "utf8", "{stores}");
    assert_eq!(stores["stores"][0]["value_format"], "u64", "{stores}");
    let word = expected.keys().next().unwrap();
    let (_, _, meta) = query(&format!(
        "{}/v1/stores/counts/metadata?key={word}",
        admins[0]
    ));
    let owner = format!("http://{}", meta["active_host"].as_str().unwrap());
    assert!(admins.contains(&owner), "{meta}");
    let other = admins.iter().find(|a| **a != owner).unwrap();
    let (status, headers, _) = count_of(other, word, "redirect=true");
    assert_eq!(status, 307);
    assert!(headers["location"].starts_with(&owner), "{headers:?}");
    let (status, _, body) = query(&format!("{}/v1/stores/nope/keys/x", admins[0]));
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = count_of(&admins[0], "no-such-word", "");
    assert_eq!(status, 404, "{body}");

    // Kill the owner of `word`: through the survivors the answer is the
    // right count or 503 while its tasks move, then the right count; with
    // stale=ok a standby may answer meanwhile.
    let mut instances = instances;
    let victim = instances.iter().position(|(_, a)| *a == owner).unwrap();
    let (weir, _) = instances.remove(victim);
    weir.kill();
    let survivors: Vec<String> = instances.iter().map(|(_, a)| a.clone()).collect();
    let started = Instant::now();
    let (mut unavailable, mut stale_answers, mut settled) = (0, 0, false);
    while started.elapsed() < Duration::from_secs(90) {
        let mut all_right = true;
        for admin in &survivors {
            let (status, headers, value) = count_of(admin, word, "");
            match status {
                200 => assert_eq!(value.as_u64().unwrap().to_string(), expected[word]),
                503 => {
                    assert!(headers.contains_key("retry-after"));
                    unavailable += 1;
                    all_right = false;
                }
                other => panic!("{word} via {admin} during the move: {other} {value}"),
            }
            let (status, headers, value) = count_of(admin, word, "stale=ok");
            if status == 200 {
                assert_eq!(value.as_u64().unwrap().to_string(), expected[word]);
                if headers.contains_key("x-weir-lag") {
                    stale_answers += 1;
                }
            }
        }
        if all_right {
            settled = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(settled, "queries never settled after the kill");
    assert!(
        unavailable > 0,
        "the owner's partition was unavailable while it moved"
    );
    assert!(
        stale_answers > 0,
        "a standby answered with stale=ok during the move"
    );
    // The victim's other tasks may still be moving (503): every word comes
    // back, and never with a wrong count.
    for (word, n) in &expected {
        for admin in &survivors {
            eventually(Duration::from_secs(60), "every word answered", || {
                let (status, _, value) = count_of(admin, word, "");
                match status {
                    200 => {
                        assert_eq!(value.as_u64().map(|v| v.to_string()).as_ref(), Some(n));
                        Some(())
                    }
                    503 => None,
                    other => panic!("{word} via {admin} after the move: {other} {value}"),
                }
            });
        }
    }
    let (ok, out) = support::admin::cli(&["query", "--admin", &survivors[0], "counts", word]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), expected[word], "weir query prints the count");
    for (w, _) in instances {
        let (status, log) = w.terminate();
        assert!(status.success(), "{log}");
    }
}
