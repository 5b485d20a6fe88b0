//! Test guest: a valid WASI component (a command) that does not export the
//! `weir:streams/processor` world; the host must refuse it with a reason.

fn main() {
    println!("I am a command, not a stream processor");
}
