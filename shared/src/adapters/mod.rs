//! Adapters: `memory` keeps each AWS service's semantics in process (local stack, fast tests);
//! `aws` talks to the real services (or an emulator).

pub mod aws;
pub mod http;
pub mod memory;
