//! Adapters: `memory` keeps each AWS service's semantics in process (local stack, fast tests).

pub mod memory;
