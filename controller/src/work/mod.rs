//! The work queue, in the parts that `routes::work` and `store::work`
//! name alike: workers claim ready nodes ([`claims`]) and report on those
//! they hold ([`reports`]); the [`reaper`] takes back what lost workers
//! held; [`workers`] keeps what workers say of themselves.

pub mod claims;
pub mod reaper;
pub mod reports;
pub mod workers;
