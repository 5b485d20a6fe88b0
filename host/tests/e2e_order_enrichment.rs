//! The order-enrichment example on the real broker: a customers table
//! joined with orders, unmatched orders to their own topic, totals per tier
//! through a repartition; then a restart on an empty state directory,
//! after which the table (restored from its source topic, having no
//! changelog topic) still joins and the totals (restored from theirs) go
//! on; then a burst of orders whose totals the record cache collapses.

mod support;

use std::time::Duration;

use support::guests;
use support::kafka::{create_topic, latest, produce, produce_at, read_all, topic_exists};
use support::weir::App;
use support::{eventually, unique};

fn customer(name: &str, tier: &str) -> Vec<u8> {
    format!(r#"{{"name":"{name}","tier":"{tier}"}}"#).into_bytes()
}

fn order(id: &str, amount: u64) -> Vec<u8> {
    format!(r#"{{"id":"{id}","amount":{amount}}}"#).into_bytes()
}

/// Produces `key -> value` records, partitioned by key.
fn produce_keyed<K: AsRef<str>>(topic: &str, records: &[(K, Vec<u8>)]) {
    let records: Vec<(Option<i32>, &str, &[u8])> = records
        .iter()
        .map(|(k, v)| (None, k.as_ref(), v.as_slice()))
        .collect();
    produce(topic, &records);
}

#[test]
fn orders_are_enriched_unmatched_and_totalled_per_tier_across_a_restart() {
    let name = |t: &str| unique(t);
    let (orders, customers) = (name("orders"), name("customers"));
    let (enriched, unmatched, totals) = (name("enriched"), name("unmatched"), name("totals"));
    create_topic(&orders, 2);
    create_topic(&customers, 2);
    let mut app = App::new(&unique("orders-app"));
    app.extra.push(format!(
        "[topics]\norders = \"{orders}\"\ncustomers = \"{customers}\"\n\
         \"orders-enriched\" = \"{enriched}\"\n\"orders-unmatched\" = \"{unmatched}\"\n\
         \"tier-totals\" = \"{totals}\""
    ));
    let component = guests::component("order-enrichment");
    let mut weir = app.start(&component);
    weir.wait_running();

    let table = [("c1", "gold"), ("c2", "silver"), ("c3", "gold")];
    let rows: Vec<(&str, Vec<u8>)> = table
        .iter()
        .map(|(id, tier)| (*id, customer(id, tier)))
        .collect();
    produce_keyed(&customers, &rows);
    // The table is loaded before the orders come (the join's order across
    // topics then no longer depends on fetch timing).
    std::thread::sleep(Duration::from_secs(2));
    let first = [
        ("c1", order("o1", 10)),
        ("c2", order("o2", 3)),
        ("c9", order("o3", 7)),
    ];
    produce_keyed(&orders, &first);
    eventually(
        Duration::from_secs(60),
        "two enriched, one unmatched",
        || (read_all(&enriched).len() == 2 && read_all(&unmatched).len() == 1).then_some(()),
    );

    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
    let changelog = |store: &str| format!("{}-{store}-changelog", app.application_id);
    assert!(topic_exists(&changelog("tier-totals")));
    assert!(
        !topic_exists(&changelog("customer-table")),
        "the table's source is its changelog"
    );
    // The local state is lost: both stores restore, the table from
    // `customers` up to the committed offset.
    let stores = app.state_dir().join(&app.application_id);
    for store in ["customer-table", "tier-totals"] {
        std::fs::remove_dir_all(stores.join(store)).unwrap();
    }
    let mut weir = app.start(&component);
    weir.wait_running();
    let second = [("c3", order("o4", 5)), ("c1", order("o5", 1))];
    produce_keyed(&orders, &second);
    let reached = eventually(Duration::from_secs(60), "totals of every tier", || {
        let t = latest(&totals);
        (t.get("gold").map(String::as_str) == Some("16")).then_some(t)
    });
    assert_eq!(reached["silver"], "3");
    assert_eq!(reached.len(), 2, "{reached:?}");
    let enriched = read_all(&enriched);
    assert_eq!(enriched.len(), 4, "{enriched:?}");
    assert!(
        enriched
            .iter()
            .any(|(_, k, v)| k == "c3" && v.contains(r#""tier":"gold""#))
    );
    assert_eq!(read_all(&unmatched)[0].1, "c9");

    // A burst of gold orders: the record cache sends gold's latest total
    // once per commit (200 ms here), not once per order.
    let burst: Vec<(&str, Vec<u8>)> = (0..200)
        .map(|i| ("c1", order(&format!("b{i}"), 1)))
        .collect();
    produce_keyed(&orders, &burst);
    eventually(
        Duration::from_secs(60),
        "gold's total after the burst",
        || (latest(&totals).get("gold").map(String::as_str) == Some("216")).then_some(()),
    );
    let gold_updates = read_all(&totals)
        .into_iter()
        .filter(|(_, tier, total)| tier == "gold" && total.parse::<u64>().unwrap() > 16)
        .count();
    assert!(
        (1..100).contains(&gold_updates),
        "200 gold orders gave {gold_updates} outputs: the record cache should collapse them"
    );
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("restoring store from changelog")
                && l.contains("customer-table")
                && l.contains(&customers)),
        "the table restores from `{customers}`: {log}"
    );
}

/// Both topics loaded before the app starts, the table far larger than one
/// poll: every order still finds its customer. A source partition with
/// nothing buffered that the consumer has not yet read to its end is waited
/// for (`max.task.idle.ms` 0, as Kafka Streams waits for data its fetches
/// say is there), so the older customers go first however the fetches
/// interleave. Without that, the orders went as soon as one poll's
/// customers were used up.
#[test]
fn orders_loaded_with_a_large_table_before_the_start_all_find_their_customer() {
    let (orders, customers) = (unique("orders"), unique("customers"));
    let (enriched, unmatched) = (unique("enriched"), unique("unmatched"));
    create_topic(&orders, 1);
    create_topic(&customers, 1);
    // Recent timestamps (the broker's retention goes by them), the table's
    // older than every order's.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ids: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
    let rows: Vec<Vec<u8>> = ids.iter().map(|id| customer(id, "gold")).collect();
    let table: Vec<(i32, &str, &[u8], i64)> = (ids.iter().zip(&rows).enumerate())
        .map(|(i, (id, row))| (0, id.as_str(), row.as_slice(), now - 200_000 + i as i64))
        .collect();
    produce_at(&customers, &table);
    let bodies: Vec<Vec<u8>> = (0..100).map(|i| order(&format!("o{i}"), 1)).collect();
    let late: Vec<(i32, &str, &[u8], i64)> = (bodies.iter().enumerate())
        .map(|(i, body)| {
            (
                0,
                ids[i * 999].as_str(),
                body.as_slice(),
                now - 30_000 + i as i64,
            )
        })
        .collect();
    produce_at(&orders, &late);

    let mut app = App::new(&unique("orders-preloaded"));
    app.extra.push(format!(
        "[topics]\norders = \"{orders}\"\ncustomers = \"{customers}\"\n\
         \"orders-enriched\" = \"{enriched}\"\n\"orders-unmatched\" = \"{unmatched}\"\n\
         \"tier-totals\" = \"{}\"",
        unique("totals")
    ));
    let mut weir = app.start(&guests::component("order-enrichment"));
    weir.wait_running();
    eventually(Duration::from_secs(90), "all 100 orders joined", || {
        (read_all(&enriched).len() + read_all(&unmatched).len() >= 100).then_some(())
    });
    let missed = read_all(&unmatched);
    assert!(
        missed.is_empty(),
        "{} orders went before their customers: {:?}",
        missed.len(),
        &missed[..missed.len().min(5)]
    );
    assert_eq!(read_all(&enriched).len(), 100);
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
}
