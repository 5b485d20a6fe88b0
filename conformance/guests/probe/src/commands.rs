// The probe's command interpreter, shared by `probe` and `probe-v2` (each
// includes this file after defining `VERSION`).
//
// Every record's value is a command; its result goes to the sink `results`
// under the record's key. Store keys in commands are hex, so tests can use
// any bytes (0x00, 0xFF). Commands:
//   put <hexkey> <value> | get <hexkey> | delete <hexkey>
//   twin-get <hexkey>   get through a second handle of the store `state`
//   incr <hexkey>       adds one to a decimal count, answers the new count
//   range <bound> <bound>   bounds: [hex (included), (hex (excluded), * (unbounded)
//   prefix <hex> | seq <n> | multi | schedule stream|wall <ms> | version
//   panic | alloc <MiB> | spin | read-file <path> | env | connect <host:port>
//   clock (WASI wall-clock seconds) | random (a std RandomState hash)
//   flood <n> <bytes>   puts n values of `bytes` bytes in one call
//   leak-iterators <n>  opens n iterators and never drops them
//   schedules <n>       adds n schedules (1 hour of wall-clock time each)
//   wput <hexkey> <start> <value> | wfetch <hexkey> <from> <to> | wall <from> <to>
//                       window store `windows` (10 s tumbling, 5 s grace,
//                       120 s retention): `ok`/`dropped`, `windows:…`
//   arm-close           makes `close` try to write key "closed" (the host
//                       must refuse it)
//   hold <text>         keeps `text` until the host's next `flush` (before
//                       a commit), which forwards it to `results` under the
//                       key `held` (0.3.0 only: 0.2.0 hosts have no flush)

use std::time::Duration;

use weir_sdk::{
    Context, Error, KvStore, Output, Processor, PunctuationType, Record, ScheduleId, StoreSpec, TaskInfo, TimeWindows,
    Topology, WindowStore,
};

pub struct Probe {
    state: KvStore<Vec<u8>, Vec<u8>>,
    /// A second handle of `state`, opened in init like the first.
    twin: KvStore<Vec<u8>, Vec<u8>>,
    windows: WindowStore<Vec<u8>, String>,
    write_in_close: bool,
    held: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, Error> {
    if !text.len().is_multiple_of(2) {
        return Err(Error::msg(format!("odd hex `{text}`")));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| Error::msg(format!("hex `{text}`: {e}"))))
        .collect()
}

fn bound(text: &str) -> Result<std::ops::Bound<Vec<u8>>, Error> {
    use std::ops::Bound;
    Ok(match text.split_at(1) {
        ("*", _) => Bound::Unbounded,
        ("[", key) => Bound::Included(unhex(key)?),
        ("(", key) => Bound::Excluded(unhex(key)?),
        _ => return Err(Error::msg(format!("bad bound `{text}`"))),
    })
}

/// The answer to a `get`: the value as text, or `none`.
fn value_answer(value: Option<Vec<u8>>) -> String {
    match value {
        Some(v) => format!("value:{}", String::from_utf8_lossy(&v)),
        None => "none".into(),
    }
}

fn denied(result: Result<String, String>) -> String {
    match result {
        Ok(what) => format!("allowed: {what}"),
        Err(e) => format!("denied: {e}"),
    }
}

