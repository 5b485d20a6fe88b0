//! A table whose store is restored from its source topic (order
//! enrichment's customers), on the real broker, exactly-once, two
//! instances with a standby of every task: no changelog topic is created
//! for it; standbys keep the table from the source topic; SIGKILL an
//! instance and the orders that follow still find every customer on the
//! promoted standbys, which restore no more than a short tail.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::kafka::{create_topic, produce, read_all, topic_exists};
use support::weir::{App, Weir};
use support::{eventually, guests, unique};

const PARTITIONS: i32 = 4;
const CUSTOMERS: usize = 200;

fn customer(i: usize) -> Vec<u8> {
    let tier = if i.is_multiple_of(2) {
        "gold"
    } else {
        "silver"
    };
    format!(r#"{{"name":"n{i}","tier":"{tier}"}}"#).into_bytes()
}

/// One order for every customer, keyed by customer id.
fn orders(round: usize) -> Vec<(String, Vec<u8>)> {
    (0..CUSTOMERS)
        .map(|i| {
            let order = format!(r#"{{"id":"o{round}-{i}","amount":1}}"#);
            (format!("c{i}"), order.into_bytes())
        })
        .collect()
}

fn produce_keyed(topic: &str, records: &[(String, Vec<u8>)]) {
    let records: Vec<(Option<i32>, &str, &[u8])> = records
        .iter()
        .map(|(k, v)| (None, k.as_str(), v.as_slice()))
        .collect();
    produce(topic, &records);
}

/// task id → state on the instance behind `admin`.
fn tasks(admin: &str) -> BTreeMap<String, String> {
    support::admin::tasks(admin)
        .into_iter()
        .map(|t| (t.task_id, t.state.into_owned()))
        .collect()
}

/// Waits until every task runs once and stands by once across `admins`.
fn wait_placed(admins: &[String]) -> Vec<BTreeMap<String, String>> {
    eventually(Duration::from_secs(120), "actives and standbys", || {
        let views: Vec<_> = admins.iter().map(|a| tasks(a)).collect();
        let count = |state: &str| {
            views
                .iter()
                .flat_map(|v| v.values())
                .filter(|s| *s == state)
                .count()
        };
        (count("RUNNING") == PARTITIONS as usize && count("STANDBY") == PARTITIONS as usize)
            .then_some(views)
    })
}

#[test]
fn a_table_restored_from_its_source_survives_a_killed_instance_on_its_standbys() {
    let name = |t: &str| unique(t);
    let (orders_topic, customers) = (name("tb-orders"), name("tb-customers"));
    let (enriched, unmatched, totals) =
        (name("tb-enriched"), name("tb-unmatched"), name("tb-totals"));
    create_topic(&orders_topic, PARTITIONS);
    create_topic(&customers, PARTITIONS);
    let mut app = App::new(&unique("tables-app"));
    app.extra.extend(
        [
            "processing.guarantee = \"exactly_once_v2\"",
            "num.standby.replicas = 1",
            "acceptable.recovery.lag = 0",
            "kafka.\"session.timeout.ms\" = 6000",
            "kafka.\"heartbeat.interval.ms\" = 1000",
            "admin.listen = \"127.0.0.1:0\"",
        ]
        .map(String::from),
    );
    app.extra.push(format!(
        "[topics]\norders = \"{orders_topic}\"\ncustomers = \"{customers}\"\n\
         \"orders-enriched\" = \"{enriched}\"\n\"orders-unmatched\" = \"{unmatched}\"\n\
         \"tier-totals\" = \"{totals}\""
    ));
    let component = guests::component("order-enrichment");
    let start = |host: &str| -> (Weir, String) {
        let mut weir = app.start_instance(host, Some(&component));
        weir.wait_running();
        let admin = weir.admin_url();
        (weir, admin)
    };
    let (a, admin_a) = start("a");
    let (b, admin_b) = start("b");
    let views = wait_placed(&[admin_a.clone(), admin_b.clone()]);

    let table: Vec<(String, Vec<u8>)> = (0..CUSTOMERS)
        .map(|i| (format!("c{i}"), customer(i)))
        .collect();
    produce_keyed(&customers, &table);
    // The table is loaded before the orders come.
    std::thread::sleep(Duration::from_secs(3));
    produce_keyed(&orders_topic, &orders(1));
    eventually(
        Duration::from_secs(60),
        "every first order enriched",
        || (read_all(&enriched).len() == CUSTOMERS).then_some(()),
    );
    let changelog = |store: &str| format!("{}-{store}-changelog", app.application_id);
    assert!(topic_exists(&changelog("tier-totals")));
    assert!(!topic_exists(&changelog("customer-table")));
    // Standbys follow the source up to the actives' commits (every 100 ms
    // under exactly-once).
    std::thread::sleep(Duration::from_secs(2));

    let victims: Vec<String> = (views[1].iter())
        .filter(|(_, s)| *s == "RUNNING")
        .map(|(t, _)| t.clone())
        .collect();
    assert!(!victims.is_empty(), "b runs some task: {views:?}");
    let mark = a.log().len();
    b.kill();
    produce_keyed(&orders_topic, &orders(2));
    eventually(
        Duration::from_secs(120),
        "every second order enriched",
        || (read_all(&enriched).len() == 2 * CUSTOMERS).then_some(()),
    );
    assert!(
        read_all(&unmatched).is_empty(),
        "every order found its customer"
    );

    let log = a.log();
    let restored = support::restored_per_task(&log, mark, Some("customer-table"));
    for task in &victims {
        let promoted = log[mark..]
            .lines()
            .any(|l| l.contains("promoted to active") && l.contains(&format!("task_id={task}")));
        assert!(
            promoted,
            "task {task} became active on its standby on a\n{log}"
        );
        let n = restored.get(task).copied().unwrap_or(0);
        assert!(
            n < (CUSTOMERS / PARTITIONS as usize / 2) as u64,
            "task {task} restored {n} customers: its standby held the table\n{log}"
        );
    }
    let (status, log) = a.terminate();
    assert!(status.success(), "{log}");
}
