//! `ick-api`: everything that crosses a process boundary between Ick's
//! services: wire types, scope names, the client side of OAuth2 (a
//! [`TokenSource`]) and the server side (token checking, problem+json and
//! the HTTP plumbing every service shares, so that all of them answer alike).

pub mod actions;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod controller;
pub mod http;
pub mod idp;
pub mod oauth;
pub mod params;
pub mod problem;
pub mod scope;
pub mod secret;
pub mod server;
pub mod token_source;
pub mod work;

pub use problem::Problem;
pub use scope::{Scope, ScopeSet};
pub use secret::Secret;
pub use token_source::{KeepTokens, PersonTokens, TokenError, TokenSource, post_token_form};

/// The version every Ick binary reports (`/healthz`, `icktool status`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
