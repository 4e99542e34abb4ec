//! The work queue's tables, in the files the work modules
//! (`crate::work`) name alike: claims, leases (and the ends of running
//! nodes), output, workers.

pub mod claims;
pub mod leases;
pub mod output;
pub mod workers;
