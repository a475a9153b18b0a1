//! What `medic-bench`'s binaries share: the no-op plan of the executor benchmarks
//! (`medic-exec-bench`, `medic-bench workers`) and the process figures they print.

pub mod noop;
