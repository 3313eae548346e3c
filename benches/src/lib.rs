//! Shared helpers for vcall's criterion benchmarks.
