//! What the benchmarks (and the profiling example) share.

pub mod kernels;
