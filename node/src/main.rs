//! The `dynamo` binary: parses flags, sets up logging, and hands over to [`dynamo_node::cli`].

/// mimalloc: the node allocates many small, short-lived buffers (frames, sibling sets); the
/// profile showed glibc malloc at about a sixth of the CPU. Built without transparent huge pages
/// (the `no_thp` feature): with them, memory mimalloc reused after returning it to the kernel came
/// back as a 2 MiB page zeroed inside the page fault, a stall of several milliseconds in whatever
/// task touched it (a driver mid-batch: every request waiting on that node), 113 times in a 12 s
/// run at 12 k ops/s; without them the cluster's p99.9 at its peak rate went from 8-10 ms to
/// 4-5 ms at the same rate (node/BENCHMARKS.md, the runs of f9226e6).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dynamo_node::cli::main()
}
