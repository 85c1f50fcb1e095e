//! The `dynamo-cache` binary: parse the command line and hand it to
//! [`dynamo_cache::cli::commands::main`].

use clap::Parser;

// The hit path is allocation-light but not allocation-free; mimalloc's thread-local free lists
// beat the system allocator on this workload (many small, short-lived buffers across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    dynamo_cache::cli::commands::main(dynamo_cache::cli::Cli::parse())
}
