//! What each contract version's `describe()` returns, as the host's
//! [`Topology`]. Only converts: checking it is [`Topology::validate`]'s.

use super::bindings::types::{DataFormat as WitFormat, SinkSpec as WitSink, StoreKind as WitKind};
use super::bindings::{v0_2, v0_3};
use crate::topology::{DataFormat, SinkSpec, StoreKind, StoreSpec, Topology, WindowSpec};

/// The host's topology from either version's, whose store declarations
/// differ only in the source changelog (`$source`, from store `$s`).
macro_rules! topology {
    ($wit:expr, |$s:ident| $source:expr) => {{
        let wit = $wit;
        Topology {
            name: wit.name,
            sources: wit.sources,
            sinks: sinks(wit.sinks),
            stores: (wit.stores.into_iter())
                .map(|$s| StoreSpec {
                    kind: kind($s.kind),
                    logged: $s.logged,
                    persistent: $s.persistent,
                    key_format: data_format($s.key_format),
                    value_format: data_format($s.value_format),
                    window: $s.window.map(window),
                    source_changelog: $source,
                    name: $s.name,
                })
                .collect(),
            repartitions: wit.repartitions,
        }
    }};
}

/// Contract 0.2.0: no store is restored from its source.
pub(super) fn from_v0_2(wit: v0_2::weir::streams::types::Topology) -> Topology {
    topology!(wit, |s| None)
}

pub(super) fn from_v0_3(wit: v0_3::weir::streams::declarations::Topology) -> Topology {
    topology!(wit, |s| s.source_changelog)
}

fn sinks(sinks: Vec<WitSink>) -> Vec<SinkSpec> {
    sinks
        .into_iter()
        .map(|s| SinkSpec {
            name: s.name,
            topic: s.topic,
        })
        .collect()
}

fn kind(kind: WitKind) -> StoreKind {
    match kind {
        WitKind::KeyValue => StoreKind::KeyValue,
        WitKind::Window => StoreKind::Window,
    }
}

fn window(w: v0_2::weir::streams::types::WindowSpec) -> WindowSpec {
    WindowSpec {
        size_ms: w.size_ms,
        grace_ms: w.grace_ms,
        retention_ms: w.retention_ms,
    }
}

fn data_format(f: WitFormat) -> DataFormat {
    use DataFormat as D;
    use WitFormat as W;
    match f {
        W::Bytes => D::Bytes,
        W::Utf8 => D::Utf8,
        W::Json => D::Json,
        W::U8 => D::U8,
        W::U16 => D::U16,
        W::U32 => D::U32,
        W::U64 => D::U64,
        W::S8 => D::I8,
        W::S16 => D::I16,
        W::S32 => D::I32,
        W::S64 => D::I64,
    }
}
