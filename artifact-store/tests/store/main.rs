//! End-to-end tests of the artifact store: the real `ick-artifact-store`
//! binary on loopback, real tokens from the real `ick-idp`, and for the S3
//! backend a real S3-compatible server. Most behaviours run against both
//! backends (`local::…` and `s3::…`).

mod common;

mod auth;
mod blobs;
mod client;
mod crash;
mod refs;
mod uploads;
