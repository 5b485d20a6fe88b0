//! Order enrichment under the offline test driver: the real component,
//! built for wasm32-wasip2 from this crate, with no broker.
//! `cargo test --release -p order-enrichment`

use std::sync::OnceLock;

use serde_json::{Value, json};
use weir::testing::{DriverOptions, TestDriver, TestOutput, TestRecord, build_component};

fn driver() -> TestDriver {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        build_component(env!("CARGO_MANIFEST_DIR").as_ref()).expect("building order-enrichment")
    });
    let options = DriverOptions {
        partitions: 2,
        ..Default::default()
    };
    TestDriver::new(path, options).expect("loading order-enrichment")
}

fn customer(id: &str, name: &str, tier: &str, at: i64) -> TestRecord {
    TestRecord::new(id, json!({ "name": name, "tier": tier }).to_string()).at(at)
}

fn order(customer: &str, id: &str, amount: u64, at: i64) -> TestRecord {
    TestRecord::new(customer, json!({ "id": id, "amount": amount }).to_string()).at(at)
}

fn values(outputs: &[TestOutput]) -> Vec<Value> {
    outputs
        .iter()
        .map(|o| serde_json::from_slice(o.value.as_deref().unwrap()).unwrap())
        .collect()
}

/// The latest total per tier.
fn totals(driver: &mut TestDriver) -> std::collections::BTreeMap<String, String> {
    driver
        .read_output("totals")
        .iter()
        .map(|o| {
            let tier = o.key_str().unwrap().to_string();
            (tier, o.value_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn an_order_before_its_customer_is_unmatched_and_later_ones_are_enriched() {
    let mut driver = driver();
    driver.pipe("orders", order("c1", "o1", 10, 1)).unwrap();
    let unmatched = values(&driver.read_output("unmatched"));
    assert_eq!(unmatched, [json!({ "id": "o1", "amount": 10 })]);
    assert!(driver.read_output("enriched").is_empty());

    driver
        .pipe("customers", customer("c1", "Ada", "gold", 2))
        .unwrap();
    driver.pipe("orders", order("c1", "o2", 25, 3)).unwrap();
    let enriched = values(&driver.read_output("enriched"));
    assert_eq!(
        enriched,
        [json!({
            "order": { "id": "o2", "amount": 25 },
            "customer": { "name": "Ada", "tier": "gold" }
        })]
    );
    assert!(driver.read_output("unmatched").is_empty());
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
    let enriched = values(&driver.read_output("enriched"));
    assert_eq!(enriched[0]["customer"]["tier"], "gold");

    driver
        .pipe("customers", TestRecord::tombstone("c2").at(4))
        .unwrap();
    driver.pipe("orders", order("c2", "o2", 7, 5)).unwrap();
    assert!(driver.read_output("enriched").is_empty());
    assert_eq!(values(&driver.read_output("unmatched"))[0]["id"], "o2");
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
    let totals = totals(&mut driver);
    assert_eq!(totals["gold"], "16");
    assert_eq!(totals["silver"], "3");
    assert_eq!(totals["bronze"], "2");
    assert_eq!(totals.len(), 3, "the unmatched order counts nowhere");
    assert_eq!(values(&driver.read_output("unmatched")).len(), 1);
}
