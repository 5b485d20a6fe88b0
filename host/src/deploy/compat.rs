//! Whether a new topology may replace the live one on the same state.
//!
//! Allowed: sinks added, removed or re-pointed; stores added; a store's
//! declared key or value format changed (it only tells readers how to show
//! the bytes). Refused unless the deploy says `allow_store_drop`: a store
//! removed. Always refused: a store whose kind, persistence, changelog
//! (kept or not, a topic of its own or its source: its recorded offset
//! means one or the other) or windows (size, grace, retention: they fix its key layout) change (its
//! state could not carry over as is; give it a new name and drop the old
//! one), and changed sources or repartitions (they define the
//! application's tasks and consumer subscription: use a new
//! `application.id`). Pure: no I/O.

use crate::topology::Topology;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incompatible {
    #[error(
        "store `{store}` of the live version is missing; deploy with --allow-store-drop to drop its state"
    )]
    StoreRemoved { store: String },
    #[error(
        "store `{store}` changes from {from} to {to}; its state cannot carry over \
         (give the store a new name, and deploy with --allow-store-drop to drop the old one)"
    )]
    StoreChanged {
        store: String,
        from: String,
        to: String,
    },
    #[error(
        "{what} change from [{from}] to [{to}]; they define the application's tasks: use a new application.id"
    )]
    SourcesChanged {
        what: &'static str,
        from: String,
        to: String,
    },
}

fn describe_store(s: &crate::topology::StoreSpec) -> String {
    let windows = s.window.map_or(String::new(), |w| {
        format!(
            " (windows of {} ms, grace {} ms, retention {} ms)",
            w.size_ms, w.grace_ms, w.retention_ms
        )
    });
    format!(
        "{:?}{windows} {} {}",
        s.kind,
        if s.persistent {
            "persistent"
        } else {
            "in-memory"
        },
        match (&s.source_changelog, s.logged) {
            (Some(source), _) => format!("restored from source `{source}`"),
            (None, true) => "with changelog".into(),
            (None, false) => "without changelog".into(),
        }
    )
}

/// Checks `new` against the `live` topology.
pub fn check(live: &Topology, new: &Topology, allow_store_drop: bool) -> Result<(), Incompatible> {
    for old in &live.stores {
        match new.store(&old.name) {
            None if allow_store_drop => {}
            None => {
                return Err(Incompatible::StoreRemoved {
                    store: old.name.clone(),
                });
            }
            Some(s)
                if (
                    s.kind,
                    s.persistent,
                    s.logged,
                    s.window,
                    &s.source_changelog,
                ) != (
                    old.kind,
                    old.persistent,
                    old.logged,
                    old.window,
                    &old.source_changelog,
                ) =>
            {
                return Err(Incompatible::StoreChanged {
                    store: old.name.clone(),
                    from: describe_store(old),
                    to: describe_store(s),
                });
            }
            Some(_) => {}
        }
    }
    let same = |a: &[String], b: &[String]| {
        let (mut a, mut b) = (a.to_vec(), b.to_vec());
        a.sort();
        b.sort();
        a == b
    };
    for (what, from, to) in [
        ("sources", &live.sources, &new.sources),
        ("repartitions", &live.repartitions, &new.repartitions),
    ] {
        if !same(from, to) {
            return Err(Incompatible::SourcesChanged {
                what,
                from: from.join(", "),
                to: to.join(", "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{SinkSpec, StoreKind, StoreSpec};

    fn wc() -> Topology {
        Topology {
            name: "wc".into(),
            sources: vec!["lines".into()],
            sinks: vec![SinkSpec {
                name: "counts".into(),
                topic: "counts".into(),
            }],
            stores: vec![StoreSpec::key_value("counts", true)],
            repartitions: vec!["words".into()],
        }
    }

    #[test]
    fn new_sinks_and_stores_are_fine() {
        let mut v2 = wc();
        v2.sinks.push(SinkSpec {
            name: "loud".into(),
            topic: "loud".into(),
        });
        v2.stores.push(StoreSpec {
            name: "extra".into(),
            ..wc().stores[0].clone()
        });
        check(&wc(), &v2, false).unwrap();
    }

    #[test]
    fn formats_may_change_but_windows_may_not() {
        use crate::topology::{DataFormat, WindowSpec};
        let mut v2 = wc();
        v2.stores[0].value_format = DataFormat::U64;
        check(&wc(), &v2, false).unwrap();

        let windowed = |retention_ms| {
            let mut t = wc();
            t.stores[0].kind = StoreKind::Window;
            t.stores[0].window = Some(WindowSpec {
                size_ms: 60_000,
                grace_ms: 0,
                retention_ms,
            });
            t
        };
        check(&windowed(86_400_000), &windowed(86_400_000), false).unwrap();
        let err = check(&windowed(86_400_000), &windowed(3_600_000), true).unwrap_err();
        assert!(
            err.to_string()
                .contains("retention 86400000 ms) persistent with changelog to Window"),
            "{err}"
        );
    }

    #[test]
    fn removing_a_store_needs_the_flag() {
        let mut v2 = wc();
        v2.stores.clear();
        let err = check(&wc(), &v2, false).unwrap_err();
        assert_eq!(
            err,
            Incompatible::StoreRemoved {
                store: "counts".into()
            }
        );
        assert!(err.to_string().contains("--allow-store-drop"));
        check(&wc(), &v2, true).unwrap();
    }

    #[test]
    fn changing_a_store_or_the_sources_is_refused() {
        let mut v2 = wc();
        v2.stores[0].logged = false;
        let err = check(&wc(), &v2, true).unwrap_err();
        assert!(err.to_string().contains("store `counts` changes from KeyValue persistent with changelog to KeyValue persistent without changelog"), "{err}");
        // Its recorded offset would mean the source's, not the changelog's.
        let mut v2 = wc();
        v2.stores[0].source_changelog = Some("lines".into());
        let err = check(&wc(), &v2, true).unwrap_err();
        assert!(
            err.to_string()
                .contains("to KeyValue persistent restored from source `lines`"),
            "{err}"
        );
        let mut v2 = wc();
        v2.sources = vec!["other".into()];
        let err = check(&wc(), &v2, false).unwrap_err();
        assert!(
            err.to_string()
                .contains("sources change from [lines] to [other]"),
            "{err}"
        );
        let mut v2 = wc();
        v2.repartitions.clear();
        assert!(matches!(
            check(&wc(), &v2, false),
            Err(Incompatible::SourcesChanged {
                what: "repartitions",
                ..
            })
        ));
    }
}
