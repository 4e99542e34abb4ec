//! The server side of tokens: checking them and refusing what fails.

mod extract;
mod verifier;

pub use extract::{AuthRejection, Authorized, Caller, RequiredScope, scopes};
pub use verifier::{AuthConfig, LocalKeys, TokenVerifier, VerifyError};
