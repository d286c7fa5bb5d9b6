//! The `dynamo` binary: parses flags, sets up logging, and hands over to [`dynamo_node::cli`].

/// mimalloc: the node allocates many small, short-lived buffers (frames, sibling sets); the
/// profile showed glibc malloc at about a sixth of the CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dynamo_node::cli::main()
}
