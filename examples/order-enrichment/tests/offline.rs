//! Order enrichment under the offline test driver: the real component,
//! built for wasm32-wasip2 from this crate, with no broker. Records are
//! piped and read as the processor's own types, through the SDK's codecs
//! (`Json<Customer>`, `String`, `u64`).
//! `cargo test --release -p order-enrichment`

use std::sync::OnceLock;

use order_enrichment::{Customer, Enriched, Order};
use weir_test_driver::{DriverOptions, Json, TestDriver, TestRecord, build_component};

fn driver() -> TestDriver {
    driver_with(DriverOptions {
        partitions: 2,
        ..Default::default()
    })
}

fn driver_with(options: DriverOptions) -> TestDriver {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        build_component(env!("CARGO_MANIFEST_DIR").as_ref()).expect("building order-enrichment")
    });
    TestDriver::new(path, options).expect("loading order-enrichment")
}

fn customer(id: &str, name: &str, tier: &str, at: i64) -> TestRecord {
    let c = Customer {
        name: name.into(),
        tier: tier.into(),
    };
    TestRecord::typed(&id.to_string(), &Json(c)).at(at)
}

fn order(customer: &str, id: &str, amount: u64, at: i64) -> TestRecord {
    let o = Order {
        id: id.into(),
        amount,
    };
    TestRecord::typed(&customer.to_string(), &Json(o)).at(at)
}

/// The values `sink` received since the last read.
fn values<V: weir_test_driver::Codec>(driver: &mut TestDriver, sink: &str) -> Vec<V> {
    let read = driver.read_kv::<String, V>(sink).unwrap();
    read.into_iter().map(|(_, v)| v.unwrap()).collect()
}

fn enriched(driver: &mut TestDriver) -> Vec<Enriched> {
    values::<Json<Enriched>>(driver, "enriched")
        .into_iter()
        .map(|j| j.0)
        .collect()
}

fn unmatched(driver: &mut TestDriver) -> Vec<Order> {
    values::<Json<Order>>(driver, "unmatched")
        .into_iter()
        .map(|j| j.0)
        .collect()
}

#[test]
fn an_order_before_its_customer_is_unmatched_and_later_ones_are_enriched() {
    let mut driver = driver();
    driver.pipe("orders", order("c1", "o1", 10, 1)).unwrap();
    let o1 = Order {
        id: "o1".into(),
        amount: 10,
    };
    assert_eq!(unmatched(&mut driver), [o1]);
    assert!(enriched(&mut driver).is_empty());

    driver
        .pipe("customers", customer("c1", "Ada", "gold", 2))
        .unwrap();
    driver.pipe("orders", order("c1", "o2", 25, 3)).unwrap();
    let ada = Customer {
        name: "Ada".into(),
        tier: "gold".into(),
    };
    let o2 = Order {
        id: "o2".into(),
        amount: 25,
    };
    assert_eq!(
        enriched(&mut driver),
        [Enriched {
            order: o2,
            customer: ada
        }]
    );
    assert!(unmatched(&mut driver).is_empty());
}

#[test]
fn a_customer_update_changes_later_joins_and_a_delete_unmatches_them() {
    let mut driver = driver();
    driver
        .pipe("customers", customer("c2", "Bo", "silver", 1))
        .unwrap();
    driver
        .pipe("customers", customer("c2", "Bo", "gold", 2))
        .unwrap();
    driver.pipe("orders", order("c2", "o1", 5, 3)).unwrap();
    assert_eq!(enriched(&mut driver)[0].customer.tier, "gold");

    driver
        .pipe(
            "customers",
            TestRecord::typed_tombstone(&"c2".to_string()).at(4),
        )
        .unwrap();
    driver.pipe("orders", order("c2", "o2", 7, 5)).unwrap();
    assert!(enriched(&mut driver).is_empty());
    assert_eq!(unmatched(&mut driver)[0].id, "o2");
}

#[test]
fn the_customer_table_is_restored_from_its_source_topic_on_restart() {
    let mut driver = driver();
    driver
        .pipe("customers", customer("c1", "Ada", "gold", 1))
        .unwrap();
    driver
        .pipe("customers", customer("c2", "Bo", "silver", 2))
        .unwrap();
    driver
        .pipe(
            "customers",
            TestRecord::typed_tombstone(&"c2".to_string()).at(3),
        )
        .unwrap();
    // No changelog topic of its own: the source is its log. The totals
    // store keeps one.
    for p in 0..2 {
        assert!(driver.changelog("customer-table", p).is_empty());
    }
    driver.pipe("orders", order("c1", "o1", 4, 4)).unwrap();
    assert_eq!(enriched(&mut driver).len(), 1);
    assert!((0..2).any(|p| !driver.changelog("tier-totals", p).is_empty()));

    // Offline stores live in memory: a restart rebuilds the table from
    // `customers`, up to the committed offset.
    driver.restart().unwrap();
    let rows: Vec<(String, Json<Customer>)> = (0..2)
        .flat_map(|p| {
            driver
                .store_kv::<String, Json<Customer>>(p, "customer-table")
                .unwrap()
        })
        .collect();
    assert_eq!(rows.len(), 1, "c1 only; c2 was deleted");
    assert_eq!(rows[0].0, "c1");
    driver.pipe("orders", order("c1", "o2", 5, 5)).unwrap();
    driver.pipe("orders", order("c2", "o3", 6, 6)).unwrap();
    let joined = enriched(&mut driver);
    assert_eq!(joined.len(), 1, "{joined:?}");
    assert_eq!(joined[0].customer.name, "Ada");
    assert_eq!(unmatched(&mut driver)[0].id, "o3");
}

