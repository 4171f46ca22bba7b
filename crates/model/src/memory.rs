//! Process memory policy for training and inference.
//!
//! A forward and backward pass allocates and frees hundreds of megabytes of activation buffers
//! per step. glibc serves blocks above its mmap threshold with fresh `mmap`s and unmaps them on
//! free, so every step faults the same pages in again and the kernel zeroes each of them: one
//! 1024×576×1536 matmul loop took 612,757 page faults in 200 calls, and ran at 74 GFLOP/s
//! instead of 105 (`perf stat` on the `matmul_probe` example, 2 cores). [`keep_freed_memory`]
//! tells the allocator to serve every block from its heap and keep freed memory for reuse.
//!
//! That does not hold for the thread pool's largest blocks: glibc gives each thread its own arena
//! of 64 MiB heaps, serves a block larger than a heap (a 113 MB embedding gradient) with `mmap`
//! whatever `M_MMAP_MAX` says, and unmaps a heap as soon as it is empty, so a training step of the
//! SmolLM2-135M shape on 2 threads still faults about 456,000 pages in. One arena for every thread
//! (`M_ARENA_MAX` 1) ends that (11,000 faults a step) but was measured to cost more than it saves:
//! 3–4% faster steps for 4–7% more peak RSS on a full fine-tune and 21% more with LoRA and
//! gradient checkpointing (1.46 → 1.77 GB; `softalign bench step`, Xeon with AVX-512), the one
//! arena presumably fragmenting where the threads' heaps are unmapped whole. Memory decides which
//! model fits, so the arenas stay per thread.

/// Keeps freed heap memory in the process for reuse instead of returning it to the kernel
/// (glibc: no `mmap` for large blocks, no trimming of the heap top). Call once at the start of
/// a binary, before any threads allocate. The resident size then stays at its high-water mark,
/// which for a training loop is where it returns every step anyway. A no-op on other
/// allocators and systems.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only adjusts allocator parameters; it is called before other threads
    // exist and with documented parameter values.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}

/// The machine's physical memory in bytes (`MemTotal` of `/proc/meminfo`), to refuse work that
/// can never fit before it is allocated; `None` where that is unknown.
pub fn total_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
