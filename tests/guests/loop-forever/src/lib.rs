//! Test guest: spins forever, to prove the epoch deadline stops it.

use neopro_guest_sdk::serde_json::Value;
use neopro_guest_sdk::{Command, Context, Error, export_command};

struct LoopForever;

impl Command for LoopForever {
    type Data = Value;

    fn run(_ctx: &Context, _data: Value) -> Result<Value, Error> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export_command!(LoopForever);