#[test]
fn totals_per_tier_add_up_across_customers_and_partitions() {
    let mut driver = driver();
    for (id, tier) in [
        ("c1", "gold"),
        ("c2", "silver"),
        ("c3", "gold"),
        ("c4", "bronze"),
    ] {
        driver.pipe("customers", customer(id, id, tier, 1)).unwrap();
    }
    let orders = [
        ("c1", 10),
        ("c2", 3),
        ("c3", 5),
        ("c1", 1),
        ("c4", 2),
        ("c9", 100),
    ];
    for (i, (customer, amount)) in orders.into_iter().enumerate() {
        let id = format!("o{i}");
        driver
            .pipe("orders", order(customer, &id, amount, 10 + i as i64))
            .unwrap();
    }
    let totals = driver.read_table::<String, String>("totals").unwrap();
    let want = [("bronze", "2"), ("gold", "16"), ("silver", "3")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(totals.into_iter().collect::<Vec<_>>(), want);
    assert_eq!(
        unmatched(&mut driver).len(),
        1,
        "the unmatched order counts nowhere"
    );
    // The running totals as the store holds them, typed, in the task that
    // owns each tier.
    let stored: u64 = (0..2)
        .filter_map(|p| {
            driver
                .store_get::<String, u64>(p, "tier-totals", &"gold".to_string())
                .unwrap()
        })
        .sum();
    assert_eq!(stored, 16);
    let all: Vec<(String, u64)> = (0..2)
        .flat_map(|p| driver.store_kv::<String, u64>(p, "tier-totals").unwrap())
        .collect();
    assert_eq!(all.len(), 3);
}

#[test]
fn a_typed_read_of_the_wrong_type_names_what_did_not_decode() {
    let mut driver = driver();
    driver.pipe("orders", order("c1", "o1", 10, 1)).unwrap();
    let error = driver.read_kv::<String, u64>("unmatched").unwrap_err();
    assert!(error.to_string().contains("output value"), "{error}");
}

/// Orders of one pipe, each a record of its own.
fn orders(of: &[(&str, u64)]) -> Vec<TestRecord> {
    of.iter()
        .enumerate()
        .map(|(i, (customer, amount))| order(customer, &format!("o{i}"), *amount, 10 + i as i64))
        .collect()
}

/// Totals reach `totals` through a record cache: one update per tier per
/// commit (the driver commits once per pipe), the latest; with
/// `statestore.cache.max.bytes` 0, every update.
#[test]
fn the_record_cache_sends_the_latest_total_per_tier_per_commit() {
    let totals_sent = |cache_bytes: usize| {
        let mut driver = driver_with(DriverOptions {
            partitions: 1,
            statestore_cache_max_bytes: cache_bytes,
            ..Default::default()
        });
        driver
            .pipe("customers", customer("c1", "A", "gold", 1))
            .unwrap();
        driver
            .pipe("customers", customer("c2", "B", "silver", 2))
            .unwrap();
        let batch = orders(&[("c1", 10), ("c2", 3), ("c1", 5), ("c1", 1)]);
        driver.pipe_all("orders", batch).unwrap();
        let sent: Vec<(String, String, Option<i64>)> = driver
            .read_output("totals")
            .iter()
            .map(|o| {
                let text = |s: Option<&str>| s.unwrap().to_string();
                (text(o.key_str()), text(o.value_str()), o.timestamp)
            })
            .collect();
        let stored = driver.store_kv::<String, u64>(0, "tier-totals").unwrap();
        assert_eq!(stored, vec![("gold".into(), 16), ("silver".into(), 3)]);
        sent
    };
    let row = |tier: &str, total: &str, at: i64| (tier.to_string(), total.to_string(), Some(at));
    // The latest per tier, with the timestamp of the order that made it.
    let mut cached = totals_sent(10 << 20);
    cached.sort();
    assert_eq!(cached, vec![row("gold", "16", 13), row("silver", "3", 11)]);
    // No cache: every update, in order.
    assert_eq!(
        totals_sent(0),
        vec![
            row("gold", "10", 10),
            row("silver", "3", 11),
            row("gold", "15", 12),
            row("gold", "16", 13),
        ]
    );
}
