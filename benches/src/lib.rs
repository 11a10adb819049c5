//! Benchmarks live in `benches/`; this crate has no library code of its own.
//!
//! It also compiles the README's examples as doctests, so they cannot rot.

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
