//! Typed handles to a processor's outputs (sinks and repartitions),
//! resolved once in `init`: a misspelt name fails `init`, never a record
//! mid-stream. [`Branches`] routes a record to the first sink whose
//! predicate holds (Kafka Streams' `split().branch()`).

use std::marker::PhantomData;

use crate::codec::Codec;
use crate::context::{Context, Output};
use crate::error::Error;

/// A sink or repartition declared in `describe()`, with its key and value
/// types.
///
/// ```no_run
/// # use weir_sdk::{Context, Error, Sink};
/// # fn demo(ctx: &mut Context) -> Result<(), Error> {
/// let counts: Sink<String, u64> = Sink::open("counts")?; // in init
/// counts.send(ctx, &"apple".to_string(), &3)?;
/// # Ok(()) }
/// ```
pub struct Sink<K, V> {
    name: String,
    /// Where it is in the declared outputs: what the host is handed.
    index: u32,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Codec, V: Codec> Sink<K, V> {
    /// The output called `name`; an error if `describe()` declares no sink
    /// or repartition by that name.
    pub fn open(name: &str) -> Result<Self, Error> {
        let index = crate::runtime::output_index(name)?;
        Ok(Sink {
            name: name.to_string(),
            index,
            _types: PhantomData,
        })
    }

    /// The sink or repartition name it forwards to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its index among the declared outputs.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Sends `key -> value` (headers and timestamp: the input record's).
    pub fn send(&self, ctx: &mut Context, key: &K, value: &V) -> Result<(), Error> {
        ctx.forward_to(self.index, Output::new().key(key).value(value));
        Ok(())
    }

    /// Sends a tombstone for `key`.
    pub fn delete(&self, ctx: &mut Context, key: &K) -> Result<(), Error> {
        ctx.forward_to(self.index, Output::new().key(key));
        Ok(())
    }

    /// Sends an output built by hand (its own headers or timestamp).
    pub fn send_output(&self, ctx: &mut Context, output: Output) -> Result<(), Error> {
        ctx.forward_to(self.index, output);
        Ok(())
    }
}

type Predicate<K, V> = Box<dyn Fn(&K, &V) -> bool>;

/// Sends each record to the first branch whose predicate holds, or to the
/// `otherwise` sink (if any) when none does.
///
/// ```no_run
/// # use weir_sdk::{Branches, Context, Error, Sink};
/// # fn demo(ctx: &mut Context) -> Result<(), Error> {
/// let routes: Branches<String, i64> = Branches::new()
///     .branch(|_, v| *v < 0, Sink::open("negative")?)
///     .otherwise(Sink::open("rest")?);
/// routes.send(ctx, &"k".to_string(), &-1)?; // to `negative`
/// # Ok(()) }
/// ```
pub struct Branches<K, V> {
    branches: Vec<(Predicate<K, V>, Sink<K, V>)>,
    otherwise: Option<Sink<K, V>>,
}

impl<K: Codec, V: Codec> Default for Branches<K, V> {
    fn default() -> Self {
        Branches {
            branches: Vec::new(),
            otherwise: None,
        }
    }
}

impl<K: Codec, V: Codec> Branches<K, V> {
    /// No branches yet: add them in order, first match wins.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records for which `predicate` holds (and no earlier one did) go to
    /// `sink`.
    pub fn branch(
        mut self,
        predicate: impl Fn(&K, &V) -> bool + 'static,
        sink: Sink<K, V>,
    ) -> Self {
        self.branches.push((Box::new(predicate), sink));
        self
    }

    /// Where records no branch took go (by default they are dropped).
    pub fn otherwise(mut self, sink: Sink<K, V>) -> Self {
        self.otherwise = Some(sink);
        self
    }

    /// The sink `key -> value` goes to, if any.
    pub fn route(&self, key: &K, value: &V) -> Option<&Sink<K, V>> {
        self.branches
            .iter()
            .find(|(predicate, _)| predicate(key, value))
            .map(|(_, sink)| sink)
            .or(self.otherwise.as_ref())
    }

    /// Sends `key -> value` to its branch; returns the sink's name, `None`
    /// if it was dropped.
    pub fn send(&self, ctx: &mut Context, key: &K, value: &V) -> Result<Option<&str>, Error> {
        match self.route(key, value) {
            Some(sink) => {
                sink.send(ctx, key, value)?;
                Ok(Some(sink.name()))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The declared outputs are one global: tests that set them take turns.
    static OUTPUTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_first_matching_branch_wins_then_otherwise() {
        let _turn = OUTPUTS.lock().unwrap_or_else(|p| p.into_inner());
        crate::runtime::declare_outputs(vec!["neg".into(), "small".into(), "rest".into()]);
        let routes: Branches<String, i64> = Branches::new()
            .branch(|_, v| *v < 0, Sink::open("neg").unwrap())
            .branch(|_, v| *v < 10, Sink::open("small").unwrap())
            .otherwise(Sink::open("rest").unwrap());
        let to = |v: i64| {
            routes
                .route(&"k".to_string(), &v)
                .map(|s| s.name().to_string())
        };
        assert_eq!(to(-5).as_deref(), Some("neg"));
        assert_eq!(to(5).as_deref(), Some("small"));
        assert_eq!(to(50).as_deref(), Some("rest"));
        let dropping: Branches<String, i64> =
            Branches::new().branch(|_, v| *v < 0, Sink::open("neg").unwrap());
        assert!(dropping.route(&"k".to_string(), &1).is_none());
    }

    #[test]
    fn an_undeclared_sink_is_refused_when_opened() {
        let _turn = OUTPUTS.lock().unwrap_or_else(|p| p.into_inner());
        crate::runtime::declare_outputs(vec!["counts".into()]);
        let error = Sink::<String, u64>::open("cuonts").err().unwrap();
        assert!(error.message().contains("`cuonts`"), "{error}");
        assert!(error.message().contains("counts"), "{error}");
    }
}
