//! Filter-map under the offline test driver (`cargo test --release -p
//! filter-map`): multiples of 3 doubled with their key, everything else
//! dropped.

use weir_test_driver::{TestDriver, TestRecord, build_component};

#[test]
fn keeps_multiples_of_three_doubled_and_drops_the_rest() {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR").as_ref()).expect("building filter-map");
    let mut driver = TestDriver::new(&wasm, Default::default()).unwrap();
    let inputs = ["3", "4", " 9 ", "x", "-6"];
    let records = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| TestRecord::new(format!("k{i}"), *v).header("h", "1"))
        .collect();
    driver.pipe_all("numbers", records).unwrap();
    let out: Vec<(String, String, Option<Vec<u8>>)> = driver
        .read_output("out")
        .iter()
        .map(|o| {
            let (k, v) = (o.key_str().unwrap(), o.value_str().unwrap());
            (
                k.to_string(),
                v.to_string(),
                o.header("h").map(<[u8]>::to_vec),
            )
        })
        .collect();
    let h = Some(b"1".to_vec());
    assert_eq!(
        out,
        [
            ("k0".into(), "6".into(), h.clone()),
            ("k2".into(), "18".into(), h.clone()),
            ("k4".into(), "-12".into(), h)
        ]
    );
}
