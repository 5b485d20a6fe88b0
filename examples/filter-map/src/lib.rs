//! Filter-map, stateless: keeps records whose value is a decimal integer that
//! is a multiple of 3, and forwards `key -> value * 2` to the sink `out`.
//! Everything else is dropped (counted by the host as not forwarded).

use weir_sdk::{Error, Output, Record};

weir_sdk::stateless!(FilterMap: "filter-map", "numbers" => "out" ("numbers-doubled"), |record: Record| {
    let n = record.value_str().ok().flatten().and_then(|t| t.trim().parse::<i64>().ok());
    let Some(n) = n.filter(|n| n % 3 == 0) else { return Ok(None) };
    let out = Output::new().value(&(n * 2).to_string());
    Ok::<_, Error>(Some(match &record.key { Some(key) => out.key(key), None => out }))
});
