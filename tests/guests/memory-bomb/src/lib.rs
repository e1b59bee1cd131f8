//! Test guest: allocates without bound, to prove the memory cap holds.

use neopro_guest_sdk::serde_json::Value;
use neopro_guest_sdk::{Command, Context, Error, export_command};

struct MemoryBomb;

impl Command for MemoryBomb {
    type Data = Value;

    fn run(_ctx: &Context, _data: Value) -> Result<Value, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![7u8; 1 << 20]));
        }
    }
}

export_command!(MemoryBomb);
