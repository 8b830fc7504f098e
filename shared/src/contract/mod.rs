//! Port contract suites: one per port, run against every adapter (in-process and AWS) by the
//! `tests` package. A suite takes a fixture that builds a fresh adapter, so each check starts clean.

pub mod queue;
pub mod store;
