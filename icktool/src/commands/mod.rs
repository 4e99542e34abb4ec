//! One module per subcommand; each has a `run` taking its parsed
//! arguments. (`project` and `pipeline` share `definition`: the same
//! commands on the two kinds of definition.)

pub mod analytics;
pub mod apply;
pub mod audit;
pub mod blob;
pub mod build;
pub mod client;
pub mod completions;
pub mod definition;
pub mod log;
pub mod login;
pub mod member;
pub mod password;
pub mod role;
pub mod status;
pub mod trigger;
pub mod trigger_secret;
pub mod user;
pub mod whoami;
pub mod workers;
