//! Every function's logic as plain async functions over ports. A Lambda `main.rs` and the local
//! stack only translate their inputs (API Gateway requests, SQS batches) into these calls.

pub mod callbacks;
pub mod dead_letter;
pub mod dead_letters;
pub mod deferred;
pub mod erasure;
pub mod fallback;
pub mod feedback;
pub mod inbox;
pub mod ingest;
pub mod queries;
pub mod router;
pub mod send;
pub mod sqs_batch;
#[cfg(test)]
pub(crate) mod test_support;
pub mod unsubscribe;
pub mod ws;