impl Probe {
    fn run(&mut self, command: &str, record: &Record, ctx: &mut Context) -> Result<String, Error> {
        let words: Vec<&str> = command.split_whitespace().collect();
        let arg = |i: usize| words.get(i).copied().ok_or_else(|| Error::msg(format!("`{command}`: missing argument")));
        Ok(match words.first().copied().unwrap_or("") {
            "put" => {
                self.state.put(&unhex(arg(1)?)?, &arg(2)?.as_bytes().to_vec())?;
                "ok".into()
            }
            "incr" => {
                // Read, add one, write: a call run twice would count twice.
                let key = unhex(arg(1)?)?;
                let old = self.state.get(&key)?.unwrap_or_default();
                let n = String::from_utf8_lossy(&old).parse::<u64>().unwrap_or(0) + 1;
                self.state.put(&key, &n.to_string().into_bytes())?;
                n.to_string()
            }
            "get" => value_answer(self.state.get(&unhex(arg(1)?)?)?),
            "twin-get" => value_answer(self.twin.get(&unhex(arg(1)?)?)?),
            "delete" => {
                self.state.delete(&unhex(arg(1)?)?)?;
                "ok".into()
            }
            "range" => {
                let entries = self.state.range((bound(arg(1)?)?, bound(arg(2)?)?))?;
                let keys: Result<Vec<String>, _> = entries.map(|e| e.map(|(k, _)| hex(&k))).collect();
                format!("keys:{}", keys?.join(","))
            }
            "prefix" => {
                let keys: Result<Vec<String>, _> =
                    self.state.prefix_scan(&unhex(arg(1)?)?)?.map(|e| e.map(|(k, _)| hex(&k))).collect();
                format!("keys:{}", keys?.join(","))
            }
            "seq" => format!("seq {}", arg(1)?),
            "multi" => {
                let mut a = Output::new().value(&"to a".to_string()).header("h", b"1");
                for h in &record.headers {
                    a = a.header(&h.key, &h.value);
                }
                ctx.forward("a", a)?;
                ctx.forward("b", Output::new().value(&"to b".to_string()).header("from", b"probe").timestamp(42))?;
                "ok".into()
            }
            "schedule" => {
                let kind = match arg(1)? {
                    "stream" => PunctuationType::StreamTime,
                    _ => PunctuationType::WallClock,
                };
                let ms: u64 = arg(2)?.parse().map_err(|_| Error::msg("bad interval"))?;
                let id = ctx.schedule(Duration::from_millis(ms), kind);
                format!("scheduled {}", id.0)
            }
            "version" => VERSION.to_string(),
            "panic" => panic!("probe panics on purpose"),
            "alloc" => {
                let mib: usize = arg(1)?.parse().map_err(|_| Error::msg("bad size"))?;
                let block = vec![7u8; mib << 20];
                format!("allocated {}", std::hint::black_box(block).len())
            }
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "read-file" => denied(std::fs::read(arg(1)?).map(|b| format!("{} bytes", b.len())).map_err(|e| e.to_string())),
            "env" => format!("vars: {}", std::env::vars().count()),
            "flood" => {
                let n: u32 = arg(1)?.parse().map_err(|_| Error::msg("flood: bad count"))?;
                let bytes: usize = arg(2)?.parse().map_err(|_| Error::msg("flood: bad size"))?;
                let value = vec![7u8; bytes];
                for i in 0..n {
                    self.state.put(&i.to_be_bytes().to_vec(), &value)?;
                }
                format!("flooded {n}")
            }
            "leak-iterators" => {
                let n: u32 = arg(1)?.parse().map_err(|_| Error::msg("leak-iterators: bad count"))?;
                for _ in 0..n {
                    std::mem::forget(self.state.prefix_scan(&Vec::<u8>::new())?);
                }
                format!("leaked {n}")
            }
            "schedules" => {
                let n: u32 = arg(1)?.parse().map_err(|_| Error::msg("schedules: bad count"))?;
                for _ in 0..n {
                    ctx.schedule(Duration::from_secs(3600), PunctuationType::WallClock);
                }
                format!("scheduled {n}")
            }
            "wput" => {
                let start: i64 = arg(2)?.parse().map_err(|_| Error::msg("wput: bad start"))?;
                match self.windows.put(&unhex(arg(1)?)?, start, &arg(3)?.to_string())? {
                    true => "ok".into(),
                    false => "dropped".into(),
                }
            }
            "wfetch" => {
                let from: i64 = arg(2)?.parse().map_err(|_| Error::msg("wfetch: bad from"))?;
                let to: i64 = arg(3)?.parse().map_err(|_| Error::msg("wfetch: bad to"))?;
                let found: Result<Vec<String>, _> = self
                    .windows
                    .fetch(&unhex(arg(1)?)?, from, to)?
                    .map(|w| w.map(|(_, start, v)| format!("{start}={v}")))
                    .collect();
                format!("windows:{}", found?.join(","))
            }
            "wall" => {
                let from: i64 = arg(1)?.parse().map_err(|_| Error::msg("wall: bad from"))?;
                let to: i64 = arg(2)?.parse().map_err(|_| Error::msg("wall: bad to"))?;
                let found: Result<Vec<String>, _> = self
                    .windows
                    .fetch_all(from, to)?
                    .map(|w| w.map(|(k, start, v)| format!("{}@{start}={v}", hex(&k))))
                    .collect();
                format!("windows:{}", found?.join(","))
            }
            "stream-time" => format!("stream time {}", ctx.stream_time()),
            "hold" => {
                self.held.push(arg(1)?.to_string());
                "holding".into()
            }
            "arm-close" => {
                self.write_in_close = true;
                "armed".into()
            }
            "clock" => format!(
                "wall clock: {}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            ),
            "random" => {
                use std::hash::BuildHasher;
                format!("hash: {}", std::collections::hash_map::RandomState::new().hash_one(1u64))
            }
            "connect" => denied(
                std::net::TcpStream::connect(arg(1)?)
                    .map(|_| "connected".to_string())
                    .map_err(|e| e.to_string()),
            ),
            other => return Err(Error::msg(format!("unknown command `{other}`"))),
        })
    }
}

impl Processor for Probe {
    fn describe() -> Topology {
        Topology::new("probe")
            .source("commands")
            // Co-partitioned with `commands`, for `inputs-in-timestamp-order`.
            .source("side")
            .sink("results", "results")
            .sink("a", "sink-a")
            .sink("b", "sink-b")
            .store(StoreSpec::kv("state"))
            .store(
                StoreSpec::window("windows", &TimeWindows::tumbling_ms(10_000).grace_ms(5_000))
                    .retention_ms(120_000),
            )
    }

    fn init(_task: &TaskInfo, _ctx: &mut Context) -> Result<Self, Error> {
        Ok(Probe {
            state: KvStore::open("state")?,
            twin: KvStore::open("state")?,
            windows: WindowStore::open("windows")?,
            write_in_close: false,
            held: Vec::new(),
        })
    }

    fn process(&mut self, record: Record, ctx: &mut Context) -> Result<(), Error> {
        let command = record.value_str()?.unwrap_or_default().to_string();
        let result = self.run(&command, &record, ctx)?;
        let mut out = Output::new().value(&result);
        if let Some(key) = &record.key {
            out = out.key(key);
        }
        ctx.forward("results", out)
    }

    fn punctuate(
        &mut self,
        schedule: ScheduleId,
        kind: PunctuationType,
        timestamp: i64,
        ctx: &mut Context,
    ) -> Result<(), Error> {
        let kind = match kind {
            PunctuationType::StreamTime => "stream",
            PunctuationType::WallClock => "wall",
        };
        let text = format!("punctuated {} {kind} {timestamp}", schedule.0);
        ctx.forward("results", Output::new().key(&b"punctuation".to_vec()).value(&text))
    }

    fn flush(&mut self, ctx: &mut Context) -> Result<(), Error> {
        for text in self.held.drain(..) {
            ctx.forward("results", Output::new().key(&b"held".to_vec()).value(&text))?;
        }
        Ok(())
    }

    fn close(&mut self) {
        if self.write_in_close {
            // The SDK's `close` has no `Context`, so no forward to try.
            let put = self.state.put(&b"closed".to_vec(), &b"written in close".to_vec());
            weir_sdk::info!("close: put answered {put:?}");
        }
    }
}

weir_sdk::export_processor!(Probe);
